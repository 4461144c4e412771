"""The layout table (``docs/layout.md``) names every module of every package folder, and nothing
else."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hwnas_common", "search_spaces", "latency_predictors", "nas")


def layout_rows() -> dict[str, str]:
    """``{path cell: what cell}`` of the layout table."""
    rows = {}
    for line in (ROOT / "docs" / "layout.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            path, what = (cell.strip() for cell in line.strip("|").split("|", 1))
            rows[path] = what
    return rows


def test_every_package_folder_has_a_row_naming_each_of_its_modules() -> None:
    rows = layout_rows()
    folders = sorted({p.parent for package in PACKAGES for p in (ROOT / package).rglob("*.py")})
    for folder in folders:
        modules = {p.name for p in folder.glob("*.py")} - {"__init__.py", "commands.py"}
        if not modules:
            continue  # nas/: its commands.py is the `*/commands.py` row
        key = f"`{folder.relative_to(ROOT).as_posix()}/`"
        assert key in rows, f"no layout row for {key}"
        named = set(re.findall(r"`(\w+\.py)`", rows[key]))
        assert named == modules, f"{key}: docs/layout.md names {sorted(named - modules)} that do " \
                                 f"not exist and misses {sorted(modules - named)}"


def test_every_path_the_table_names_exists() -> None:
    for cell in layout_rows():
        for path in re.findall(r"`([^`]+)`", cell):
            assert "*" in path or (ROOT / path).exists(), path
