"""Distiller: frozen teacher through a real Trainer run, loss terms, registry and shapes."""

import copy
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fkdlib.distill import (
    AngularLoss, Distiller, KDLoss, create_loss, feature_shapes, list_losses)
from fkdlib.errors import ConfigError
from fkdlib.heads import ArcFace, SoftmaxHead
from fkdlib.models import create_model
from fkdlib.training.trainer import TrainConfig, Trainer
from conftest import assert_same_step, count_head_calls

CLASSES = 4


class TinyFaces(torch.utils.data.Dataset):
    """16x16 uint8 images; class k has a bright square at row 2k."""

    def __init__(self, per_class=8, seed=0):
        rng = np.random.default_rng(seed)
        labels = np.repeat(np.arange(CLASSES), per_class)
        images = rng.integers(0, 60, size=(len(labels), 3, 16, 16), dtype=np.uint8)
        for i, k in enumerate(labels):
            images[i, :, 2 * k:2 * k + 3, 4:8] = 250
        self._images = images
        self.metadata = pd.DataFrame({"identity": labels})
        self.num_classes = CLASSES

    def __len__(self):
        return len(self._images)

    def images_u8(self):
        return self._images

    def __getitem__(self, i):
        raise AssertionError("the trainer should use the in-memory path")


def _pair(seed=0, teacher_embedding=16):
    torch.manual_seed(seed)
    student = create_model("iresnet18", input_size=16, width=0.125, embedding_size=16)
    teacher = create_model("iresnet18", input_size=16, width=0.25,
                           embedding_size=teacher_embedding)
    return (student, ArcFace(16, CLASSES, s=16.0, m=0.2), teacher,
            ArcFace(teacher_embedding, CLASSES, s=16.0, m=0.2))


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class RecordTeacherMode:
    def __init__(self):
        self.modes = []

    def on_step_end(self, trainer, epoch, step, losses):
        teacher = trainer.task.teacher_backbone
        self.modes.append(any(m.training for m in teacher.modules())
                          or trainer.task.teacher_head.training)


def test_training_step_leaves_the_teacher_untouched_and_trains_student_and_connector():
    student, student_head, teacher, teacher_head = _pair(teacher_embedding=24)
    # put non-trivial running statistics in the teacher so a BN update would show
    teacher.train()
    with torch.no_grad():
        teacher(torch.randn(8, 3, 16, 16))
    angular = AngularLoss(16, 24, project=True)
    distiller = Distiller(student, student_head, teacher, teacher_head,
                          {"angular": (angular, 7.0), "kd": (KDLoss(), 0.5)})
    teacher_before = _snapshot(teacher) | {f"head.{k}": v for k, v in
                                           _snapshot(teacher_head).items()}
    student_before, projection_before = _snapshot(student), angular.projection.weight.clone()
    recorder = RecordTeacherMode()
    config = TrainConfig(epochs=1, batch_size=8, lr=0.05, amp=False, seed=1)
    history = Trainer(distiller, config, callbacks=[recorder]).fit(TinyFaces())

    teacher_after = _snapshot(teacher) | {f"head.{k}": v for k, v in
                                          _snapshot(teacher_head).items()}
    assert teacher_before.keys() == teacher_after.keys()
    for key, value in teacher_before.items():  # weights AND running_mean/var/num_batches
        assert torch.equal(value, teacher_after[key]), key
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is None for p in teacher_head.parameters())
    assert recorder.modes == [False] * 4
    changed = [k for k, v in _snapshot(student).items() if not torch.equal(v, student_before[k])]
    assert any("running_mean" in k for k in changed) and any("weight" in k for k in changed)
    assert not torch.equal(angular.projection.weight, projection_before)
    assert {"loss_ce", "loss_angular", "loss_kd"} <= set(history.columns)


def test_teacher_stays_in_eval_after_train_and_is_frozen():
    distiller = Distiller(*_pair(), {"kd": (KDLoss(), 1.0)})
    distiller.train()
    assert distiller.student_backbone.training and distiller.losses["kd"].training
    assert not any(m.training for m in distiller.teacher_backbone.modules())
    assert not distiller.teacher_head.training
    assert not any(p.requires_grad for p in distiller.teacher_backbone.parameters())
    distiller.eval()
    assert not distiller.student_backbone.training
    trainable = {id(p) for p in distiller.parameters() if p.requires_grad}
    # the IResNet embedding BN keeps its scale fixed (insightface), hence the filter
    assert trainable == {id(p) for p in distiller.student_parameters() if p.requires_grad}


def test_terms_equal_direct_computations():
    student, student_head, teacher, teacher_head = _pair(seed=2)
    distiller = Distiller(student, student_head, teacher, teacher_head,
                          {"kd": (KDLoss(), 0.9)}, ce_weight=0.1).eval()
    images = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    with torch.no_grad():
        terms = distiller(images, labels)
        emb_s, emb_t = student(images), teacher(images)
        ce = F.cross_entropy(student_head(emb_s, labels), labels)
        cos_s = F.normalize(emb_s) @ F.normalize(student_head.weight).t()
        cos_t = F.normalize(emb_t) @ F.normalize(teacher_head.weight).t()
        p_t = F.softmax(16.0 * cos_t / 4, dim=1)
        kd = (p_t * (p_t.log() - F.log_softmax(16.0 * cos_s / 4, dim=1))).sum(1).mean() * 16
    assert set(terms) == {"ce", "kd"}
    assert float(terms["ce"]) == pytest.approx(0.1 * float(ce), rel=1e-5)
    assert float(terms["kd"]) == pytest.approx(0.9 * float(kd), rel=1e-4)
    outputs = distiller.student_outputs(images)
    assert {"stem", "layer1", "layer4", "pooled", "embedding", "logits"} <= set(outputs)
    torch.testing.assert_close(outputs["logits"], 16.0 * cos_s.clamp(-1, 1))


def _reference_terms(distiller, images, labels):
    """The terms written out as the distiller computed them before logits became opt-in: both
    networks' logits at every step, the student's head run a second time (with labels) for
    the cross-entropy."""
    student = dict(distiller.student_backbone.forward_features(images))
    student["logits"] = distiller.student_head(student["embedding"])
    with torch.no_grad():
        teacher = dict(distiller.teacher_backbone.forward_features(images))
        teacher["logits"] = distiller.teacher_head(teacher["embedding"])
    terms = {}
    if distiller.ce_weight:
        logits = distiller.student_head(student["embedding"], labels)
        terms["ce"] = distiller.ce_weight * F.cross_entropy(logits, labels)
    for name, loss in distiller.losses.items():
        if distiller.loss_weights[name]:
            terms[name] = distiller.loss_weights[name] * loss(student, teacher, labels)
    return terms


@pytest.mark.parametrize("head, ce_weight, weights, student_calls, teacher_calls", [
    ("arcface", 1.0, {"angular": 7.0}, {"labels": 1}, {}),
    ("arcface", 1.0, {"angular": 7.0, "kd": 0.0}, {"labels": 1}, {}),
    ("arcface", 0.1, {"kd": 0.9}, {"labels": 1, "no labels": 1}, {"no labels": 1}),
    ("arcface", 0.0, {"angular": 7.0, "kd": 1.0}, {"no labels": 1}, {"no labels": 1}),
    ("softmax", 0.1, {"angular": 7.0, "kd": 0.9}, {"labels": 1, "no labels": 1},
     {"no labels": 1}),
    ("softmax", 1.0, {"angular": 7.0}, {"labels": 1}, {}),
])
def test_logits_only_when_a_loss_needs_them_and_terms_and_gradients_are_unchanged(
        head, ce_weight, weights, student_calls, teacher_calls):
    student, student_head, teacher, teacher_head = _pair(seed=5, teacher_embedding=24)
    if head == "softmax":
        student_head, teacher_head = SoftmaxHead(16, CLASSES), SoftmaxHead(24, CLASSES)
    modules = {"angular": AngularLoss(16, 24, project=True), "kd": KDLoss()}
    distiller = Distiller(student, student_head, teacher, teacher_head,
                          {name: (modules[name], w) for name, w in weights.items()},
                          ce_weight=ce_weight)
    reference = copy.deepcopy(distiller)
    calls = count_head_calls(distiller.student_head), count_head_calls(distiller.teacher_head)
    images = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    assert distiller.needs_logits == bool(weights.get("kd"))

    terms = distiller(images, labels)
    sum(terms.values()).backward()
    expected = _reference_terms(reference, images, labels)
    sum(expected.values()).backward()

    assert calls == (Counter(student_calls), Counter(teacher_calls))
    assert_same_step(distiller, reference, terms, expected)


class RecordKeys(nn.Module):
    def __init__(self, needs_logits):
        super().__init__()
        self.needs_logits, self.seen = needs_logits, []

    def forward(self, student, teacher, labels):
        self.seen.append(("logits" in student, "logits" in teacher))
        return student["embedding"].sum()


def test_logits_reach_exactly_the_losses_that_declare_them():
    undeclared, declared = RecordKeys(False), RecordKeys(True)
    distiller = Distiller(*_pair(), {"a": (undeclared, 1.0)})
    images, labels = torch.randn(2, 3, 16, 16), torch.tensor([0, 1])
    distiller(images, labels)
    assert undeclared.seen == [(False, False)]
    distiller = Distiller(*_pair(), {"a": (undeclared, 1.0), "b": (declared, 1.0)})
    distiller(images, labels)
    assert undeclared.seen[-1] == declared.seen[-1] == (True, True)
    distiller.loss_weights["b"] = 0.0  # a term switched off no longer asks for logits
    distiller(images, labels)
    assert undeclared.seen[-1] == (False, False) and len(declared.seen) == 1


class Exploding(nn.Module):
    def forward(self, student, teacher, labels):
        raise AssertionError("a loss with weight 0 must not be computed")


def test_zero_weight_skips_the_term_and_bad_configs_are_refused():
    distiller = Distiller(*_pair(), {"off": (Exploding(), 0.0)}, ce_weight=0.0)
    assert distiller(torch.randn(2, 3, 16, 16), torch.tensor([0, 1])) == {}
    with pytest.raises(ConfigError, match="'ce'"):
        Distiller(*_pair(), {"ce": (KDLoss(), 1.0)})
    with pytest.raises(ConfigError, match="finite number >= 0"):
        Distiller(*_pair(), {"kd": (KDLoss(), -1.0)})
    with pytest.raises(ConfigError, match="tuple"):
        Distiller(*_pair(), {"kd": KDLoss()})


def test_feature_shapes_match_a_forward_pass_and_keep_the_training_flag():
    model = create_model("mobilefacenet", input_size=16, width=0.125, embedding_size=16)
    model.train()
    shapes = feature_shapes(model)
    assert model.training
    outputs = model.forward_features(torch.randn(2, 3, 16, 16))
    assert shapes == {k: tuple(v.shape[1:]) for k, v in outputs.items()}
    with pytest.raises(ConfigError, match="fkdlib backbone"):
        feature_shapes(nn.Linear(2, 2))


def test_every_registered_loss_builds_and_trains_through_the_distiller():
    student, student_head, teacher, teacher_head = _pair(seed=3, teacher_embedding=24)
    options = {"angular": {"project": True}, "fitnet": {"student_stage": "layer2"},
               "at": {"stages": ["layer2", "layer3"]}, "srrl": {"sr_form": "kl"}}
    assert list_losses() == ["angular", "at", "fcd", "fitnet", "icd", "kd", "pkt", "rkd", "srrl"]
    losses = {name: (create_loss(name, student, teacher, teacher_head, **options.get(name, {})),
                     1.0) for name in list_losses()}
    distiller = Distiller(student, student_head, teacher, teacher_head, losses)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    for _ in range(2):  # the second batch finds its classes in the ICD banks
        terms = distiller(torch.randn(8, 3, 16, 16), labels)
        sum(terms.values()).backward()
    assert set(terms) == {"ce", *list_losses()}
    assert all(torch.isfinite(v) for v in terms.values())
    assert float(terms["icd"].detach()) > 0
    assert distiller.losses["fitnet"].regressor[0].weight.shape == (64, 16, 1, 1)


def test_create_loss_errors_name_the_problem():
    student, _, teacher, teacher_head = _pair()
    with pytest.raises(ConfigError, match="unknown distillation loss 'kdd'.*angular"):
        create_loss("kdd", student, teacher, teacher_head)
    with pytest.raises(ConfigError, match="invalid options.*'kd'"):
        create_loss("kd", student, teacher, teacher_head, temprature=3)
    with pytest.raises(ConfigError, match="has no feature 'layer9'"):
        create_loss("fitnet", student, teacher, teacher_head, student_stage="layer9")
    with pytest.raises(ConfigError, match="project=True"):
        create_loss("angular", *_pair(teacher_embedding=24)[::2], teacher_head)
    softmax_teacher = SoftmaxHead(16, CLASSES)
    srrl = create_loss("srrl", student, teacher, softmax_teacher)
    torch.testing.assert_close(srrl.teacher_classifier.weight, softmax_teacher.linear.weight)
