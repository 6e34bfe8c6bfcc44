"""Closed-set identification: rank-k and CMC against a brute-force loop."""

import numpy as np
import pytest
import torch

from fkdlib.errors import ConfigError, DataFormatError
from fkdlib.evaluation import identification
from fkdlib.evaluation.identification import evaluate_identification


def brute_force_ranks(gallery, gallery_labels, probes, probe_labels, distractors):
    """Position (1-based) of the first mate when everything is sorted by cosine similarity."""
    entries = np.concatenate([gallery, distractors])
    entry_labels = list(gallery_labels) + [None] * len(distractors)
    ranks = []
    for probe, label in zip(probes, probe_labels):
        similarity = [float(np.dot(probe, e) / (np.linalg.norm(probe) * np.linalg.norm(e)))
                      for e in entries]
        ordered = sorted(range(len(entries)), key=lambda i: -similarity[i])
        ranks.append(1 + next(pos for pos, i in enumerate(ordered) if entry_labels[i] == label))
    return np.array(ranks)


def make_problem(seed=0, identities=8, per_identity=2, probes_per_identity=3, distractors=15):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(identities, 5))
    gallery_labels = np.repeat(np.arange(identities), per_identity)
    probe_labels = np.repeat(np.arange(identities), probes_per_identity)
    gallery = centres[gallery_labels] + 1.2 * rng.normal(size=(gallery_labels.size, 5))
    probes = centres[probe_labels] + 1.2 * rng.normal(size=(probe_labels.size, 5))
    return gallery, gallery_labels, probes, probe_labels, rng.normal(size=(distractors, 5))


def test_ranks_and_cmc_match_brute_force():
    gallery, g_labels, probes, p_labels, distractors = make_problem()
    result = evaluate_identification(gallery, g_labels, probes, p_labels, distractors,
                                     ranks=(1, 3, 100))
    expected = brute_force_ranks(gallery, g_labels, probes, p_labels, distractors)
    np.testing.assert_array_equal(result.probe_ranks, expected)
    assert result.gallery_size == 16 + 15 and result.num_distractors == 15
    assert result.cmc.shape == (31,)
    for k in range(1, 32):
        assert result.cmc[k - 1] == pytest.approx(np.mean(expected <= k))
    assert result.rank_accuracies == {1: np.mean(expected == 1), 3: np.mean(expected <= 3),
                                      100: 1.0}
    assert 0 < result.rank_accuracies[1] < 1  # the problem is neither trivial nor hopeless


def test_distractors_only_lower_the_accuracy():
    gallery, g_labels, probes, p_labels, distractors = make_problem(seed=1, distractors=200)
    alone = evaluate_identification(gallery, g_labels, probes, p_labels)
    crowded = evaluate_identification(gallery, g_labels, probes, p_labels, distractors)
    assert (crowded.probe_ranks >= alone.probe_ranks).all()
    assert crowded.rank_accuracies[1] < alone.rank_accuracies[1]


def test_blocked_computation_equals_one_block(monkeypatch):
    problem = make_problem(seed=2)
    whole = evaluate_identification(*problem)
    monkeypatch.setattr(identification, "_BLOCK_ELEMENTS", 40)  # one probe per block
    np.testing.assert_array_equal(evaluate_identification(*problem).probe_ranks,
                                  whole.probe_ranks)


def test_ties_count_against_the_probe():
    # A collapsed model: every embedding equal. Every probe ties with all 6 entries.
    same = np.ones((4, 3))
    result = evaluate_identification(same, [0, 0, 1, 1], same[:2], [0, 1],
                                     distractor_emb=np.ones((2, 3)))
    assert result.probe_ranks.tolist() == [5, 5]  # 1 + 2 other-identity + 2 distractors
    assert result.rank_accuracies[1] == 0.0


def test_scale_and_torch_inputs_do_not_matter():
    gallery, g_labels, probes, p_labels, distractors = make_problem(seed=3)
    reference = evaluate_identification(gallery, g_labels, probes, p_labels, distractors)
    scaled = evaluate_identification(torch.tensor(3 * gallery), torch.tensor(g_labels).numpy(),
                                     torch.tensor(0.5 * probes), p_labels,
                                     torch.tensor(distractors))
    np.testing.assert_array_equal(scaled.probe_ranks, reference.probe_ranks)
    assert scaled.to_dict()["rank1"] == reference.rank_accuracies[1]


def test_bad_inputs():
    gallery, g_labels, probes, p_labels, _ = make_problem(seed=4)
    with pytest.raises(DataFormatError, match=r"no mate in the gallery \(identities \[7\]"):
        evaluate_identification(gallery[g_labels != 7], g_labels[g_labels != 7], probes, p_labels)
    with pytest.raises(DataFormatError, match="one label per embedding"):
        evaluate_identification(gallery, g_labels[:-1], probes, p_labels)
    with pytest.raises(DataFormatError, match="sizes differ"):
        evaluate_identification(gallery, g_labels, probes[:, :3], p_labels)
    with pytest.raises(ConfigError, match="ranks must be integers >= 1"):
        evaluate_identification(gallery, g_labels, probes, p_labels, ranks=(0, 1))
    with pytest.raises(DataFormatError, match="NaN"):
        evaluate_identification(gallery * np.nan, g_labels, probes, p_labels)
