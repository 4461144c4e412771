"""The one exception root of hwnas.

Every user-input problem (bad ArchSpec, unknown device, malformed table, infeasible budget, ...)
raises :class:`HwnasError` with the bad value and what was expected; the CLI turns it into one
stderr line and exit code 2.
"""

from __future__ import annotations


class HwnasError(Exception):
    """A problem with the user's input or environment, explained in one line."""
