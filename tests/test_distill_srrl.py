"""SRRL (thesis ch. 4): L_FM and the three L_SR forms against direct formulas; frozen W_T."""

import numpy as np
import pytest
import torch

from fkdlib.distill import (
    Distiller, FrozenClassifier, SRRLLoss, l2_distance, teacher_classifier_from_head)
from fkdlib.errors import ConfigError
from fkdlib.heads import ArcFace, CosFace, SoftmaxHead
from fkdlib.models import create_model

LABELS = torch.tensor([0, 1, 2, 3, 4, 0])


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _setup(sr_form="l2", fm_weight=1.0, sr_weight=1.0):
    torch.manual_seed(0)
    head = ArcFace(12, 5, s=32.0, m=0.5)
    loss = SRRLLoss(8, 12, teacher_classifier_from_head(head), fm_weight, sr_weight, sr_form)
    h_s, h_t = _rand(6, 8, seed=1), _rand(6, 12, seed=2)
    return head, loss, h_s, h_t


def _numpy_terms(head, loss, h_s, h_t):
    connected = h_s.numpy() @ loss.connector.weight.detach().numpy().T + \
        loss.connector.bias.detach().numpy()
    w = head.weight.detach().numpy()
    w = w / np.linalg.norm(w, axis=1, keepdims=True)

    def classify(h):
        return head.s * (h / np.linalg.norm(h, axis=1, keepdims=True)) @ w.T

    return connected, classify(connected), classify(h_t.numpy())


def _log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


@pytest.mark.parametrize("form", ["l2", "ce", "kl"])
def test_fm_and_sr_forms_match_the_formulas(form):
    head, loss, h_s, h_t = _setup(form, fm_weight=2.0, sr_weight=0.5)
    connected, student_logits, teacher_logits = _numpy_terms(head, loss, h_s, h_t)
    fm = np.mean((connected - h_t.numpy()) ** 2)
    if form == "l2":
        sr = np.mean((student_logits - teacher_logits) ** 2)
    elif form == "ce":
        sr = -_log_softmax(student_logits)[np.arange(6), LABELS.numpy()].mean()
    else:
        log_t, log_s = _log_softmax(teacher_logits / 4), _log_softmax(student_logits / 4)
        sr = (np.exp(log_t) * (log_t - log_s)).sum(1).mean() * 16
    with torch.no_grad():
        total = loss({"embedding": h_s}, {"embedding": h_t}, LABELS)
    assert float(loss.last_terms["fm"]) == pytest.approx(fm, rel=1e-4)
    assert float(loss.last_terms["sr"]) == pytest.approx(sr, rel=1e-4)
    assert float(total) == pytest.approx(2.0 * fm + 0.5 * sr, rel=1e-4)


def test_single_terms_and_zero_for_a_matching_student():
    head, fm_only, h_s, h_t = _setup(sr_weight=0.0)
    with torch.no_grad():
        total = fm_only({"embedding": h_s}, {"embedding": h_t}, LABELS)
    assert set(fm_only.last_terms) == {"fm"}
    assert float(total) == pytest.approx(float(fm_only.last_terms["fm"]))
    _, sr_only, _, _ = _setup(fm_weight=0.0)
    with torch.no_grad():
        sr_only({"embedding": h_s}, {"embedding": h_t}, LABELS)
    assert set(sr_only.last_terms) == {"sr"}
    same = SRRLLoss(12, 12, teacher_classifier_from_head(head))
    with torch.no_grad():
        same.connector.weight.copy_(torch.eye(12))
        same.connector.bias.zero_()
        value = same({"embedding": h_t}, {"embedding": h_t.clone()}, LABELS)
    assert float(value) == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ConfigError, match="sr_form"):
        SRRLLoss(8, 12, teacher_classifier_from_head(head), sr_form="l1")
    with pytest.raises(ConfigError, match="not both 0"):
        SRRLLoss(8, 12, teacher_classifier_from_head(head), fm_weight=0, sr_weight=0)


@pytest.mark.parametrize("head", [ArcFace(6, 5, s=20.0), CosFace(6, 5), SoftmaxHead(6, 5)])
def test_teacher_classifier_is_the_head_without_margin(head):
    classifier = teacher_classifier_from_head(head)
    h = _rand(4, 6, seed=3)
    torch.testing.assert_close(classifier(h), head(h).detach())
    assert classifier.in_features == 6
    assert not list(classifier.parameters())  # buffers only: nothing an optimiser can move


def test_map_feature_uses_conv_bn_relu_then_pooling():
    head = ArcFace(16, 5)
    loss = SRRLLoss(4, 6, teacher_classifier_from_head(head), sr_weight=0.0,
                    feature="layer4").eval()
    bn = loss.connector[1]
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    s_map, t_map = _rand(3, 4, 2, 2, seed=4), _rand(3, 6, 2, 2, seed=5)
    w = loss.connector[0].weight.detach().numpy()[:, :, 0, 0]
    y = np.einsum("oc,bchw->bohw", w, s_map.numpy())
    shape = (1, -1, 1, 1)
    y = (y - bn.running_mean.numpy().reshape(shape)) / np.sqrt(
        bn.running_var.numpy().reshape(shape) + bn.eps)
    y = y * bn.weight.detach().numpy().reshape(shape) + bn.bias.detach().numpy().reshape(shape)
    pooled_s = np.maximum(y, 0).mean(axis=(2, 3))
    pooled_t = t_map.numpy().mean(axis=(2, 3))
    with torch.no_grad():
        value = loss({"layer4": s_map}, {"layer4": t_map}, LABELS[:3])
    assert float(value) == pytest.approx(np.mean((pooled_s - pooled_t) ** 2), rel=1e-5)
    with pytest.raises(ConfigError, match="input size 16.*sr_weight=0"):
        SRRLLoss(4, 6, teacher_classifier_from_head(head), feature="layer4")


def test_teacher_classifier_never_changes_and_gradients_reach_student_and_connector():
    torch.manual_seed(1)
    student = create_model("iresnet18", input_size=16, width=0.125, embedding_size=8)
    teacher = create_model("iresnet18", input_size=16, width=0.25, embedding_size=12)
    student_head, teacher_head = ArcFace(8, 5, s=16.0), ArcFace(12, 5, s=16.0)
    srrl = SRRLLoss(8, 12, teacher_classifier_from_head(teacher_head))
    distiller = Distiller(student, student_head, teacher, teacher_head, {"srrl": (srrl, 1.0)})
    classifier_before = srrl.teacher_classifier.weight.clone()
    head_before = teacher_head.weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in distiller.parameters() if p.requires_grad], lr=0.5,
                                weight_decay=0.1)
    terms = distiller(_rand(6, 3, 16, 16, seed=6), LABELS)
    sum(terms.values()).backward()
    assert srrl.connector.weight.grad is not None and float(srrl.connector.weight.grad.abs().sum())
    assert student.conv1.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
    assert teacher_head.weight.grad is None
    optimizer.step()
    assert torch.equal(srrl.teacher_classifier.weight, classifier_before)
    assert torch.equal(teacher_head.weight.detach(), head_before)


def test_frozen_classifier_and_l2_distance():
    weight, bias = _rand(3, 4, seed=7), _rand(3, seed=8)
    h = _rand(5, 4, seed=9)
    torch.testing.assert_close(FrozenClassifier(weight, bias)(h), h @ weight.t() + bias)
    h_t, h_s = _rand(5, 4, seed=10), _rand(5, 4, seed=11)
    expected = np.mean(np.sum((h_t.numpy() - h_s.numpy()) ** 2, axis=1))
    assert l2_distance(h_t, h_s) == pytest.approx(expected, rel=1e-6)
    unit_t = h_t.numpy() / np.linalg.norm(h_t.numpy(), axis=1, keepdims=True)
    unit_s = h_s.numpy() / np.linalg.norm(h_s.numpy(), axis=1, keepdims=True)
    assert l2_distance(h_t, 3 * h_s, normalize=True) == pytest.approx(
        np.mean(np.sum((unit_t - unit_s) ** 2, axis=1)), rel=1e-6)
    assert l2_distance(h_t, h_t) == 0.0
    with pytest.raises(ConfigError, match="same shape"):
        l2_distance(h_t, h_s[:, :3])
    with pytest.raises(ConfigError, match="margin head"):
        teacher_classifier_from_head(torch.nn.Identity())
