"""Latency tables on disk: where names are looked up, strict loading and atomic saving.

A table ``NAME`` is two files side by side, never pickles: ``NAME.csv`` (the rows,
:mod:`latency_predictors.table`) and ``NAME.json`` (the metadata,
:mod:`latency_predictors.metadata`). A name is looked up in the user's tables
(``$HWNAS_TABLES``, or ``~/.hwnas/tables``), then in the shipped ones
(``latency_predictors/tables``). Loading is strict: any malformed file raises
:class:`HwnasError` in one line.

Saving is atomic for the pair: the new CSV is first written whole under a temporary name
(``.NAME.csv.hwnas-DIGEST.tmp``), then ``NAME.json``, which records the CSV's SHA-256
(``rows_sha256``), replaces the old one (the commit), then the CSV is renamed into place. A kill
before the commit leaves the old table; a kill after it leaves a pending CSV that the next load
renames into place (:func:`settle_table`). Tables without ``rows_sha256`` (the shipped ones,
hand-made ones) load as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pandas as pd

from hwnas_common.errors import HwnasError
from hwnas_common.fileio import (
    TEMP_SUFFIX,
    atomic_write_text,
    fsync_path,
    temporary_name,
)

from .metadata import validate_metadata
from .table import KEY_COLUMNS, LatencyTable, validate_frame

SHIPPED_DIR = Path(__file__).resolve().parent / "tables"
USER_DIR_ENV = "HWNAS_TABLES"


def save_table(table: LatencyTable, path: str | os.PathLike) -> Path:
    """Write ``NAME.csv`` and ``NAME.json`` as one atomic unit (see the module's docstring);
    returns the CSV path."""
    csv_path, json_path = table_paths(path)
    validate_frame(table.frame, str(csv_path))
    validate_metadata(table.metadata, str(csv_path))
    frame = table.frame.sort_values(list(KEY_COLUMNS)).reset_index(drop=True)
    text = frame.to_csv(index=False, float_format="%.6g")
    digest = hashlib.sha256(text.encode()).hexdigest()
    pending = _pending_csv(csv_path, digest)
    atomic_write_text(pending, text)
    atomic_write_text(json_path, json.dumps({**table.metadata, "rows_sha256": digest},
                                            indent=2, sort_keys=True) + "\n")
    os.replace(pending, csv_path)
    fsync_path(csv_path.parent)
    return csv_path


def _pending_csv(csv_path: Path, digest: str) -> Path:
    return csv_path.with_name(f"{temporary_name(csv_path.name)}{digest[:16]}{TEMP_SUFFIX}")


def settle_table(path: str | os.PathLike) -> None:
    """Finish a save that a kill interrupted after its commit: move the pending CSV that
    ``NAME.json`` records into place (nothing to do for a whole table)."""
    csv_path, json_path = table_paths(path)
    try:
        digest = json.loads(json_path.read_text()).get("rows_sha256")
    except (OSError, ValueError, AttributeError):
        return  # no JSON, or a malformed one: reading the table says so
    if not isinstance(digest, str):
        return
    pending = _pending_csv(csv_path, digest)
    if pending.is_file() and hashlib.sha256(pending.read_bytes()).hexdigest() == digest:
        os.replace(pending, csv_path)
        fsync_path(csv_path.parent)


def table_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(``NAME.csv``, ``NAME.json``) for a path given with or without a suffix."""
    base = Path(path)
    if base.suffix in (".csv", ".json"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".csv"), base.with_name(base.name + ".json")


def table_dirs() -> list[Path]:
    """Where names are looked up: the user's tables, then the shipped ones.

    The user's are ``$HWNAS_TABLES`` (os.pathsep-separated folders) or, without it,
    ``~/.hwnas/tables`` (where ``hwnas profile`` writes by default).
    """
    user = [Path(p) for p in os.environ.get(USER_DIR_ENV, "").split(os.pathsep) if p]
    return [*(user or [Path.home() / ".hwnas" / "tables"]), SHIPPED_DIR]


def known_tables() -> list[str]:
    """Names loadable by :func:`load_table` (user directories first, then shipped)."""
    names: list[str] = []
    for folder in table_dirs():
        if folder.is_dir():
            names += [p.stem for p in sorted(folder.glob("*.csv"))
                      if p.with_suffix(".json").exists() and p.stem not in names]
    return names


def check_table_name(name: str) -> str:
    """``name`` if it is a table name (no folder separator, not ``.`` or ``..``, not empty)."""
    separators = [s for s in (os.sep, os.altsep, "/") if s]
    if not name or name in (".", "..") or any(s in name for s in separators):
        raise HwnasError(f"table name {name!r} must be a name, not a path (no {'/'} or '..'); "
                         "give a file with --out instead")
    return name


def _is_path(text: str) -> bool:
    """A table argument is a file path when it has a separator or a .csv/.json suffix; a bare
    name is always a table name, even when a file or folder of that name is in the working
    directory."""
    return any(s in text for s in (os.sep, os.altsep, "/") if s) or text.endswith(
        (".csv", ".json"))


def load_table(name_or_path: str | os.PathLike) -> LatencyTable:
    """Load a latency table by device name or by file path, strictly.

    Parameters
    ----------
    name_or_path
        A table name (:func:`known_tables`: the user's tables in ``$HWNAS_TABLES`` or
        ``~/.hwnas/tables`` first, then the shipped ones), or a path to ``NAME.csv`` /
        ``NAME.json`` (one with a folder separator or a ``.csv``/``.json`` suffix). A user's
        table that takes the name of a shipped one says on stderr which file it loaded.

    Returns
    -------
    LatencyTable
        The rows (``frame``) and metadata (provenance, runtime, host, calibrations). A save
        that a kill interrupted after its commit is finished first (:func:`settle_table`).

    Raises
    ------
    HwnasError
        In one line, for an unknown name, a missing file, or a malformed CSV or metadata.

    Examples
    --------
    >>> from latency_predictors import load_table
    >>> table = load_table("vpu")
    >>> table.device, table.estimated
    ('vpu', True)
    """
    text = str(name_or_path)
    if not _is_path(text):
        for folder in table_dirs():
            if (folder / f"{text}.json").exists():
                settle_table(folder / text)
            if (folder / f"{text}.csv").exists():
                if folder != SHIPPED_DIR and (SHIPPED_DIR / f"{text}.csv").exists():
                    print(f"note: table {text!r} is {folder / text}.csv (not the shipped one)",
                          file=sys.stderr)
                return _read(folder / text, text)
        raise HwnasError(f"unknown device {text!r}; known devices: {known_tables()} "
                         "(or give a table file path)")
    csv_path, json_path = table_paths(text)
    settle_table(csv_path)
    for required in (csv_path, json_path):
        if not required.exists():
            raise HwnasError(f"latency table file {required} does not exist "
                             f"(a table is NAME.csv + NAME.json)")
    return _read(csv_path.with_suffix(""), csv_path.stem)


def _read(base: Path, name: str) -> LatencyTable:
    csv_path, json_path = table_paths(base)
    try:
        metadata = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise HwnasError(f"{json_path}: metadata is not valid JSON ({err})") from None
    validate_metadata(metadata, str(json_path))
    metadata.pop("rows_sha256", None)  # the pair's commit record, not a property of the table
    try:
        frame = pd.read_csv(csv_path, dtype={"op": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HwnasError(f"{csv_path}: malformed CSV ({first})") from None
    return LatencyTable(validate_frame(frame, str(csv_path)), metadata, name)
