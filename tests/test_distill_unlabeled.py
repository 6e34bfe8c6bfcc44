"""Unlabeled-data distillation with mixup (SRRL §4.2.2): draws, terms, trainer resume."""

import copy
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fkdlib.data.transforms import to_float_image
from fkdlib.distill import KDLoss, UnlabeledMixupDistiller, kd_divergence, soft_target_kl
from fkdlib.errors import ConfigError
from fkdlib.heads import ArcFace
from fkdlib.models import create_model
from fkdlib.training.trainer import TrainConfig, Trainer
from conftest import CLASSES, TinyFaces, assert_same_step, count_head_calls

def _unlabeled(count=10):
    return torch.from_numpy(np.random.default_rng(1).integers(0, 255, size=(count, 3, 16, 16),
                                                               dtype=np.uint8))


def _distiller(seed=0, kd_weight=0.9, **kwargs):
    torch.manual_seed(0)
    student = create_model("iresnet18", input_size=16, width=0.125, embedding_size=8)
    teacher = create_model("iresnet18", input_size=16, width=0.125, embedding_size=8)
    return UnlabeledMixupDistiller(student, ArcFace(8, CLASSES, s=8.0), teacher,
                                   ArcFace(8, CLASSES, s=8.0), _unlabeled(),
                                   {"kd": (KDLoss(), kd_weight)} if kd_weight else {},
                                   seed=seed, **kwargs)


def test_draws_are_reproducible_from_seed_and_counter():
    a, b, other = _distiller(seed=5), _distiller(seed=5), _distiller(seed=6)
    first = [a.draw_unlabeled(4) for _ in range(3)]
    second = [b.draw_unlabeled(4) for _ in range(3)]
    for (x1, lam1), (x2, lam2) in zip(first, second):
        assert torch.equal(x1, x2) and lam1 == lam2
    assert int(a.draws) == 3
    assert not torch.equal(other.draw_unlabeled(4)[0], first[0][0])
    a.load_state_dict(b.state_dict() | {"draws": torch.tensor(1)})
    assert torch.equal(a.draw_unlabeled(4)[0], first[1][0])


def test_drawn_images_come_from_the_unlabeled_set_and_lambda_favours_labeled():
    distiller = _distiller()
    pool = to_float_image(_unlabeled())
    candidates = torch.cat([pool, pool.flip(-1)])
    lams, flipped = [], 0
    for _ in range(300):
        images, lam = distiller.draw_unlabeled(4)
        lams.append(lam)
        for image in images[:1]:
            matches = [(image == c).all() for c in candidates]
            assert any(matches)
            flipped += int(np.argmax(matches) >= len(pool))
    # λ = max(u, 1 - u) with u ~ Beta(1, 1) is uniform on [0.5, 1]: mean 0.75, sd 0.144/√300
    assert min(lams) >= 0.5 and max(lams) <= 1.0
    assert np.mean(lams) == pytest.approx(0.75, abs=0.03)
    assert 100 < flipped < 200  # flips with probability 0.5
    images, _ = distiller.draw_unlabeled(10)
    assert len({tuple(x.flatten()[:20].tolist()) for x in images}) == 10  # no repeats


def test_terms_match_direct_computations():
    distiller = _distiller(unlabeled_weight=0.7, mixup_weight=0.4, temperature=2.0).eval()
    images = to_float_image(torch.from_numpy(TinyFaces().images_u8()[:4]))
    labels = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        terms = distiller(images, labels)
        distiller.draws.fill_(0)
        unlabeled, lam = distiller.draw_unlabeled(4)
        student = distiller.student_head
        teacher = distiller.teacher_head

        def logits(backbone, head, x):
            return head(backbone(x)).numpy()

        def log_softmax(z):
            z = z - z.max(1, keepdims=True)
            return z - np.log(np.exp(z).sum(1, keepdims=True))

        T = 2.0
        p_u = np.exp(log_softmax(logits(distiller.teacher_backbone, teacher, unlabeled) / T))
        p_l = np.exp(log_softmax(logits(distiller.teacher_backbone, teacher, images) / T))
        s_u = log_softmax(logits(distiller.student_backbone, student, unlabeled) / T)
        mixed = lam * images + (1 - lam) * unlabeled
        s_mix = log_softmax(logits(distiller.student_backbone, student, mixed) / T)
        target = lam * p_l + (1 - lam) * p_u
    kd_u = (p_u * (np.log(p_u) - s_u)).sum(1).mean() * T ** 2
    kd_mix = (target * (np.log(target) - s_mix)).sum(1).mean() * T ** 2
    assert set(terms) == {"ce", "kd", "kd_unlabeled", "kd_mixup"}
    assert float(terms["kd_unlabeled"]) == pytest.approx(0.7 * kd_u, rel=1e-4)
    assert float(terms["kd_mixup"]) == pytest.approx(0.4 * kd_mix, rel=1e-4)
    assert int(distiller.draws) == 1


def _reference_terms(distiller, images, labels):
    """The forward written out as it was before logits became opt-in: both networks' logits on
    the labeled images at every step."""
    student, teacher = distiller.student_outputs(images), distiller.teacher_outputs(images)
    terms = distiller.loss_terms(student, teacher, labels)
    unlabeled, lam = distiller.draw_unlabeled(len(images))
    teacher_unlabeled = distiller.teacher_outputs(unlabeled)["logits"]
    T = distiller.temperature
    if distiller.unlabeled_weight:
        student_unlabeled = distiller.student_head(distiller.student_backbone(unlabeled))
        terms["kd_unlabeled"] = distiller.unlabeled_weight * kd_divergence(
            student_unlabeled, teacher_unlabeled, T)
    if distiller.mixup_weight:
        target = (lam * F.softmax(teacher["logits"] / T, dim=1)
                  + (1 - lam) * F.softmax(teacher_unlabeled / T, dim=1))
        mixed = distiller.student_head(distiller.student_backbone(
            lam * images + (1 - lam) * unlabeled))
        terms["kd_mixup"] = distiller.mixup_weight * soft_target_kl(mixed, target, T)
    return terms


@pytest.mark.parametrize("kd_weight, unlabeled_weight, mixup_weight, student_calls, "
                         "teacher_calls", [
    (0.0, 1.0, 1.0, {"labels": 1, "no labels": 2}, {"no labels": 2}),
    (0.9, 1.0, 1.0, {"labels": 1, "no labels": 3}, {"no labels": 2}),
    (0.0, 1.0, 0.0, {"labels": 1, "no labels": 1}, {"no labels": 1}),
    (0.0, 0.0, 1.0, {"labels": 1, "no labels": 1}, {"no labels": 2}),
])
def test_terms_and_gradients_are_those_of_the_always_logits_forward(
        kd_weight, unlabeled_weight, mixup_weight, student_calls, teacher_calls):
    distiller = _distiller(kd_weight=kd_weight, unlabeled_weight=unlabeled_weight,
                           mixup_weight=mixup_weight)
    reference = copy.deepcopy(distiller)
    calls = count_head_calls(distiller.student_head), count_head_calls(distiller.teacher_head)
    images = to_float_image(torch.from_numpy(TinyFaces().images_u8()[:4]))
    labels = torch.tensor([0, 1, 2, 0])
    terms = distiller(images, labels)
    sum(terms.values()).backward()
    expected = _reference_terms(reference, images, labels)
    sum(expected.values()).backward()
    # logits of the labeled images only where KD (student, teacher) or mixup (teacher) reads them
    assert calls == (Counter(student_calls), Counter(teacher_calls))
    assert_same_step(distiller, reference, terms, expected)


def test_zero_weights_skip_the_unlabeled_batch_and_bad_input_is_refused():
    distiller = _distiller(unlabeled_weight=0.0, mixup_weight=0.0)
    terms = distiller(torch.zeros(2, 3, 16, 16), torch.tensor([0, 1]))
    assert set(terms) == {"ce", "kd"} and int(distiller.draws) == 0
    only_mixup = _distiller(unlabeled_weight=0.0)
    assert set(only_mixup(torch.zeros(2, 3, 16, 16), torch.tensor([0, 1]))) == {
        "ce", "kd", "kd_mixup"}
    student = create_model("iresnet18", input_size=16, width=0.125, embedding_size=8)
    with pytest.raises(ConfigError, match="uint8 tensor"):
        UnlabeledMixupDistiller(student, ArcFace(8, 3), student, ArcFace(8, 3),
                                torch.zeros(4, 3, 16, 16))


def test_resumed_training_is_bit_identical(tmp_path):
    config = TrainConfig(epochs=2, batch_size=4, lr=0.05, amp=False, schedule="constant", seed=2)
    reference = _distiller()
    Trainer(reference, config).fit(TinyFaces())
    first_half = _distiller()
    Trainer(first_half, TrainConfig(**(config.to_dict() | {"epochs": 1})),
            checkpoint_dir=tmp_path).fit(TinyFaces())
    resumed = _distiller()
    history = Trainer(resumed, config, checkpoint_dir=tmp_path).fit(TinyFaces(), resume=True)
    assert int(resumed.draws) == int(reference.draws) == 6
    for key, value in reference.student_backbone.state_dict().items():
        assert torch.equal(value, resumed.student_backbone.state_dict()[key]), key
    assert {"loss_kd_unlabeled", "loss_kd_mixup"} <= set(history.columns)
    assert torch.equal(reference.teacher_backbone.conv1.weight,
                       _distiller().teacher_backbone.conv1.weight)  # the teacher never trains
