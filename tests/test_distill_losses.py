"""Angular, KD, FitNet, AT, RKD and PKT against independent NumPy / loop computations."""

import numpy as np
import pytest
import torch

from fkdlib.distill import (
    AT_WEIGHT, FITNET_WEIGHT, KD_CE_WEIGHT, KD_TEMPERATURE, KD_WEIGHT, PKT_WEIGHT, RKD_WEIGHT,
    AngularLoss, ATLoss, FCDLoss, FitNetLoss, ICDLoss, KDLoss, PKTLoss, RKDLoss, SRRLLoss,
    angular_distance, attention_map, kd_divergence)
from fkdlib.errors import ConfigError

LABELS = torch.zeros(6, dtype=torch.long)


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _huber(d):
    d = np.abs(d)
    return np.where(d < 1.0, 0.5 * d ** 2, d - 0.5)


def _orthogonal(n, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return torch.from_numpy(q)


# -- angular (VarGFaceNet) -------------------------------------------------------------------
def test_angular_distance_is_two_minus_two_cosine():
    s, t = _rand(6, 8, seed=1).numpy(), _rand(6, 8, seed=2).numpy()
    cos = (s * t).sum(1) / np.linalg.norm(s, axis=1) / np.linalg.norm(t, axis=1)
    got = angular_distance(torch.from_numpy(s), torch.from_numpy(t))
    assert float(got) == pytest.approx(np.mean(2 - 2 * cos), rel=1e-5)


def test_angular_is_zero_for_identical_directions_and_scale_invariant():
    s, t = _rand(6, 8, seed=1), _rand(6, 8, seed=2)
    assert float(angular_distance(t, t)) == pytest.approx(0.0, abs=1e-6)
    scales = torch.tensor([0.1, 1.0, 3.0, 7.0, 0.5, 20.0], dtype=torch.float64).unsqueeze(1)
    assert float(angular_distance(t * scales, t)) == pytest.approx(0.0, abs=1e-6)
    reference = float(angular_distance(s, t))
    assert float(angular_distance(s * scales, t)) == pytest.approx(reference, rel=1e-5)
    assert float(angular_distance(s, t * scales)) == pytest.approx(reference, rel=1e-5)
    # opposite directions: 2 - 2 * (-1) = 4
    assert float(angular_distance(-t, t)) == pytest.approx(4.0, rel=1e-6)


def test_angular_loss_refuses_different_sizes_unless_projecting():
    with pytest.raises(ConfigError, match=r"12 dimensions.*16.*project=True"):
        AngularLoss(12, 16)
    loss = AngularLoss(12, 16, project=True)
    s, t = _rand(6, 12, seed=3).float(), _rand(6, 16, seed=4).float()
    projected = (s @ loss.projection.weight.detach().t()).numpy()
    cos = (projected * t.numpy()).sum(1) / np.linalg.norm(projected, axis=1) / np.linalg.norm(
        t.numpy(), axis=1)
    got = loss({"embedding": s}, {"embedding": t}, LABELS).detach()
    assert float(got) == pytest.approx(np.mean(2 - 2 * cos), rel=1e-5)
    assert AngularLoss(16, 16).projection is None


def test_angular_gradient_reaches_the_student_only():
    s = _rand(6, 8, seed=1).requires_grad_()
    t = _rand(6, 8, seed=2).requires_grad_()
    AngularLoss(8, 8)({"embedding": s}, {"embedding": t}, LABELS).backward()
    assert s.grad is not None and float(s.grad.abs().sum()) > 0
    assert t.grad is None


# -- KD (Hinton) -----------------------------------------------------------------------------
def test_kd_matches_a_direct_computation():
    s, t = _rand(6, 10, seed=5) * 3, _rand(6, 10, seed=6) * 3
    T = KD_TEMPERATURE

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p_t, p_s = softmax(t.numpy() / T), softmax(s.numpy() / T)
    expected = (p_t * (np.log(p_t) - np.log(p_s))).sum(1).mean() * T ** 2
    got = KDLoss()({"logits": s}, {"logits": t}, LABELS)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert float(kd_divergence(s, t, 1.0)) != pytest.approx(float(got), rel=1e-3)


def test_kd_is_zero_for_identical_logits_and_has_repdistiller_defaults():
    t = _rand(6, 10, seed=7)
    assert float(KDLoss()({"logits": t}, {"logits": t}, LABELS)) == pytest.approx(0, abs=1e-6)
    assert (KD_TEMPERATURE, KD_CE_WEIGHT, KD_WEIGHT) == (4.0, 0.1, 0.9)
    with pytest.raises(ConfigError, match="same shape"):
        kd_divergence(t, t[:, :5])


# -- FitNet ----------------------------------------------------------------------------------
def _set_bn(bn, seed):
    rng = np.random.default_rng(seed)
    c = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.from_numpy(rng.normal(size=c)))
        bn.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, size=c)))
        bn.weight.copy_(torch.from_numpy(rng.normal(size=c)))
        bn.bias.copy_(torch.from_numpy(rng.normal(size=c)))


def _fitnet_numpy(loss, s, t):
    conv, bn = loss.regressor[0], loss.regressor[1]
    w = conv.weight.detach().numpy()[:, :, 0, 0]
    y = np.einsum("oc,bchw->bohw", w, s)
    shape = (1, -1, 1, 1)
    y = ((y - bn.running_mean.numpy().reshape(shape)) / np.sqrt(
        bn.running_var.numpy().reshape(shape) + bn.eps) * bn.weight.detach().numpy().reshape(shape)
        + bn.bias.detach().numpy().reshape(shape))
    return np.mean((y - t) ** 2)


def test_fitnet_matches_conv_bn_regression_and_pools_the_larger_map():
    loss = FitNetLoss(4, 6).eval()
    _set_bn(loss.regressor[1], 0)
    s, t = _rand(3, 4, 4, 4, seed=8).float(), _rand(3, 6, 4, 4, seed=9).float()
    got = loss({"layer3": s}, {"layer3": t}, LABELS).detach()
    assert float(got) == pytest.approx(_fitnet_numpy(loss, s.numpy(), t.numpy()), rel=1e-5)
    # student 8x8, teacher 4x4: the student is averaged over 2x2 blocks first
    big = _rand(3, 4, 8, 8, seed=10).float()
    pooled = big.numpy().reshape(3, 4, 4, 2, 4, 2).mean(axis=(3, 5))
    got = loss({"layer3": big}, {"layer3": t}, LABELS).detach()
    assert float(got) == pytest.approx(_fitnet_numpy(loss, pooled, t.numpy()), rel=1e-5)
    # teacher larger: the teacher is pooled
    big_t = _rand(3, 6, 8, 8, seed=11).float()
    pooled_t = big_t.numpy().reshape(3, 6, 4, 2, 4, 2).mean(axis=(3, 5))
    got = loss({"layer3": s}, {"layer3": big_t}, LABELS).detach()
    assert float(got) == pytest.approx(_fitnet_numpy(loss, s.numpy(), pooled_t), rel=1e-5)


def test_fitnet_is_zero_with_an_identity_regressor_and_uses_configured_stages():
    loss = FitNetLoss(5, 5, student_stage="layer2", teacher_stage="layer3").eval()
    with torch.no_grad():
        loss.regressor[0].weight.copy_(torch.eye(5).view(5, 5, 1, 1))
    x = _rand(3, 5, 4, 4, seed=12).float()
    got = loss({"layer2": x}, {"layer3": x.clone()}, LABELS).detach()
    assert float(got) == pytest.approx(0.0, abs=1e-9)
    assert FITNET_WEIGHT == 100.0
    with pytest.raises(ConfigError, match="student outputs have no 'layer2'"):
        loss({"layer3": x}, {"layer3": x}, LABELS)


# -- AT --------------------------------------------------------------------------------------
def _at_numpy(s, t, p=2):
    def q(x):
        a = (np.abs(x) ** p).mean(axis=1).reshape(len(x), -1)
        return a / np.linalg.norm(a, axis=1, keepdims=True)
    return np.mean((q(s) - q(t)) ** 2)


def test_at_sums_pair_losses_against_numpy():
    s1, t1 = _rand(3, 4, 8, 8, seed=13), _rand(3, 6, 8, 8, seed=14)
    s2, t2 = _rand(3, 8, 8, 8, seed=15), _rand(3, 5, 4, 4, seed=16)
    s2_pooled = s2.numpy().reshape(3, 8, 4, 2, 4, 2).mean(axis=(3, 5))
    expected = _at_numpy(s1.numpy(), t1.numpy()) + _at_numpy(s2_pooled, t2.numpy())
    loss = ATLoss(stages=["layer1", ("layer2", "layer3")])
    got = loss({"layer1": s1, "layer2": s2}, {"layer1": t1, "layer3": t2}, LABELS)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert AT_WEIGHT == 1000.0


def test_at_attention_map_equals_the_normalised_channel_sum_and_zero_for_identical():
    x = _rand(2, 7, 3, 3, seed=17)
    summed = (x.numpy() ** 2).sum(axis=1).reshape(2, -1)
    summed /= np.linalg.norm(summed, axis=1, keepdims=True)
    np.testing.assert_allclose(attention_map(x).numpy(), summed, rtol=1e-5)
    features = {f"layer{i}": _rand(2, 4, 8 // i, 8 // i, seed=i) for i in (1, 2, 4)}
    loss = ATLoss(stages=("layer1", "layer2", "layer4"))
    assert float(loss(features, dict(features), LABELS)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError, match="pair"):
        ATLoss(stages=[("layer1", "layer2", "layer3")])


# -- RKD -------------------------------------------------------------------------------------
def _rkd_numpy(s, t):
    def distances(x):
        n = len(x)
        d = np.array([[np.linalg.norm(x[i] - x[j]) if i != j else 0.0 for j in range(n)]
                      for i in range(n)])
        return d / d[d > 0].mean()

    def angles(x):
        n = len(x)
        out = np.zeros((n, n, n))
        for j in range(n):  # the vertex
            for i in range(n):
                for k in range(n):
                    a, b = x[i] - x[j], x[k] - x[j]
                    na, nb = np.linalg.norm(a), np.linalg.norm(b)
                    if na > 0 and nb > 0:
                        out[j, i, k] = a @ b / na / nb
        return out

    distance = _huber(distances(s) - distances(t)).mean()
    angle = _huber(angles(s) - angles(t)).mean()
    return distance, angle


def test_rkd_distance_and_angle_terms_against_loops():
    s, t = _rand(5, 6, seed=18), _rand(5, 9, seed=19) * 2
    distance, angle = _rkd_numpy(s.numpy(), t.numpy())
    got = RKDLoss()({"embedding": s}, {"embedding": t}, LABELS)
    assert float(got) == pytest.approx(25 * distance + 50 * angle, rel=1e-5)
    only_distance = RKDLoss(angle_weight=0)({"embedding": s}, {"embedding": t}, LABELS)
    assert float(only_distance) == pytest.approx(25 * distance, rel=1e-5)
    assert RKD_WEIGHT == 1.0


def test_rkd_is_zero_under_rotation_scaling_and_translation():
    t = _rand(6, 8, seed=20)
    s = 3.0 * t @ _orthogonal(8, 0) + 5.0
    got = RKDLoss()({"embedding": s}, {"embedding": t}, LABELS)
    assert float(got) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ConfigError, match="flat vectors"):
        RKDLoss(feature="layer1")({"layer1": _rand(2, 3, 2, 2)}, {"layer1": _rand(2, 3, 2, 2)},
                                  LABELS)


# -- PKT -------------------------------------------------------------------------------------
def _pkt_numpy(s, t, eps=1e-7):
    def conditional(x):
        u = x / (np.linalg.norm(x, axis=1, keepdims=True) + eps)
        k = (u @ u.T + 1) / 2
        return k / k.sum(axis=1, keepdims=True)

    ps, pt = conditional(s), conditional(t)
    n = len(s)
    total = sum(pt[i, j] * np.log((pt[i, j] + eps) / (ps[i, j] + eps))
                for i in range(n) for j in range(n))
    return total / n ** 2


def test_pkt_matches_loops_and_is_zero_for_identical_directions():
    s, t = _rand(6, 5, seed=21), _rand(6, 12, seed=22)
    got = PKTLoss()({"embedding": s}, {"embedding": t}, LABELS)
    assert float(got) == pytest.approx(_pkt_numpy(s.numpy(), t.numpy()), rel=1e-5)
    assert float(got) > 0
    scales = torch.linspace(0.5, 4.0, 6, dtype=torch.float64).unsqueeze(1)
    same = PKTLoss()({"embedding": t * scales}, {"embedding": t}, LABELS)
    assert float(same) == pytest.approx(0.0, abs=1e-7)
    assert PKT_WEIGHT == 30000.0


@pytest.mark.parametrize("loss, key, shape", [
    (RKDLoss(), "embedding", (5, 6)),
    (PKTLoss(), "embedding", (5, 6)),
    (ATLoss(stages=["layer1"]), "layer1", (5, 3, 4, 4)),
    (KDLoss(), "logits", (5, 6)),
])
def test_relational_losses_send_gradients_to_the_student_only(loss, key, shape):
    s = _rand(*shape, seed=23).requires_grad_()
    t = _rand(*shape, seed=24).requires_grad_()
    loss({key: s}, {key: t}, LABELS).backward()
    assert float(s.grad.abs().sum()) > 0
    assert t.grad is None


def test_only_kd_declares_that_it_reads_logits():
    # every loss class of fkdlib.distill; only Hinton KD reads student/teacher["logits"], and
    # PKT and RKD when they are told to relate the logits
    readers = [cls.__name__ for cls in (AngularLoss, ATLoss, FCDLoss, FitNetLoss, ICDLoss,
                                        KDLoss, PKTLoss, RKDLoss, SRRLLoss)
               if isinstance(getattr(cls, "needs_logits", False), bool)
               and getattr(cls, "needs_logits", False)]
    assert readers == ["KDLoss"]
    assert KDLoss(temperature=2.0).needs_logits is True
    assert PKTLoss().needs_logits is False and RKDLoss().needs_logits is False
    assert PKTLoss(feature="logits").needs_logits and RKDLoss(feature="logits").needs_logits
