"""CLI subcommands of latency_predictors (profile, tables, predict, measure, validate)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's subcommands."""
