"""Verification metrics: insightface 10-fold accuracy, ROC/AUC, EER and TAR at FAR."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import roc_auc_score, roc_curve

from fkdlib.errors import ConfigError, DataFormatError
from fkdlib.evaluation.similarity import tar_at_far
from fkdlib.evaluation.verification import (
    THRESHOLDS,
    equal_error_rate,
    evaluate_verification,
    kfold_accuracy,
)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def random_pairs(num_pairs=200, dim=8, noise=0.9, seed=0):
    """Pair-ordered unit embeddings: positives are noisy copies, negatives independent."""
    rng = np.random.default_rng(seed)
    issame = rng.random(num_pairs) < 0.5
    first = unit(rng.normal(size=(num_pairs, dim)))
    other = unit(rng.normal(size=(num_pairs, dim)))
    second = np.where(issame[:, None], first + noise * rng.normal(size=(num_pairs, dim)), other)
    emb = np.empty((2 * num_pairs, dim))
    emb[0::2], emb[1::2] = first, unit(second)
    return emb, issame


def insightface_by_hand(distances, issame, folds=10):
    """Independent re-statement of the protocol: contiguous blocks, loop over thresholds."""
    blocks = np.array_split(np.arange(distances.size), folds)
    accuracies, best = [], []
    for test in blocks:
        train = np.setdiff1d(np.arange(distances.size), test)
        scores = [np.mean(np.less(distances[train], t) == issame[train]) for t in THRESHOLDS]
        threshold = THRESHOLDS[int(np.argmax(scores))]
        best.append(threshold)
        accuracies.append(np.mean(np.less(distances[test], threshold) == issame[test]))
    return np.array(accuracies), np.array(best)


def test_fold_accuracy_matches_the_protocol_stated_by_hand():
    emb, issame = random_pairs(num_pairs=203, seed=1)  # 203 pairs: first 3 folds are longer
    result = evaluate_verification(emb, issame)
    distances = np.sum((emb[0::2] - emb[1::2]) ** 2, axis=1)
    expected_acc, expected_thr = insightface_by_hand(distances, issame)
    np.testing.assert_allclose(result.fold_accuracies, expected_acc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.best_thresholds, expected_thr, rtol=0, atol=1e-12)
    assert result.accuracy_mean == pytest.approx(expected_acc.mean())
    assert result.accuracy_std == pytest.approx(expected_acc.std(ddof=0))


def test_folds_are_contiguous_blocks_without_shuffle():
    # 10 folds of 2 pairs. Every pair is trivially right except the two pairs of fold 6,
    # which look like the opposite class: only fold 6 may score below 1.
    distances = np.tile([0.1, 3.0], 10)
    issame = np.tile([True, False], 10)
    issame[12:14] = [False, True]
    accuracies, thresholds = kfold_accuracy(distances, issame, nrof_folds=10)
    expected = np.ones(10)
    expected[6] = 0.0
    np.testing.assert_array_equal(accuracies, expected)
    # With 9 clean folds to train on the first best threshold is just above 0.1.
    assert thresholds[0] == pytest.approx(0.11)


def test_single_fold_trains_and_tests_on_all_pairs():
    distances = np.array([0.2, 0.4, 1.5, 0.3])
    issame = np.array([True, True, False, False])
    accuracies, thresholds = kfold_accuracy(distances, issame, nrof_folds=1)
    # The first best threshold separates 0.2 from 0.3: 3 of 4 right.
    assert accuracies.tolist() == [0.75] and thresholds[0] == pytest.approx(0.21)


def test_perfect_separation():
    rng = np.random.default_rng(2)
    a, b = unit(rng.normal(size=(100, 4))), unit(rng.normal(size=(100, 4)))
    # Positives identical (distance 0), negatives opposite (distance 4).
    emb = np.empty((400, 4))
    emb[0::2] = np.concatenate([a, b])
    emb[1::2] = np.concatenate([a, -b])
    issame = np.repeat([True, False], 100)
    result = evaluate_verification(emb, issame, far_targets=(1e-1, 1e-2, 1e-3))
    assert result.accuracy_mean == 1.0 and result.accuracy_std == 0.0
    assert result.auc == 1.0 and result.eer == 0.0
    assert result.tar_at_far[1e-1] == 1.0 and result.tar_at_far[1e-2] == 1.0
    assert math.isnan(result.tar_at_far[1e-3])  # 100 negatives cannot measure FAR 1e-3


def test_roc_and_auc_match_scikit_learn():
    emb, issame = random_pairs(num_pairs=300, seed=3)
    result = evaluate_verification(emb, issame)
    cosine = np.sum(emb[0::2] * emb[1::2], axis=1)
    fpr, tpr, _ = roc_curve(issame, cosine)
    np.testing.assert_allclose(result.fpr, fpr)
    np.testing.assert_allclose(result.tpr, tpr)
    assert result.auc == pytest.approx(roc_auc_score(issame, cosine), abs=1e-12)
    assert (result.num_positive, result.num_negative) == (issame.sum(), (~issame).sum())


def brute_force_tar(scores, issame, far):
    """Max TAR over every threshold whose FAR <= far (accept score > threshold)."""
    negatives, positives = scores[~issame], scores[issame]
    if far * negatives.size < 1:
        return math.nan
    best = 0.0
    for threshold in np.concatenate([np.unique(scores), [-np.inf]]):
        if np.mean(negatives > threshold) <= far:
            best = max(best, np.mean(positives > threshold))
    return best


@pytest.mark.parametrize("far", [0.5, 0.1, 0.03, 0.01, 0.004])
def test_tar_at_far_is_the_best_tar_within_the_far(far):
    rng = np.random.default_rng(4)
    issame = rng.random(400) < 0.4
    # Rounded scores create ties between and within classes.
    scores = np.round(np.where(issame, rng.normal(0.5, 0.3, 400), rng.normal(0, 0.3, 400)), 1)
    assert tar_at_far(scores, issame, far=far) == pytest.approx(
        brute_force_tar(scores, issame, far), nan_ok=True
    )


def test_tar_at_far_in_results_uses_cosine_scores():
    emb, issame = random_pairs(num_pairs=400, seed=5)
    result = evaluate_verification(emb, issame, far_targets=(0.2, 0.05, 0.01, 1e-3))
    cosine = np.sum(emb[0::2] * emb[1::2], axis=1)
    for far, tar in result.tar_at_far.items():
        assert tar == pytest.approx(brute_force_tar(cosine, issame, far), nan_ok=True)
    assert math.isnan(result.tar_at_far[1e-3]) and result.min_far == 1 / result.num_negative


def test_equal_error_rate_by_hand():
    # pos 0.8, 0.5; neg 0.5, 0.2. ROC (0,0) -> (0,.5) -> (.5,1) -> (1,1): FAR = FRR on the
    # tied segment at FAR = 0.25.
    fpr, tpr, _ = roc_curve([1, 1, 0, 0], [0.8, 0.5, 0.5, 0.2])
    assert equal_error_rate(fpr, tpr) == pytest.approx(0.25)
    # pos 0.9, 0.8, 0.3; neg 0.7, 0.2, 0.1: FAR = FRR = 1/3 at a vertex.
    fpr, tpr, _ = roc_curve([1, 1, 1, 0, 0, 0], [0.9, 0.8, 0.3, 0.7, 0.2, 0.1])
    assert equal_error_rate(fpr, tpr) == pytest.approx(1 / 3)


def test_equal_error_rate_of_two_gaussians():
    # Unit-variance classes 2 apart: EER = Phi(-1) = 0.1587.
    rng = np.random.default_rng(6)
    scores = np.concatenate([rng.normal(2, 1, 20000), rng.normal(0, 1, 20000)])
    labels = np.repeat([1, 0], 20000)
    fpr, tpr, _ = roc_curve(labels, scores)
    assert equal_error_rate(fpr, tpr) == pytest.approx(norm.cdf(-1), abs=0.006)


def test_torch_input_and_to_dict():
    emb, issame = random_pairs(num_pairs=100, seed=7)
    from_numpy = evaluate_verification(emb, issame, far_targets=(0.1, 1e-4))
    from_torch = evaluate_verification(torch.tensor(emb, dtype=torch.float32),
                                       torch.tensor(issame), far_targets=(0.1, 1e-4))
    assert from_torch.accuracy_mean == pytest.approx(from_numpy.accuracy_mean)
    record = from_numpy.to_dict()
    assert record["tar@far=1e-01"] == from_numpy.tar_at_far[0.1]
    assert math.isnan(record["tar@far=1e-04"])
    assert record["fold_accuracies"] == from_numpy.fold_accuracies.tolist()
    assert "fpr" not in record and len(from_numpy.to_dict(include_roc=True)["fpr"]) > 2


def test_bad_inputs_raise_clear_errors():
    emb, issame = random_pairs(num_pairs=20, seed=8)
    with pytest.raises(DataFormatError, match="odd number of rows"):
        evaluate_verification(emb[:-1], issame)
    with pytest.raises(DataFormatError, match="one flag per pair, 20"):
        evaluate_verification(emb, issame[:-1])
    broken = emb.copy()
    broken[3, 0] = np.nan
    with pytest.raises(DataFormatError, match="NaN or inf .*row 3"):
        evaluate_verification(broken, issame)
    with pytest.raises(DataFormatError, match="not L2-normalised"):
        evaluate_verification(emb * 2, issame)
    with pytest.raises(DataFormatError, match="both positive and negative"):
        evaluate_verification(emb, np.ones(20, bool))
    with pytest.raises(ConfigError, match="FAR targets"):
        evaluate_verification(emb, issame, far_targets=(0.0,))
    with pytest.raises(ConfigError, match="nrof_folds"):
        evaluate_verification(emb, issame, nrof_folds=21)


def test_protocol_rows_to_result_end_to_end():
    import pandas as pd

    from fkdlib.data.synthface.protocols import lfw_pairs
    from fkdlib.evaluation.embed import pair_embeddings

    # One orthogonal direction per identity plus tiny noise: positive distances (~0.002) sit
    # below the first grid threshold 0.01, negatives near 2, so every fold is perfect.
    rng = np.random.default_rng(9)
    labels = np.repeat(np.arange(40), 5)
    order = rng.permutation(labels.size)
    meta = pd.DataFrame({"identity": labels[order]})
    emb = unit(np.eye(40)[labels[order]] + 0.005 * rng.normal(size=(labels.size, 40)))
    protocol = lfw_pairs(meta, folds=10, pairs_per_fold=20)
    result = evaluate_verification(pair_embeddings(emb, protocol.rows), protocol.issame)
    assert result.accuracy_mean == 1.0 and result.auc == 1.0
    assert result.num_positive == result.num_negative == 100
