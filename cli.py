"""hwnas command line: parses arguments and calls the Python API, nothing more.

Each package contributes its subcommands through ``<package>.commands.register(subparsers)``;
a subcommand sets ``func(args) -> int``. User errors (:class:`HwnasError`) become one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from hwnas_common.errors import HwnasError

COMMAND_MODULES = ("search_spaces.commands", "latency_predictors.commands", "nas.commands")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit 2
        self.exit(2, f"hwnas: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(prog="hwnas", description="Hardware-aware NAS for high-order-interaction "
                     "CNNs: search under a latency budget, export, profile device tables.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # no command: the command list, not just "arguments are required"
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HwnasError as err:
        print(f"hwnas: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hwnas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
