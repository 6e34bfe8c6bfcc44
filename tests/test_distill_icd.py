"""ICD-Face: feature bank FIFO, soft histograms, ICD and FCD losses."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fkdlib.distill import FCDLoss, FeatureBank, ICDLoss, angular_distance, soft_histogram
from fkdlib.errors import ConfigError


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class ReferenceBank:
    """Sample-by-sample FIFO, the behaviour FeatureBank.update must reproduce."""

    def __init__(self, classes, slots, dim):
        self.features = np.zeros((classes, slots, dim))
        self.valid = np.zeros((classes, slots), dtype=bool)
        self.pointer = np.zeros(classes, dtype=int)

    def update(self, features, labels):
        for feature, label in zip(features, labels):
            slot = self.pointer[label]
            self.features[label, slot] = _unit(feature)
            self.valid[label, slot] = True
            self.pointer[label] = (slot + 1) % self.features.shape[1]


def test_bank_fifo_order_and_wrap_around_by_hand():
    bank = FeatureBank(2, 3, 2, dtype=torch.float64)
    f = torch.tensor([[1.0, 0], [0, 2.0], [3.0, 4.0], [-1.0, 0]], dtype=torch.float64)
    bank.update(f[:2], torch.tensor([0, 0]))
    assert bank.valid.tolist() == [[True, True, False], [False, False, False]]
    assert bank.pointer.tolist() == [2, 0]
    bank.update(f[2:], torch.tensor([0, 0]))  # fills slot 2, then replaces the oldest (slot 0)
    np.testing.assert_allclose(bank.features[0].numpy(), [[-1, 0], [0, 1], [0.6, 0.8]])
    assert bank.pointer.tolist() == [1, 0]
    features, mask = bank.entries(torch.tensor([1, 0]))
    assert features.shape == (2, 3, 2) and mask.tolist() == [[False] * 3, [True] * 3]


def test_bank_matches_sequential_writes_for_random_batches():
    rng = np.random.default_rng(0)
    bank, reference = FeatureBank(5, 3, 4, dtype=torch.float64), ReferenceBank(5, 3, 4)
    for _ in range(12):
        size = int(rng.integers(1, 12))
        labels = rng.integers(0, 5, size=size)
        labels[: size // 2] = labels[0]  # often more samples of one class than slots
        features = rng.normal(size=(size, 4))
        bank.update(torch.from_numpy(features), torch.from_numpy(labels))
        reference.update(features, labels)
        np.testing.assert_allclose(bank.features.numpy(), reference.features, atol=1e-12)
        assert (bank.valid.numpy() == reference.valid).all()
        assert (bank.pointer.numpy() == reference.pointer).all()


def test_bank_memory_and_errors():
    bank = FeatureBank(7, 4, 6, dtype=torch.float16)
    assert bank.memory_bytes() == 7 * 4 * 6 * 2 + 7 * 8 + 7 * 4
    assert bank.memory_bytes() == FeatureBank.estimate_bytes(4, 7, 6, torch.float16)
    assert FeatureBank.estimate_bytes(8) == 85742 * 8 * 512 * 2 + 85742 * 8 + 85742 * 8
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 6\]"):
        bank.update(torch.randn(1, 6), torch.tensor([7]))
    with pytest.raises(ConfigError, match=r"shape \(1, 6\)"):
        bank.update(torch.randn(1, 5), torch.tensor([0]))
    with pytest.raises(ConfigError, match="positive integer"):
        FeatureBank(0, 4, 6)


def test_soft_histogram_normalised_masked_and_against_numpy():
    sims = torch.tensor([[0.9, 0.2, -0.5], [0.1, 0.3, 0.0], [0.5, 0.5, 0.5]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [False, False, False], [True, True, True]])
    hist, has = soft_histogram(sims, mask, bins=11, bandwidth=0.2)
    assert has.tolist() == [True, False, True]
    np.testing.assert_allclose(hist.sum(1).numpy(), [1, 0, 1], atol=1e-12)
    centres = np.linspace(-1, 1, 11)
    kernel = np.exp(-0.5 * ((np.array([0.9, 0.2])[:, None] - centres) / 0.2) ** 2)
    expected = (kernel / kernel.sum(1, keepdims=True)).mean(0)
    np.testing.assert_allclose(hist[0].numpy(), expected, atol=1e-12)
    # a bandwidth far below the bin step stays finite: 0.2 sits on centre 6 and keeps all its
    # mass there, 0.9 lies halfway between centres 9 and 10 and splits evenly
    narrow, _ = soft_histogram(sims, mask, bins=11, bandwidth=1e-4)
    assert torch.isfinite(narrow).all()
    np.testing.assert_allclose(narrow[0, [6, 9, 10]].numpy(), [0.5, 0.25, 0.25], atol=1e-6)


def test_soft_histogram_moves_mass_to_higher_bins_and_is_differentiable():
    centres = torch.linspace(-1, 1, 41, dtype=torch.float64)
    means = []
    for level in (-0.6, -0.1, 0.3, 0.7, 0.95):
        sims = torch.full((1, 5), level, dtype=torch.float64) + _rand(1, 5, seed=1) * 0.02
        hist, _ = soft_histogram(sims, torch.ones(1, 5, dtype=torch.bool))
        means.append(float((hist * centres).sum()))
    assert means == sorted(means) and means[-1] - means[0] > 1.2
    sims = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    hist, _ = soft_histogram(sims, torch.ones(2, 3, dtype=torch.bool))
    (hist * centres).sum().backward()
    assert float(sims.grad.abs().sum()) > 0


def test_icd_is_zero_for_identical_networks_and_first_batches_are_safe():
    loss = ICDLoss(num_classes=4, slots_per_class=3, dim_s=6, dim_t=6)
    labels = torch.tensor([0, 0, 1, 2])
    first = _rand(4, 6, seed=2).float()
    value = loss({"embedding": first}, {"embedding": first.clone()}, labels)
    assert float(value) == 0.0  # empty banks: no positive pair yet, nothing raised
    single = loss({"embedding": first[:1]}, {"embedding": first[:1]}, torch.tensor([3]))
    assert float(single) == 0.0
    second = _rand(4, 6, seed=3).float()
    value = loss({"embedding": second}, {"embedding": second.clone()}, labels)
    assert float(value.detach()) == pytest.approx(0.0, abs=1e-7)


def test_icd_matches_an_independent_computation_and_reaches_the_student_only():
    loss = ICDLoss(num_classes=3, slots_per_class=4, dim_s=5, dim_t=7, bins=21, bandwidth=0.1)
    history_labels = torch.tensor([0, 0, 1, 0, 2])
    hist_s, hist_t = _rand(5, 5, seed=4).float(), _rand(5, 7, seed=5).float()
    loss({"embedding": hist_s}, {"embedding": hist_t}, history_labels)
    labels = torch.tensor([0, 1, 2, 1])
    student = _rand(4, 5, seed=6).float().requires_grad_()
    teacher = _rand(4, 7, seed=7).float().requires_grad_()
    value = loss({"embedding": student}, {"embedding": teacher}, labels)

    centres = np.linspace(-1, 1, 21)

    def histogram(query, bank):
        sims = _unit(bank) @ _unit(query)
        kernel = np.exp(-0.5 * ((sims[:, None] - centres) / 0.1) ** 2)
        return (kernel / kernel.sum(1, keepdims=True)).mean(0)

    kls = []
    for i, label in enumerate(labels.tolist()):
        rows = [j for j, lab in enumerate(history_labels.tolist()) if lab == label]
        p_t = histogram(teacher[i].detach().numpy(), hist_t.numpy()[rows])
        p_s = histogram(student[i].detach().numpy(), hist_s.numpy()[rows])
        kls.append(np.sum(p_t * (np.log(p_t + 1e-8) - np.log(p_s + 1e-8))))
    assert float(value.detach()) == pytest.approx(np.mean(kls), rel=1e-4)
    value.backward()
    assert float(student.grad.abs().sum()) > 0 and teacher.grad is None
    # the batch was written after the loss: class 1 now holds 1 + 2 entries
    assert loss.teacher_bank.valid[1].sum() == 3 and loss.student_bank.valid[1].sum() == 3


def test_icd_banks_update_only_in_training_mode():
    loss = ICDLoss(num_classes=2, slots_per_class=2, dim_s=3, dim_t=3).eval()
    x = _rand(2, 3, seed=8).float()
    loss({"embedding": x}, {"embedding": x}, torch.tensor([0, 1]))
    assert not loss.teacher_bank.valid.any() and not loss.student_bank.valid.any()
    loss.train()
    loss({"embedding": x}, {"embedding": x}, torch.tensor([0, 1]))
    assert loss.teacher_bank.valid[:, 0].all()
    assert {"teacher_bank.features", "student_bank.pointer"} <= set(loss.state_dict())


def test_fcd_is_the_normalised_l2_with_projection_when_sizes_differ():
    s, t = _rand(5, 6, seed=9).float(), _rand(5, 6, seed=10).float()
    same = FCDLoss(6, 6)
    assert same.projection is None
    expected = np.mean(np.sum((_unit(t.numpy()) - _unit(s.numpy())) ** 2, axis=1))
    assert float(same({"embedding": s}, {"embedding": t}, None)) == pytest.approx(expected, 1e-5)
    projected = FCDLoss(6, 9)
    t9 = _rand(5, 9, seed=11).float()
    with torch.no_grad():
        value = projected({"embedding": s}, {"embedding": t9}, None)
        reference = angular_distance(F.linear(s, projected.projection.weight), t9)
    assert float(value) == pytest.approx(float(reference), rel=1e-6)
