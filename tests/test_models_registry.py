"""The timm-style model registry: registration, look-up, clear errors."""

import pytest
import torch
from torch import nn

import fkdlib.models
from fkdlib.errors import ConfigError
from fkdlib.models import create_model, list_models, register_model, registry
from fkdlib.models.iresnet import IResNet
from fkdlib.models.mobilefacenet import MobileFaceNet

BUILT_IN = {
    "iresnet18": IResNet,
    "iresnet34": IResNet,
    "iresnet50": IResNet,
    "iresnet100": IResNet,
    "mobilefacenet": MobileFaceNet,
    "mobilefacenet_thesis": MobileFaceNet,
}


@pytest.fixture
def private_registry(monkeypatch):
    """A copy of the registry, so that test registrations do not leak into other tests."""
    monkeypatch.setattr(registry.MODELS, "_entries", dict(registry.MODELS._entries))
    monkeypatch.setattr(registry.MODELS, "_metadata", dict(registry.MODELS._metadata))


def test_importing_the_package_registers_every_built_in_model():
    assert set(BUILT_IN) <= set(list_models())
    assert list_models() == sorted(list_models())
    assert fkdlib.models.create_model is create_model


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_create_model_builds_the_registered_class_with_its_options(name):
    with torch.device("meta"):
        model = create_model(name, input_size=32, width=0.25, embedding_size=24)
    assert isinstance(model, BUILT_IN[name])
    assert model.input_size == 32
    assert model.embedding_size == 24


def test_register_model_returns_the_factory_and_refuses_a_duplicate(private_registry):
    def tiny_probe(*, features: int = 4) -> nn.Module:
        return nn.Linear(features, 2)

    assert register_model(tiny_probe) is tiny_probe
    assert "tiny_probe" in list_models()
    assert create_model("tiny_probe", features=7).in_features == 7

    def tiny_probe(*, features: int = 4) -> nn.Module:  # noqa: F811  (same name on purpose)
        return nn.Linear(features, 3)

    with pytest.raises(ConfigError, match="already registered"):
        register_model(tiny_probe)
    # The first registration is kept.
    assert create_model("tiny_probe").out_features == 2


def test_unknown_name_lists_the_known_models():
    with pytest.raises(ConfigError) as excinfo:
        create_model("iresnet101")
    message = str(excinfo.value)
    assert "iresnet101" in message
    for name in BUILT_IN:
        assert name in message


def test_unknown_option_names_it_and_lists_the_accepted_ones():
    with pytest.raises(ConfigError) as excinfo:
        create_model("iresnet18", widht=0.5)
    message = str(excinfo.value)
    assert "widht" in message
    for option in ("input_size", "width", "embedding_size", "dropout", "in_channels"):
        assert option in message


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"input_size": 100}, "multiple of 16"),
        ({"input_size": 0}, "multiple of 16"),
        ({"width": 0.0}, "width"),
        ({"width": float("nan")}, "width"),
        ({"embedding_size": 0}, "embedding_size"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_invalid_option_values_are_refused_clearly(options, fragment):
    with pytest.raises(ConfigError, match=fragment), torch.device("meta"):
        create_model("mobilefacenet", **options)
