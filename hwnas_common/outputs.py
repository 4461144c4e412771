"""One rule for outputs: no command overwrites a file it did not create in this invocation
unless the user passes ``--force``, and the files of a search run directory are never the
output of another command (not even with ``--force``).

Every refusal is one line that says what exists and what to pass instead."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import HwnasError

# what a search writes into its run directory; ``model.pt`` is its fine-tuned net
RUN_FILES = ("checkpoint.pt", "warmup.pt", "arch.json", "metrics.csv", "summary.json",
             "model.pt", "latency.json", "latency.csv", "accuracy.png", "latency.png",
             "arch.png", "probs.png", "verdict.png")
RUN_MARKERS = ("checkpoint.pt", "summary.json")  # a folder holding one of these is a run


def is_run_dir(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a search run (begun or finished)."""
    return any((Path(folder) / name).is_file() for name in RUN_MARKERS)


def check_output_file(out: str | os.PathLike, force: bool = False, flag: str = "--out") -> Path:
    """``out`` if a command may write it; one clear error when it is a folder, a file of a
    search run, or an existing file without ``force``."""
    out = Path(out)
    if out.is_dir():
        raise HwnasError(f"{flag} {out} is a folder; give a file name")
    if out.name in RUN_FILES and is_run_dir(out.parent) and out.exists():
        raise HwnasError(f"{out} is the {out.name} of the search run in {out.parent}; no other "
                         f"command writes it: choose another {flag}")
    if out.exists() and not force:
        raise HwnasError(f"{out} already exists; pass --force to replace it, or choose another "
                         f"{flag}")
    return out


def check_not_a_run(folder: str | os.PathLike, what: str, flag: str = "--out") -> Path:
    """``folder`` if it holds no search run; else one clear error naming ``what`` would have
    replaced it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise HwnasError(f"{flag} {folder} is a file, not a folder")
    if is_run_dir(folder):
        held = next(name for name in RUN_MARKERS if (folder / name).is_file())
        raise HwnasError(f"{folder} holds a search run ({held}); {what} would replace its "
                         f"files: choose another {flag}")
    return folder
