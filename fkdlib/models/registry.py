"""Model registry in the style of timm: ``@register_model`` factories and ``create_model(name)``.

A factory is a function whose name is the model's name and whose keyword arguments are the
model's options (``input_size``, ``width``, ``embedding_size``, ...). Experiments and notebooks
build networks by name so that a configuration stays plain data.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from ..errors import ConfigError

Factory = TypeVar("Factory", bound=Callable[..., nn.Module])

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(factory: Factory) -> Factory:
    """Register ``factory`` under its function name; a second model of the same name is refused.

    Give the factory keyword-only options with defaults (``def name(*, input_size=112, ...)``):
    :func:`create_model` checks the caller's options against that signature. Returns the
    factory unchanged, so it stays callable directly.
    """
    name = factory.__name__
    if name in _MODELS:
        existing = _MODELS[name]
        raise ConfigError(
            f"a model named {name!r} is already registered (by {existing.__module__}."
            f"{existing.__qualname__}); give the new factory another name"
        )
    _MODELS[name] = factory
    return factory


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_MODELS)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with keyword options ``kwargs``.

    Raises:
        ConfigError: the name is unknown (the message lists the known ones), or an option is not
            one the model takes (the message lists the ones it takes), or a value is invalid.

    Example:
        >>> model = create_model("iresnet50", input_size=112, embedding_size=512)
    """
    try:
        factory = _MODELS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown model {name!r}; known models are: {', '.join(list_models())}"
        ) from None
    signature = inspect.signature(factory)
    try:
        signature.bind(**kwargs)
    except TypeError as error:
        accepted = [p.name for p in signature.parameters.values() if p.kind == p.KEYWORD_ONLY]
        raise ConfigError(
            f"invalid options for model {name!r} ({error}); it accepts the keyword options: "
            f"{', '.join(accepted)}"
        ) from None
    return factory(**kwargs)
