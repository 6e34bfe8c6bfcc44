"""Margin heads against the formulas of SphereFace, CosFace, ArcFace and the combined margin,
computed independently with NumPy / math."""

import math

import numpy as np
import pytest
import torch

from fkdlib.errors import ConfigError
from fkdlib.heads import (
    HEADS,
    ArcFace,
    CombinedMargin,
    CosFace,
    NormSoftmax,
    SoftmaxHead,
    SphereFace,
    create_head,
    target_logit_curve,
)

EMB, CLASSES, BATCH = 8, 5, 64


def expected_target(name: str, theta: np.ndarray, **kw) -> np.ndarray:
    """Target logit / s written out case by case from the papers (θ in radians)."""
    out = np.empty_like(theta)
    for i, t in enumerate(theta):
        if name == "norm_softmax":
            out[i] = math.cos(t)
        elif name == "cosface":
            out[i] = math.cos(t) - kw.get("m", 0.35)
        elif name == "arcface":
            m = kw.get("m", 0.5)
            if kw.get("easy_margin", False):
                out[i] = math.cos(t + m) if math.cos(t) > 0 else math.cos(t)
            else:
                # theta + m <= pi: cos(theta + m); otherwise cos(theta) - m sin(m)
                out[i] = math.cos(t + m) if t + m <= math.pi else math.cos(t) - m * math.sin(m)
        elif name in ("sphereface", "combined"):
            if name == "sphereface":
                phi, m3 = kw.get("m", 1.5) * t, 0.0
            else:
                phi = kw.get("m1", 1.0) * t + kw.get("m2", 0.3)
                m3 = kw.get("m3", 0.2)
            # SphereFace psi, piece by piece: [k pi, (k+1) pi] -> (-1)^k cos(phi) - 2k
            k = 0
            while phi > (k + 1) * math.pi:
                k += 1
            out[i] = (-1) ** k * math.cos(phi) - 2 * k - m3
        else:
            raise AssertionError(name)
    return out


CONFIGS = [
    ("norm_softmax", {}),
    ("sphereface", {}),
    ("sphereface", {"m": 1.35}),
    ("sphereface", {"m": 4.0}),
    ("cosface", {}),
    ("arcface", {}),
    ("arcface", {"m": 0.8}),
    ("arcface", {"easy_margin": True}),
    ("combined", {}),
    ("combined", {"m1": 0.9, "m2": 0.4, "m3": 0.15}),
]


def spread_batch(head, generator):
    """Embeddings whose target cosines cover [-1, 1], including the extension branches."""
    labels = torch.randint(0, CLASSES, (BATCH,), generator=generator)
    w = torch.nn.functional.normalize(head.weight.detach(), dim=1)[labels]
    along = torch.linspace(-1.0, 1.0, BATCH, dtype=torch.float64).unsqueeze(1)
    noise = 0.3 * torch.randn(BATCH, EMB, generator=generator, dtype=torch.float64)
    return 3.0 * (along * w + noise), labels


@pytest.mark.parametrize("name,kw", CONFIGS, ids=[f"{n}{kw}" for n, kw in CONFIGS])
def test_logits_match_the_formulas(name, kw):
    torch.manual_seed(0)
    head = create_head(name, EMB, CLASSES, s=30.0, **kw).double()
    x, labels = spread_batch(head, torch.Generator().manual_seed(1))
    logits = head(x, labels).detach().numpy()

    xn = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    w = head.weight.detach().numpy()
    wn = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos = np.clip(xn @ wn.T, -1.0, 1.0)
    theta_y = np.arccos(cos[np.arange(BATCH), labels.numpy()])
    expected = 30.0 * cos
    expected[np.arange(BATCH), labels.numpy()] = 30.0 * expected_target(name, theta_y, **kw)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-8)
    # The batch really reaches both ends of the angle range.
    assert theta_y.min() < 0.6 and theta_y.max() > math.pi - 0.6


@pytest.mark.parametrize("name", [n for n in HEADS if n != "softmax"])
def test_inference_logits_are_scaled_cosines(name):
    torch.manual_seed(0)
    head = create_head(name, EMB, CLASSES).double()
    x = torch.randn(7, EMB, dtype=torch.float64)
    xn = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    w = head.weight.detach().numpy()
    expected = 64.0 * xn @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    np.testing.assert_allclose(head(x).detach().numpy(), expected, atol=1e-10)


def test_softmax_head_is_a_plain_linear_layer_with_bias():
    torch.manual_seed(0)
    head = SoftmaxHead(EMB, CLASSES).double()
    x = torch.randn(6, EMB, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    expected = x.numpy() @ head.linear.weight.detach().numpy().T + head.linear.bias.detach().numpy()
    np.testing.assert_allclose(head(x, labels).detach().numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(head(x).detach().numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("name,kw", CONFIGS + [("softmax", {})],
                         ids=[f"{n}{kw}" for n, kw in CONFIGS + [("softmax", {})]])
def test_gradients_are_finite_at_cos_plus_minus_one(name, kw):
    torch.manual_seed(0)
    head = create_head(name, EMB, CLASSES, **kw)
    head.record_stats = True
    labels = torch.tensor([0, 1, 2, 3])
    w = head.weight.detach()[labels]
    # exactly parallel and exactly antiparallel to the label's class weight
    x = torch.cat([2.0 * w[:2], -3.0 * w[2:]]).requires_grad_(True)
    logits = head(x, labels)
    theta = head.last_stats.theta_deg
    assert torch.all(theta[:2] < 0.1) and torch.all(theta[2:] > 179.9)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())


MONOTONIC = [c for c in CONFIGS if not c[1].get("easy_margin")] + [("softmax", {})]


@pytest.mark.parametrize("name,kw", MONOTONIC, ids=[f"{n}{kw}" for n, kw in MONOTONIC])
def test_target_logit_is_non_increasing_in_theta(name, kw):
    theta = torch.linspace(0.0, math.pi, 20001, dtype=torch.float64)
    curve = target_logit_curve(name, theta, **kw).numpy()
    assert np.all(np.diff(curve) <= 1e-12)
    if name != "softmax":
        np.testing.assert_allclose(curve, expected_target(name, theta.numpy(), **kw), atol=1e-9)


def test_arcface_threshold_rule_values():
    m = 0.5
    theta = torch.tensor([math.pi - m - 1e-3, math.pi - m + 1e-3, math.pi], dtype=torch.float64)
    curve = target_logit_curve(ArcFace(2, 2, m=m), theta).numpy()
    assert curve[0] == pytest.approx(math.cos(math.pi - 1e-3), abs=1e-12)
    assert curve[1] == pytest.approx(math.cos(math.pi - m + 1e-3) - m * math.sin(m), abs=1e-12)
    assert curve[2] == pytest.approx(-1.0 - m * math.sin(m), abs=1e-12)


def test_easy_margin_applies_the_margin_only_for_positive_cosines():
    m = 0.5
    theta = torch.linspace(0.0, math.pi, 2001, dtype=torch.float64)
    curve = target_logit_curve("arcface", theta, m=m, easy_margin=True).numpy()
    t = theta.numpy()
    positive = np.cos(t) > 0
    np.testing.assert_allclose(curve[positive], np.cos(t[positive] + m), atol=1e-12)
    np.testing.assert_allclose(curve[~positive], np.cos(t[~positive]), atol=1e-12)
    # Its known discontinuity: an upward jump from -sin(m) to 0 at 90 degrees.
    just_below, just_above = target_logit_curve(
        "arcface", torch.tensor([math.pi / 2 - 1e-9, math.pi / 2 + 1e-9], dtype=torch.float64),
        m=m, easy_margin=True).numpy()
    assert just_below == pytest.approx(-math.sin(m), abs=1e-6)
    assert just_above == pytest.approx(0.0, abs=1e-6)


def test_combined_margin_reduces_to_its_special_cases():
    theta = torch.linspace(0.0, math.pi, 501, dtype=torch.float64)
    pairs = [
        (CombinedMargin(2, 2, m1=1.0, m2=0.0, m3=0.0), NormSoftmax(2, 2)),
        (CombinedMargin(2, 2, m1=1.0, m2=0.0, m3=0.35), CosFace(2, 2, m=0.35)),
        (CombinedMargin(2, 2, m1=1.5, m2=0.0, m3=0.0), SphereFace(2, 2, m=1.5)),
    ]
    for combined, special in pairs:
        np.testing.assert_allclose(target_logit_curve(combined, theta),
                                   target_logit_curve(special, theta), atol=1e-12)
    # (1, m, 0) is ArcFace up to pi - m, where ArcFace switches to its linear fallback.
    inside = theta <= math.pi - 0.5
    np.testing.assert_allclose(
        target_logit_curve(CombinedMargin(2, 2, m1=1.0, m2=0.5, m3=0.0), theta)[inside],
        target_logit_curve(ArcFace(2, 2, m=0.5), theta)[inside], atol=1e-12)


@pytest.mark.parametrize("name", list(HEADS))
def test_last_stats_match_an_independent_angle_computation(name):
    torch.manual_seed(3)
    head = create_head(name, EMB, CLASSES)
    head.record_stats = True
    x = torch.randn(BATCH, EMB)
    labels = torch.randint(0, CLASSES, (BATCH,))
    head(x, labels)
    stats = head.last_stats
    w = head.weight.detach().numpy().astype(np.float64)
    xv = x.numpy().astype(np.float64)
    cos = np.sum(xv * w[labels.numpy()], axis=1) / (
        np.linalg.norm(xv, axis=1) * np.linalg.norm(w[labels.numpy()], axis=1))
    degrees = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    assert stats.theta_deg.shape == (BATCH,) and stats.theta_deg.device.type == "cpu"
    assert not stats.theta_deg.requires_grad
    np.testing.assert_allclose(stats.theta_deg.numpy(), degrees, atol=1e-3)
    assert stats.mean_deg == pytest.approx(degrees.mean(), abs=1e-3)
    assert stats.std_deg == pytest.approx(degrees.std(ddof=0), abs=1e-3)


def test_inference_does_not_touch_last_stats():
    head = ArcFace(EMB, CLASSES)
    head.record_stats = True
    assert head.last_stats is None
    head(torch.randn(3, EMB))
    assert head.last_stats is None


@pytest.mark.parametrize("name", list(HEADS))
def test_stats_are_off_by_default_and_do_not_change_the_logits(name, monkeypatch):
    torch.manual_seed(4)
    head = create_head(name, EMB, CLASSES)
    x = torch.randn(BATCH, EMB, requires_grad=True)
    labels = torch.randint(0, CLASSES, (BATCH,))
    recorded = head(x, labels)  # off: nothing is copied to the host
    assert head.record_stats is False and head.last_stats is None
    assert "record_stats" not in head.state_dict()

    def no_stats(*args):
        raise AssertionError("statistics computed although record_stats is off")

    monkeypatch.setattr("fkdlib.heads.margin._angle_stats", no_stats)
    if name == "softmax":  # its only use of the normalised weights is the statistics' cosines
        monkeypatch.setattr(SoftmaxHead, "normalized_weight", no_stats)
    plain = head(x, labels)
    monkeypatch.undo()
    head.record_stats = True
    with_stats = head(x, labels)
    assert head.last_stats is not None and head.last_stats.theta_deg.shape == (BATCH,)
    assert torch.equal(plain, with_stats) and torch.equal(plain, recorded)
    grads = [torch.autograd.grad(logits.square().sum(), x)[0] for logits in (plain, with_stats)]
    assert torch.equal(*grads)


def test_weight_initialisation_and_normalised_weight():
    torch.manual_seed(0)
    head = ArcFace(64, 1000)
    values = head.weight.detach().numpy().ravel()
    assert abs(values.mean()) < 5e-4 and values.std() == pytest.approx(0.01, rel=0.02)
    normalized = head.normalized_weight().detach()
    np.testing.assert_allclose(normalized.norm(dim=1).numpy(), 1.0, atol=1e-6)
    ratio = head.weight.detach() / normalized
    np.testing.assert_allclose(ratio.numpy(), ratio[:, :1].expand_as(ratio).numpy(), rtol=1e-4)
    softmax = SoftmaxHead(4, 3)
    np.testing.assert_allclose(softmax.normalized_weight().norm(dim=1).detach().numpy(), 1.0,
                               atol=1e-6)


def test_create_head_builds_each_head_with_its_hyper_parameters():
    assert isinstance(create_head("ArcFace", 4, 3), ArcFace)
    head = create_head("combined", 4, 3, m1=1.0, m2=0.3, m3=0.2, s=32.0)
    assert (head.m1, head.m2, head.m3, head.s) == (1.0, 0.3, 0.2, 32.0)
    assert create_head("sphereface", 4, 3).m == 1.5
    assert create_head("cosface", 4, 3).m == 0.35
    assert isinstance(create_head("softmax", 4, 3), SoftmaxHead)


def test_bad_configuration_is_refused_clearly():
    with pytest.raises(ConfigError, match="unknown head 'arcfce'; known: arcface, combined"):
        create_head("arcfce", 4, 3)
    with pytest.raises(ConfigError, match=r"options \['margin'\] for head 'cosface'.*: s, m$"):
        create_head("cosface", 4, 3, margin=0.3)
    with pytest.raises(ConfigError, match=r"options \['s'\] for head 'softmax'"):
        create_head("softmax", 4, 3, s=64.0)
    with pytest.raises(ConfigError, match="positive integer"):
        create_head("arcface", 0, 3)
    with pytest.raises(ConfigError, match=r"\[0, π\)"):
        ArcFace(4, 3, m=-0.1)
    with pytest.raises(ConfigError, match="scale s must be positive"):
        CosFace(4, 3, s=0.0)
    with pytest.raises(ConfigError, match="finite"):
        SphereFace(4, 3, m=float("nan"))


def test_bad_batches_are_refused_clearly():
    head = ArcFace(EMB, CLASSES)
    with pytest.raises(ValueError, match=r"shape \(batch, 8\)"):
        head(torch.randn(3, EMB + 1), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 4\]"):
        head(torch.randn(2, EMB), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="integer tensor"):
        head(torch.randn(2, EMB), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        head(torch.randn(2, EMB), torch.tensor([0, 1, 2]))
