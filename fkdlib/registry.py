"""One registry for everything built by name: models, heads, distillation losses, training
methods, dataset kinds and training monitors.

In the style of timm's ``@register_model`` / ``create_model``: a configuration stays plain data
(names and keyword options), and a new paper adds entries without editing the code that builds
them. Every registry checks the caller's options against the factory's signature before calling
it, so a typo fails with a message that lists what the entry accepts, and it keeps per-entry
metadata (a loss's published default weight, say) so that tables of defaults are derived from
the registry rather than copied by hand.

Example:
    >>> LOSSES = Registry("distillation loss", skip=3)
    >>> @LOSSES.register("kd", default_weight=0.9)
    ... def kd(student, teacher, head, temperature=4.0): ...
    >>> LOSSES.metadata("kd")["default_weight"]
    0.9
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import ConfigError

Entry = TypeVar("Entry", bound=Callable[..., Any])


class Registry(Generic[Entry]):
    """Named factories of one kind, with argument checking and metadata.

    Args:
        kind: what the entries are, in words ("model", "distillation loss"): error messages
            name it.
        skip: leading positional parameters that :meth:`create` passes itself (e.g. the two
            backbones of a distillation loss); they are not options a caller can set.
    """

    def __init__(self, kind: str, skip: int = 0) -> None:
        self.kind = kind
        self.skip = skip
        self._entries: dict[str, Entry] = {}
        self._metadata: dict[str, dict[str, Any]] = {}

    def register(self, name: str | None = None, **metadata: Any) -> Callable[[Entry], Entry]:
        """Decorator: register a factory (a function or a class) under ``name`` (default: its
        ``__name__``) with optional metadata; a second entry of the same name is refused."""
        def decorator(entry: Entry) -> Entry:
            key = name or entry.__name__
            existing = self._entries.get(key)
            if existing is not None and existing is not entry:
                raise ConfigError(
                    f"a {self.kind} named {key!r} is already registered (by "
                    f"{existing.__module__}.{existing.__qualname__}); choose another name")
            self._entries[key] = entry
            self._metadata[key] = dict(metadata)
            return entry
        return decorator

    def add(self, name: str, entry: Entry, **metadata: Any) -> Entry:
        """Register ``entry`` under ``name`` without the decorator syntax."""
        return self.register(name, **metadata)(entry)

    def get(self, name: str) -> Entry:
        """The factory registered as ``name``; an unknown name lists the known ones."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown {self.kind} {name!r}; known: "
                              f"{', '.join(self.names()) or 'none'}") from None

    def metadata(self, name: str) -> dict[str, Any]:
        """The metadata an entry was registered with (a copy)."""
        self.get(name)
        return dict(self._metadata[name])

    def options(self, name: str) -> list[str]:
        """The keyword options a caller may give :meth:`create` for ``name``."""
        parameters = list(self._signature(name).parameters.values())[self.skip:]
        return [p.name for p in parameters
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def _signature(self, name: str) -> inspect.Signature:
        entry = self.get(name)
        target = entry.__init__ if inspect.isclass(entry) else entry
        signature = inspect.signature(target)
        if inspect.isclass(entry):  # drop ``self``
            signature = signature.replace(parameters=list(signature.parameters.values())[1:])
        return signature

    def check(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Raise :class:`ConfigError` if ``create(name, *args, **kwargs)`` would not bind."""
        try:
            self._signature(name).bind(*args, **kwargs)
        except TypeError as error:
            raise ConfigError(
                f"invalid options {sorted(kwargs)} for {self.kind} {name!r} ({error}); it "
                f"accepts: {', '.join(self.options(name)) or 'no options'}") from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the factory ``name`` after checking the options against its signature."""
        self.check(name, *args, **kwargs)
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def table(self, field: str) -> dict[str, Any]:
        """``{name: metadata[field]}`` for the entries that declare ``field``."""
        return {name: meta[field] for name, meta in sorted(self._metadata.items())
                if field in meta}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"
