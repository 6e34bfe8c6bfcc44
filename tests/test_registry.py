"""The one Registry behind models, heads, losses, training methods, dataset kinds, monitors."""

import pytest

from fkdlib.errors import ConfigError
from fkdlib.registry import Registry


def test_register_create_and_metadata():
    losses = Registry("distillation loss", skip=2)

    @losses.register("kd", default_weight=0.9)
    def kd(student, teacher, temperature: float = 4.0):
        return ("kd", student, teacher, temperature)

    @losses.register("fitnet", default_weight=100.0)
    class FitNet:
        def __init__(self, student, teacher, stage: str = "layer3"):
            self.stage = stage

    assert losses.names() == ["fitnet", "kd"]
    assert "kd" in losses and "at" not in losses and len(losses) == 2
    assert losses.create("kd", "s", "t", temperature=2.0) == ("kd", "s", "t", 2.0)
    assert losses.create("fitnet", "s", "t", stage="layer2").stage == "layer2"
    assert losses.options("kd") == ["temperature"]
    assert losses.options("fitnet") == ["stage"]
    assert losses.metadata("kd") == {"default_weight": 0.9}
    assert losses.table("default_weight") == {"fitnet": 100.0, "kd": 0.9}


def test_errors_name_the_problem_and_the_alternatives():
    models = Registry("model")

    @models.register()
    def tiny(*, width: float = 1.0):
        return width

    with pytest.raises(ConfigError, match=r"unknown model 'tinny'; known: tiny"):
        models.create("tinny")
    with pytest.raises(ConfigError, match=r"invalid options \['widht'\] for model 'tiny'.*"
                                          r"accepts: width"):
        models.create("tiny", widht=2)
    with pytest.raises(ConfigError, match="already registered"):
        models.add("tiny", lambda: None)
    # registering the same object twice is harmless (a module imported again)
    assert models.add("tiny", tiny) is tiny
    assert models.create("tiny", width=0.5) == 0.5


def test_metadata_is_a_copy():
    kinds = Registry("dataset kind")
    kinds.add("synthface", dict, version="1")
    kinds.metadata("synthface")["version"] = "changed"
    assert kinds.metadata("synthface") == {"version": "1"}


def test_every_library_registry_is_a_registry_with_the_built_in_entries():
    from fkdlib.data import DATA_KINDS
    from fkdlib.distill import LOSSES, default_weights
    from fkdlib.distill.icd import FCD_WEIGHT
    from fkdlib.distill.kd import KD_WEIGHT
    from fkdlib.heads import HEADS
    from fkdlib.models.registry import MODELS
    from fkdlib.training.callbacks import MONITORS
    from fkdlib.zoo import METHODS

    for registry in (DATA_KINDS, LOSSES, HEADS, MODELS, MONITORS, METHODS):
        assert isinstance(registry, Registry)
    assert DATA_KINDS.names() == ["cifar", "folder", "recordio", "synthface"]
    assert HEADS.names() == ["arcface", "combined", "cosface", "norm_softmax", "softmax",
                             "sphereface"]
    assert METHODS.names() == ["classify", "distill", "distill_unlabeled", "fan_guided",
                              "landmark_multitask", "landmarks"]
    assert MONITORS.names() == ["target_angles"]
    # the table of default weights is derived from the registry, one entry per loss
    weights = default_weights()
    assert sorted(weights) == LOSSES.names() == ["angular", "at", "fcd", "fitnet", "icd", "kd",
                                                 "pkt", "rkd", "srrl"]
    assert weights["kd"] == KD_WEIGHT == 0.9 and weights["fcd"] == FCD_WEIGHT == 7.0
    assert HEADS.options("arcface") == ["s", "m", "easy_margin"]
