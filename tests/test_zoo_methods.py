"""Zoo methods "distill" / "distill_unlabeled", ModelSpec.from_dict, recursive generations."""

import pytest
import torch

from conftest import CLASSES, TinyFaces

import fkdlib.data
from fkdlib import zoo
from fkdlib.distill import Distiller, UnlabeledMixupDistiller
from fkdlib.errors import ConfigError
from fkdlib.training.trainer import ClassificationTask
from fkdlib.zoo import (
    METHODS, ModelSpec, build_distiller, build_unlabeled_distiller, get_or_train, recursive_specs,
    train_all)

@pytest.fixture
def tiny_data(monkeypatch):
    """The zoo reads {"kind": "tiny"} as a 12-image in-memory set (no SynthFace needed)."""
    monkeypatch.setattr(fkdlib.data, "build_dataset", lambda spec: TinyFaces())
    monkeypatch.setattr(fkdlib.data, "dataset_version", lambda spec: "tiny-1")


def _spec(width=0.125, **changes):
    spec = ModelSpec(backbone="iresnet18", head="arcface", data={"kind": "tiny"},
                     train={"epochs": 1, "batch_size": 4, "lr": 0.05, "amp": False},
                     backbone_kwargs={"input_size": 16, "width": width, "embedding_size": 8},
                     head_kwargs={"s": 8.0, "m": 0.2}, name="tiny")
    return spec.replace(**changes)


def _student(tmp_path, losses, **extra):
    teacher = _spec(width=0.25, name="teacher")
    kwargs = {"teacher": teacher.to_dict(), "losses": losses}
    return _spec(method="distill", method_kwargs=kwargs | extra, name="student"), teacher


def test_spec_from_dict_round_trips_nested_specs():
    spec = _spec(init_from=_spec(name="parent", train={"epochs": 2, "batch_size": 4}))
    again = ModelSpec.from_dict(spec.to_dict())
    assert again == spec and again.key == spec.key and again.init_from.name == "parent"
    with pytest.raises(ConfigError, match=r"unknown fields \['colour'\]"):
        ModelSpec.from_dict(spec.to_dict() | {"colour": "red"})
    broken = spec.to_dict()
    del broken["backbone"]
    with pytest.raises(ConfigError, match=r"missing fields \['backbone'\]"):
        ModelSpec.from_dict(broken)


def test_distill_method_trains_a_student_from_a_cached_teacher(tmp_path, tiny_data):
    student_spec, teacher_spec = _student(tmp_path, [{"name": "angular"},
                                                     {"name": "kd", "weight": 0.5}],
                                          ce_weight=0.1)
    trained = get_or_train(student_spec, tmp_path, log=lambda message: None)
    assert (tmp_path / teacher_spec.key / "manifest.json").exists()
    assert (tmp_path / student_spec.key / "manifest.json").exists()
    assert {"loss_ce", "loss_angular", "loss_kd"} <= set(trained.history.columns)
    backbone, head = zoo.build_untrained(student_spec, CLASSES)
    task = build_distiller(student_spec, backbone, head, torch.device("cpu"), tmp_path)
    assert isinstance(task, Distiller)
    assert task.loss_weights == {"angular": 7.0, "kd": 0.5} and task.ce_weight == 0.1
    teacher = get_or_train(teacher_spec, tmp_path, log=lambda message: None)
    assert teacher.from_cache
    torch.testing.assert_close(task.teacher_backbone.state_dict(), teacher.backbone.state_dict())


def test_distill_method_errors_name_the_problem(tmp_path, tiny_data):
    backbone, head = zoo.build_untrained(_spec(), CLASSES)
    cpu = torch.device("cpu")
    bad = _spec(method="distill", method_kwargs={"losses": []})
    with pytest.raises(ConfigError, match="needs method_kwargs\\['teacher'\\]"):
        build_distiller(bad, backbone, head, cpu, tmp_path)
    bad, _ = _student(tmp_path, [], temperature=3)
    with pytest.raises(ConfigError, match=r"does not take \['temperature'\]"):
        build_distiller(bad, backbone, head, cpu, tmp_path)
    bad, teacher = _student(tmp_path, [{"name": "kd"}, {"name": "kd"}])
    with pytest.raises(ConfigError, match="listed twice"):
        build_distiller(bad, backbone, head, cpu, tmp_path)
    bad, _ = _student(tmp_path, [{"name": "kdd"}])
    with pytest.raises(ConfigError, match="unknown distillation loss 'kdd'"):
        build_distiller(bad, backbone, head, cpu, tmp_path)
    assert not (tmp_path / teacher.key).exists()  # refused before the teacher is trained
    bad, _ = _student(tmp_path, [{"name": "kd", "wieght": 1}])
    with pytest.raises(ConfigError, match="'name' and optional 'weight'"):
        build_distiller(bad, backbone, head, cpu, tmp_path)


def test_distill_unlabeled_method_reads_the_unlabeled_images(tmp_path, tiny_data):
    spec, _ = _student(tmp_path, [{"name": "kd"}], unlabeled={"kind": "tiny"},
                       unlabeled_weight=0.5, seed=3)
    spec = spec.replace(method="distill_unlabeled")
    backbone, head = zoo.build_untrained(spec, CLASSES)
    task = build_unlabeled_distiller(spec, backbone, head, torch.device("cpu"), tmp_path)
    assert isinstance(task, UnlabeledMixupDistiller)
    assert torch.equal(task.unlabeled_images, torch.from_numpy(TinyFaces().images_u8()))
    assert (task.unlabeled_weight, task.mixup_weight, task.seed) == (0.5, 1.0, 3)
    no_data = spec.replace(method_kwargs={k: v for k, v in spec.method_kwargs.items()
                                          if k != "unlabeled"})
    with pytest.raises(ConfigError, match="needs method_kwargs\\['unlabeled'\\]"):
        build_unlabeled_distiller(no_data, backbone, head, torch.device("cpu"), tmp_path)


def test_recursive_specs_chain_generations():
    student, _ = _student("cache", [{"name": "angular"}])
    specs = recursive_specs(student, 2)
    assert [s.name for s in specs] == ["student", "student-gen1", "student-gen2"]
    assert specs[0] is student and specs[1].init_from is specs[0]
    assert specs[2].init_from is specs[1]
    assert len({s.key for s in specs}) == 3
    assert specs[2].replace(init_from=None, name="student") == student
    with_teacher = recursive_specs(student, 2, recursive_teacher=True)
    teachers = [ModelSpec.from_dict(s.method_kwargs["teacher"]) for s in with_teacher]
    assert teachers[1].init_from == teachers[0] and teachers[2].init_from == teachers[1]
    assert teachers[2].name == "teacher-gen2"
    with pytest.raises(ConfigError, match=">= 0"):
        recursive_specs(student, -1)
    with pytest.raises(ConfigError, match="method_kwargs\\['teacher'\\]"):
        recursive_specs(_spec(), 1, recursive_teacher=True)


def test_each_generation_starts_from_the_previous_ones_weights(tmp_path, tiny_data,
                                                               monkeypatch):
    initial_states = []

    def recording_builder(spec, backbone, head, device, cache_dir):
        initial_states.append({k: v.clone() for k, v in backbone.state_dict().items()})
        return ClassificationTask(backbone, head)

    monkeypatch.setitem(METHODS._entries, "record", recording_builder)
    monkeypatch.setitem(METHODS._metadata, "record", {})
    specs = recursive_specs(_spec(method="record"), 2)
    models = list(train_all(dict(enumerate(specs)), tmp_path).values())
    assert len(models) == 3 and len(initial_states) == 3
    for generation in (1, 2):
        parent = models[generation - 1].backbone.state_dict()
        start = initial_states[generation]
        assert all(torch.equal(start[k], parent[k]) for k in parent)
        trained = models[generation].backbone.state_dict()
        assert not torch.equal(trained["conv1.weight"], parent["conv1.weight"])
    again = list(train_all(dict(enumerate(specs)), tmp_path).values())
    assert all(model.from_cache for model in again) and len(initial_states) == 3
