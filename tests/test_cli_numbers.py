"""Every numeric option of every ``hwnas`` subcommand is checked at its boundary when it is
parsed, before any work: 0, -1 and a non-number are each either one error line and exit code 2,
or a value whose meaning the option's help states ("0: none", "default 0")."""

from __future__ import annotations

import argparse
import re

import pytest

import cli


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _required_argv(parser: argparse.ArgumentParser) -> list[str]:
    """Placeholder values for the positionals and required options (a parse needs them)."""
    argv: list[str] = []
    for action in parser._actions:
        value = action.choices[0] if action.choices else "x"
        if not action.option_strings and action.nargs != "?":
            argv.append(value)
        elif action.option_strings and action.required:
            argv += [action.option_strings[0], value]
    return argv


def _is_numeric(action: argparse.Action) -> bool:
    return action.type in (int, float) or hasattr(action.type, "what")


NUMERIC = [(name, action) for name, parser in _subcommands().items()
           for action in parser._actions if action.option_strings and _is_numeric(action)]


def test_there_are_numeric_options_and_all_use_the_checked_types() -> None:
    assert len(NUMERIC) > 30
    for name, action in NUMERIC:
        assert action.type not in (int, float), f"hwnas {name} {action.option_strings[0]}"


def _documents(help_text: str, value: str) -> bool:
    """The help says what ``value`` means: ``0: none`` / ``0 = off``, ``(default 0)``, or that
    the range starts there (``>= 0``)."""
    number = re.escape(value) + r"(?![\d.])"
    return bool(re.search(rf"(?<![\w.-]){number}\s*[:=]|default {number}|>= {number}",
                          help_text or ""))


@pytest.mark.parametrize("value", ["0", "-1", "x"])
@pytest.mark.parametrize(("name", "action"), NUMERIC,
                         ids=[f"{n}{a.option_strings[0]}" for n, a in NUMERIC])
def test_numeric_option_at_its_boundary(name: str, action: argparse.Action, value: str,
                                        capsys: pytest.CaptureFixture) -> None:
    parser = _subcommands()[name]
    flag = action.option_strings[0]
    argv = [name, *_required_argv(parser), flag, value]
    try:
        args = cli.build_parser().parse_args(argv)
    except SystemExit as exit_info:
        assert exit_info.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"hwnas: error: argument {flag}"), err
        assert f"got {value!r}" in err, err
        return
    assert value == "0", f"hwnas {name} {flag} {value} was accepted"
    assert getattr(args, action.dest) == 0
    assert _documents(action.help, value), f"hwnas {name} {flag}: help does not say what 0 " \
                                           f"means: {action.help!r}"


def test_select_top_zero_is_one_line_and_exit_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["search", "--quick", "--device", "vpu", "--budget", "30ms",
                  "--select-top", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("hwnas: error: argument --select-top: expected an "
                                       "integer >= 1, got '0'\n")
    args = cli.build_parser().parse_args(["search", "--device", "vpu", "--budget", "30ms",
                                          "--select-top", "1"])
    assert args.select_top == 1  # the knapsack's most probable net
