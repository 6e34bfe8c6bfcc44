"""Model zoo: content-addressed keys, cache hits, corrupt entries retrained, init_from."""

import json

import pytest
import torch

from fkdlib.errors import ConfigError
from fkdlib.zoo import ModelSpec, get_or_train

DATA = {"kind": "synthface", "split": "train", "num_identities": 6, "images_per_identity": 6,
        "resolution": 16, "seed": 0, "difficulty": "easy"}
TRAIN = {"epochs": 1, "batch_size": 12, "lr": 0.05, "seed": 0}


def _spec(**changes):
    spec = ModelSpec(backbone="iresnet18", head="cosface", data=DATA, train=TRAIN,
                     backbone_kwargs={"input_size": 16, "width": 0.125, "embedding_size": 16},
                     head_kwargs={"s": 16.0}, profile="smoke", name="tiny")
    return spec.replace(**changes)


def test_key_depends_on_what_determines_the_model_and_not_on_its_name():
    base = _spec()
    assert base.key == _spec(name="renamed").key
    assert base.key != _spec(head="arcface").key
    assert base.key != _spec(train={**TRAIN, "seed": 1}).key
    assert base.key != _spec(data={**DATA, "seed": 1}).key
    assert base.key != _spec(init_from=_spec()).key
    assert base.key != _spec(monitors=("target_angles",)).key


def test_key_covers_the_training_code_but_not_its_comments(monkeypatch, tmp_path):
    """Any change to code that trains models changes every key; docstrings and comments do
    not (the version hashes syntax trees without docstrings)."""
    import fkdlib.zoo.cache as cache

    package = tmp_path / "fkdlib"
    (package / "models").mkdir(parents=True)
    source = package / "models" / "net.py"
    source.write_text('"""A network."""\nWIDTH = 8  # channels\n')
    monkeypatch.setattr(cache, "TRAINING_CODE", ("models",))
    monkeypatch.setattr(cache, "__file__", str(package / "zoo" / "cache.py"))

    def version():
        cache.training_code_version.cache_clear()
        return cache.training_code_version()

    first = version()
    source.write_text('"""A network, reworded."""\nWIDTH = 8  # the channel count\n')
    assert version() == first
    source.write_text('"""A network."""\nWIDTH = 16  # channels\n')
    assert version() != first
    cache.training_code_version.cache_clear()


def _weights(model):
    return {k: v.clone() for k, v in model.backbone.state_dict().items()}


def test_train_then_hit_then_retrain_a_corrupt_entry(tmp_path):
    logs = []
    first = get_or_train(_spec(monitors=("target_angles",)), cache_dir=tmp_path,
                         log=logs.append)
    assert not first.from_cache and (first.path / "manifest.json").exists()
    assert "theta_mean" in first.history.columns
    unmonitored = get_or_train(_spec(), cache_dir=tmp_path, log=logs.append)
    assert "theta_mean" not in unmonitored.history.columns
    # a monitor only records: the weights are those of the unmonitored training
    for key, value in _weights(first).items():
        assert torch.equal(value, unmonitored.backbone.state_dict()[key]), key
    second = get_or_train(_spec(), cache_dir=tmp_path, log=logs.append)
    assert second.from_cache
    for key, value in _weights(first).items():
        assert torch.equal(value, second.backbone.state_dict()[key]), key

    weights = first.path / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="corrupt"):
        third = get_or_train(_spec(monitors=("target_angles",)), cache_dir=tmp_path,
                             log=logs.append)
    assert not third.from_cache
    # retraining is deterministic: the same weights as the first run
    for key, value in _weights(first).items():
        assert torch.equal(value, third.backbone.state_dict()[key]), key
    manifest = json.loads((first.path / "manifest.json").read_text())
    assert manifest["key"] == _spec(monitors=("target_angles",)).key


def test_init_from_starts_from_the_parent_weights(tmp_path):
    parent = get_or_train(_spec(), cache_dir=tmp_path, log=lambda *_: None)
    child_spec = _spec(init_from=_spec(), train={**TRAIN, "lr": 1e-12, "weight_decay": 0.0},
                       name="child")
    child = get_or_train(child_spec, cache_dir=tmp_path, log=lambda *_: None)
    # with a vanishing learning rate the child keeps its parent's weights (BN stats move)
    for key, value in parent.backbone.state_dict().items():
        if "running" in key or "num_batches" in key:
            continue
        assert torch.allclose(value, child.backbone.state_dict()[key], atol=1e-6), key


def test_a_margin_head_fine_tuned_from_softmax_starts_from_its_class_weights(tmp_path):
    parent = get_or_train(_spec(head="softmax", head_kwargs={}), cache_dir=tmp_path,
                          log=lambda *_: None)
    child_spec = _spec(init_from=_spec(head="softmax", head_kwargs={}),
                       train={**TRAIN, "lr": 1e-12, "weight_decay": 0.0}, name="child")
    child = get_or_train(child_spec, cache_dir=tmp_path, log=lambda *_: None)
    assert torch.allclose(child.head.weight, parent.head.linear.weight, atol=1e-6)


def test_unknown_method_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown training method 'telepathy'.*classify"):
        get_or_train(_spec(method="telepathy"), cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown training monitor 'telemetry'.*target_angles"):
        get_or_train(_spec(monitors=("telemetry",)), cache_dir=tmp_path)


def test_with_seed_moves_every_training_seed_and_keeps_the_data():
    from fkdlib.zoo import with_seed

    teacher = _spec(name="teacher")
    student = _spec(method="distill", init_from=_spec(name="parent"),
                    method_kwargs={"teacher": teacher.to_dict(), "seed": 5}, name="student")
    moved = with_seed(student, 2)
    assert moved.train["seed"] == TRAIN["seed"] + 2 and moved.data == student.data
    assert moved.init_from.train["seed"] == 2 and moved.init_from.data == DATA
    assert moved.method_kwargs["teacher"]["train"]["seed"] == 2
    assert moved.method_kwargs["seed"] == 7
    assert moved.key != student.key and with_seed(student, 0) is student
    assert student.method_kwargs["seed"] == 5  # the original is untouched
    with pytest.raises(ConfigError, match="seed offset must be an integer >= 0"):
        with_seed(student, -1)


def test_train_seeds_trains_each_model_once_per_seed(tmp_path):
    from fkdlib.zoo import train_seeds, with_seed

    messages = []
    models = train_seeds({"a": _spec(), "b": _spec(head="arcface")}, 2, cache_dir=tmp_path,
                         log=messages.append, names=["a"])
    assert list(models) == ["a"] and len(models["a"]) == 2
    assert [m.spec.train["seed"] for m in models["a"]] == [0, 1]
    assert models["a"][1].key == with_seed(_spec(), 1).key
    assert not torch.equal(models["a"][0].head.weight, models["a"][1].head.weight)
    with pytest.raises(ConfigError, match="seeds must be an integer >= 1"):
        train_seeds({"a": _spec()}, 0, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown model"):
        train_seeds({"a": _spec()}, 1, cache_dir=tmp_path, names=["z"])


@pytest.mark.parametrize("profile_name", ["smoke", "default", "paper"])
def test_teacher_is_twice_the_students_width_but_never_beyond_full_width(profile_name):
    from fkdlib.evaluation.benchmark import face_benchmark
    from fkdlib.profiles import get_profile
    from fkdlib.zoo import margin_spec, teacher_spec

    bench = face_benchmark(get_profile(profile_name))
    teacher = teacher_spec(bench)
    student = margin_spec(bench, "iresnet18", "cosface")
    expected = {"smoke": 0.25, "default": 0.25, "paper": 1.0}[profile_name]
    assert teacher.backbone_kwargs["width"] == expected
    assert student.backbone_kwargs["width"] == bench.profile.backbone_width
    assert teacher.train == student.train and teacher.data == student.data
    assert teacher.init_from.backbone_kwargs["width"] == expected


@pytest.mark.parametrize("profile_name", ["smoke", "default"])
def test_the_margin_recipe_fine_tunes_from_a_softmax_pretraining(profile_name):
    """Softmax for the profile's epochs, then the margin for half as many at a tenth of the
    learning rate, with the profile's warm-up and decay; names never change a key."""
    from fkdlib.evaluation.benchmark import face_benchmark
    from fkdlib.profiles import get_profile
    from fkdlib.zoo import margin_spec, pretrain_spec, training_spec

    bench = face_benchmark(get_profile(profile_name))
    profile = bench.profile
    spec = margin_spec(bench, "iresnet18", "arcface", head_kwargs={"s": 64.0, "m": 0.5},
                       name="a", pretrain_name="b", monitors=("target_angles",))
    parent = spec.init_from
    assert parent == pretrain_spec(bench, "iresnet18", name="b")
    assert parent == training_spec(bench, "iresnet18", "softmax", name="b")
    assert parent.monitors == () and parent.method == "classify"
    assert spec.monitors == ("target_angles",)
    assert parent.train["epochs"] == profile.epochs
    assert spec.train["epochs"] == max(1, round(profile.epochs / 2))
    assert spec.train["lr"] == profile.lr / 10  # exactly: 0.01, not 0.010000000000000002
    plain = training_spec(bench, "iresnet18", "arcface").train
    assert {k: v for k, v in spec.train.items() if k not in ("epochs", "lr")} == \
        {k: v for k, v in plain.items() if k not in ("epochs", "lr")}
    assert spec.key == margin_spec(bench, "iresnet18", "arcface",
                                   head_kwargs={"s": 64.0, "m": 0.5},
                                   monitors=("target_angles",)).key
    shorter = margin_spec(bench, "iresnet18", "cosface", train_overrides={"epochs": 1})
    assert shorter.train["epochs"] == 1 and shorter.init_from == parent.replace(name="")


def test_a_network_enters_the_keys_of_its_own_specs_only():
    """A network's files (its module and the models modules it imports) are hashed into the
    keys of the specs that use it, so adding or changing another network retrains nothing."""
    import fkdlib.zoo.cache as cache

    root = cache._package_root()
    models = root / "models"
    names = lambda module: [p.name for p in cache.network_files(models / module, root)]  # noqa: E731
    assert names("iresnet.py") == ["iresnet.py", "layers.py", "registry.py"]
    assert names("fan_face.py") == ["fan.py", "fan_face.py", "fan_integration.py",
                                    "iresnet.py", "layers.py", "registry.py"]
    assert cache.model_code_version("iresnet18") == cache.model_code_version("iresnet50")
    assert cache.model_code_version("iresnet18") != cache.model_code_version("vargfacenet")
    teacher = _spec(backbone="vargfacenet")
    student = _spec(method="distill", method_kwargs={"teacher": teacher.to_dict()})
    assert cache._backbones(student.to_dict()) == {"iresnet18", "vargfacenet"}


def test_network_files_follow_imports_inside_the_models_package(tmp_path):
    import fkdlib.zoo.cache as cache

    models = tmp_path / "fkdlib" / "models"
    models.mkdir(parents=True)
    (models / "__init__.py").write_text("from . import net, other\n")
    (models / "net.py").write_text("from .blocks import Block\nfrom . import __init__\n")
    (models / "blocks.py").write_text("from .layers import scale\n")
    (models / "layers.py").write_text("scale = 1\n")
    (models / "other.py").write_text("from .layers import scale\n")
    files = cache.network_files(models / "net.py", tmp_path / "fkdlib")
    assert [p.name for p in files] == ["blocks.py", "layers.py", "net.py"]
    first = cache._code_digest(files, tmp_path / "fkdlib")
    (models / "other.py").write_text("from .layers import scale\nWIDTH = 2\n")
    assert cache._code_digest(files, tmp_path / "fkdlib") == first
    (models / "layers.py").write_text("scale = 2\n")
    assert cache._code_digest(files, tmp_path / "fkdlib") != first
