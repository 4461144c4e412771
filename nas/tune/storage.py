"""Optuna storage URLs: a file path made into an sqlite URL that SQLAlchemy reads back as that
path (``?``, ``#`` and ``%`` escaped), and a URL with its password hidden wherever hwnas prints
or writes it."""

from __future__ import annotations

import os
import re
from urllib.parse import quote

_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^\s/]*@")


def sqlite_url(path: str | os.PathLike) -> str:
    """``sqlite:///PATH`` with PATH escaped, so a ``?`` or ``#`` in it is not read as a query."""
    return f"sqlite:///{quote(os.fspath(path))}"


def redact_url(url: str | None) -> str | None:
    """``url`` with the password of its ``user:password@`` part replaced by ``***``."""
    return None if url is None else _PASSWORD.sub(r"\1***@", url)


def redact_text(text: str, url: str | None) -> str:
    """``text`` (an error message about ``url``) with the URL's password hidden."""
    if url is None:
        return text
    match = _PASSWORD.search(url)
    secret = match.group(0)[len(match.group(1)):-1] if match else ""
    text = _PASSWORD.sub(r"\1***@", text)
    return text.replace(secret, "***") if secret else text
