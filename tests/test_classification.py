"""Classifier outputs and teacher-student measurements (SRRL, thesis Tables 4.3 and 4.5)."""

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from fkdlib.distill import l2_distance
from fkdlib.evaluation.classification import (
    ClassificationEvaluation, fitted_l2, label_cross_entropy, model_outputs, teacher_kl)


def test_teacher_kl_and_label_cross_entropy_match_direct_computations():
    rng = np.random.default_rng(1)
    teacher, student = rng.normal(size=(5, 4)) * 3, rng.normal(size=(5, 4)) * 3
    softmax = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(  # noqa: E731
        z - z.max(1, keepdims=True)).sum(1, keepdims=True)
    expected = [entropy(p, q) for p, q in zip(softmax(teacher), softmax(student))]
    np.testing.assert_allclose(teacher_kl(teacher, student), expected, rtol=1e-10)
    np.testing.assert_allclose(teacher_kl(teacher, teacher), 0.0, atol=1e-12)
    labels = np.array([0, 1, 2, 3, 0])
    np.testing.assert_allclose(label_cross_entropy(student, labels),
                               -np.log(softmax(student)[np.arange(5), labels]), rtol=1e-10)


def test_fitted_l2_is_zero_for_a_rotated_teacher_and_matches_least_squares():
    rng = np.random.default_rng(2)
    teacher_fit, teacher_test = rng.normal(size=(200, 6)), rng.normal(size=(50, 6))
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    np.testing.assert_allclose(fitted_l2(teacher_fit @ rotation, teacher_fit,
                                              teacher_test @ rotation, teacher_test),
                               0.0, atol=1e-16)
    student_fit, student_test = rng.normal(size=(200, 4)), rng.normal(size=(50, 4))
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    design = np.hstack([unit(student_fit), np.ones((200, 1))])
    coefficients, *_ = np.linalg.lstsq(design, unit(teacher_fit), rcond=None)
    prediction = np.hstack([unit(student_test), np.ones((50, 1))]) @ coefficients
    distances = fitted_l2(student_fit, teacher_fit, student_test, teacher_test)
    np.testing.assert_allclose(distances, ((unit(teacher_test) - prediction) ** 2).sum(1),
                               rtol=1e-8)
    assert distances.mean() == pytest.approx(l2_distance(torch.from_numpy(unit(teacher_test)),
                                                         torch.from_numpy(prediction)))


def test_classification_evaluation_top_k():
    logits = np.array([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    result = ClassificationEvaluation("m", logits, np.array([0, 2, 1, 1]))
    assert result.correct.tolist() == [True, False, False, False]
    assert result.top_k(2) == 0.75 and result.top_k(3) == 1.0
    assert result.summary() == {"Top-1": 25.0, "Top-5": 100.0}


def test_model_outputs_are_the_backbone_and_head_in_eval_mode():
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5),
                                   torch.nn.BatchNorm1d(5))
    head = torch.nn.Linear(5, 3)
    images = torch.randint(0, 256, (7, 3, 4, 4), dtype=torch.uint8)
    features, logits = model_outputs(backbone, head, images, batch_size=3)
    with torch.no_grad():
        expected = backbone.eval()((images.float() / 255 - 0.5) / 0.5)
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, head(expected).detach().numpy(), rtol=1e-5, atol=1e-6)

