"""``Registry[T]``: named entries of one kind, registered once and looked up with one clear error.

One registry per kind of thing hwnas lets a user or a module add by name (timm's
register/entrypoint idea): interaction operators (``search_spaces.interactions``), candidate
blocks (``search_spaces.blocks``), fixed skeleton parts (``search_spaces.network``), spaces
(``search_spaces.space``), timing backends (``latency_predictors.measure.backends``), estimated
devices (``latency_predictors.estimate.devices``) and latency losses
(``nas.core.latency_loss``). A registry is a read-only mapping; ``register`` refuses
duplicates, and ``registered`` adds an entry for the duration of a ``with`` block (tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Generic, TypeVar

from .errors import HwnasError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Entries of one ``kind`` ("interaction", "space", ...) by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` as ``name``; a name already taken is an error."""
        if name in self._entries:
            raise HwnasError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@REGISTRY.decorator(name)``: register the decorated class or function."""
        return lambda entry: self.register(name, entry)

    @contextmanager
    def registered(self, name: str, entry: T) -> Iterator[T]:
        """Register ``entry`` for the ``with`` block only."""
        self.register(name, entry)
        try:
            yield entry
        finally:
            del self._entries[name]

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise HwnasError(f"unknown {self.kind} {name!r}; valid: {sorted(self._entries)}")
        return self._entries[name]

    def get(self, name: str, default: T | None = None) -> T | None:  # type: ignore[override]
        return self._entries.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
