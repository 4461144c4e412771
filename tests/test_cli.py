"""The CLI's own behaviour: argparse errors and a closed output pipe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import cli

ROOT = Path(__file__).resolve().parents[1]


def test_argparse_errors_are_one_line_exit_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["space", "--sample", "many"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("hwnas: error:") and err.count("\n") == 1


def test_closed_pipe_stops_quietly() -> None:
    """`hwnas ... | head -1`: no traceback when the reader goes away."""
    proc = subprocess.Popen([sys.executable, "cli.py", "space", "cifar", "--sample", "20000"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b'{"space": "cifar"')
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "Traceback" not in stderr
