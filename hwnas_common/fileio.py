"""Atomic, durable file writes: every file hwnas writes appears whole or not at all, survives a
power loss once written (the file and its folder are fsynced), and keeps the mode of the file it
replaces."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARK = ".hwnas-"  # in every temporary name hwnas makes: ``.NAME.hwnas-XXXX.tmp``
TEMP_SUFFIX = ".tmp"


def temporary_name(name: str) -> str:
    """The prefix of hwnas's temporaries for a file called ``name`` (see :func:`is_temporary`)."""
    return f".{name}{TEMP_MARK}"


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is named like a temporary of :func:`atomic_path` (or another hwnas
    writer that uses :func:`temporary_name`), and not a file of some other program."""
    name = path.name
    return name.startswith(".") and TEMP_MARK in name and name.endswith(TEMP_SUFFIX)


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's or a folder's contents to disk (a folder: the names it holds; skipped on
    file systems that cannot sync a folder)."""
    folder = Path(path).is_dir()
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if folder else 0))
    try:
        os.fsync(fd)
    except OSError as err:
        if not folder or err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; move it onto ``path`` on success.

    The moved file has the mode of the file it replaces (a new file: the umask's), and it and
    its folder are fsynced first, so a power loss leaves the old file or the new one, never an
    empty one. On an exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temporary_name(target.name), suffix=TEMP_SUFFIX,
                               dir=target.parent)
    os.close(fd)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()  # mkstemp makes 0600 files; use the usual mode
    os.chmod(tmp, mode)
    try:
        yield Path(tmp)
        fsync_path(tmp)
        os.replace(tmp, target)
        fsync_path(target.parent)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries hwnas's writers leave in ``folder`` when their process is killed
    mid-write (:func:`is_temporary`; nothing another program named); returns the deleted paths.
    Only for a folder no live hwnas process writes."""
    folder = Path(folder)
    stale = sorted(p for p in folder.iterdir() if is_temporary(p)) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
