"""Model registry in the style of timm: ``@register_model`` factories and ``create_model(name)``.

A factory is a function whose name is the model's name and whose keyword arguments are the
model's options (``input_size``, ``width``, ``embedding_size``, ...). Experiments and notebooks
build networks by name so that a configuration stays plain data. The entries live in
:data:`MODELS`, a :class:`fkdlib.registry.Registry` like every other registry of the library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from ..registry import Registry

Factory = TypeVar("Factory", bound=Callable[..., nn.Module])

MODELS: Registry = Registry("model")


def register_model(factory: Factory) -> Factory:
    """Register ``factory`` under its function name; a second model of the same name is refused.

    Give the factory keyword-only options with defaults (``def name(*, input_size=112, ...)``):
    :func:`create_model` checks the caller's options against that signature. Returns the
    factory unchanged, so it stays callable directly.
    """
    return MODELS.register()(factory)


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return MODELS.names()


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with keyword options ``kwargs``.

    Raises:
        ConfigError: the name is unknown (the message lists the known ones), or an option is not
            one the model takes (the message lists the ones it takes), or a value is invalid.

    Example:
        >>> model = create_model("iresnet50", input_size=112, embedding_size=512)
    """
    return MODELS.create(name, **kwargs)
