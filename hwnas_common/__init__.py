"""Plumbing every hwnas package shares: the one exception root (``errors``), atomic file writes
(``fileio``) and named registries (``registry``)."""

from .errors import HwnasError
from .fileio import atomic_path, atomic_write_text, atomic_write_with, remove_stale_temporaries
from .registry import Registry

__all__ = ["HwnasError", "Registry", "atomic_path", "atomic_write_text", "atomic_write_with",
           "remove_stale_temporaries"]
