#!/usr/bin/env python3
"""Find circles of imports among a project's own Python modules.

Every `import` and `from ... import` counts, wherever it stands: at module level, inside a
function, or under `if TYPE_CHECKING:`. An import moved into a function to dodge a circle is
still a circle in the design. Standard library only; nothing is imported or run.

A copy of the shared checker (``../shared/tools/import_cycles.py``), kept in the repository so
that CI (``.ci/run``) checks every clean checkout.

Usage:  python tools/import_cycles.py [ROOT] [--packages a,b,c]
        (ROOT defaults to the current directory; packages default to every top-level folder
        with an __init__.py, plus top-level .py files)
Exit 0 when there is no circle, 1 when there is one (each printed with the names it takes).
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def collect(root: Path, packages: list[str]) -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in packages:
        p = root / pkg
        files = [p] if p.suffix == ".py" else sorted(p.rglob("*.py"))
        for f in files:
            if "tests" in f.relative_to(root).parts:
                continue
            mods[module_name(root, f)] = f
    return mods


def resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The longest known module that `name` is, or lies inside."""
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


def edges(mod: str, path: Path, mods: dict[str, Path]) -> dict[str, set[str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    out: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        targets: list[tuple[str, str]] = []
        if isinstance(node, ast.Import):
            targets = [(a.name, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join([*anchor, base] if base else anchor)
            for a in node.names:
                full = f"{base}.{a.name}" if base else a.name
                targets.append((full if resolve(full, mods) == full else base, a.name))
        for target, label in targets:
            dep = resolve(target, mods)
            if dep and dep != mod and not (mod.startswith(dep + ".")
                                           or dep.startswith(mod + ".")):
                out.setdefault(dep, set()).add(label)
    return out


def cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", nargs="?", default=".")
    ap.add_argument("--packages", help="comma-separated top-level packages or .py files")
    a = ap.parse_args()
    root = Path(a.root).resolve()
    if a.packages:
        packages = a.packages.split(",")
    else:
        packages = sorted(p.name for p in root.iterdir()
                          if (p.is_dir() and (p / "__init__.py").exists() and p.name != "tests")
                          or (p.suffix == ".py" and p.is_file()))
    mods = collect(root, packages)
    graph = {m: edges(m, p, mods) for m, p in mods.items()}
    found = cycles(graph)
    for comp in found:
        print(f"circle of {len(comp)} modules:")
        members = set(comp)
        for m in comp:
            for dep, names in sorted(graph[m].items()):
                if dep in members:
                    print(f"  {m} -> {dep}: {', '.join(sorted(names))}")
    print(f"{len(found)} import circle(s) among {len(mods)} modules")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
