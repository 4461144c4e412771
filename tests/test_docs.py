"""The README and docs hold: every relative link, every ``bench/``, ``tests/`` and ``tools/`` file
and every ``python -m`` module they name exists, and the project speaks of itself, not of how it
was made (no "this session", "issue 20", "lent", ...) in its docs, comments and strings."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
README_LINES = 250

# Prose about the making of the project, not about the project. Code may still say `session`
# (an onnxruntime InferenceSession): only these phrases are refused.
MAKING_OF = re.compile(
    r"\b(?:this|that|previous|earlier|next|other|another|each|every|per|a|the) sessions?(?:'s?)?"
    r"(?! ?=)\b(?![.(_])|\bsessions? so far\b|\bsession before\b|\bissues? #?\d+|\blent\b"
    r"|\bthe issue(?:'s)?\b", re.IGNORECASE)
# onnxruntime objects named in code or prose: "a session" / "the session" of a runtime
RUNTIME_SESSION = re.compile(r"\b(?:a|the|per|each|every) (?:inference )?session\b(?= ?[=.(,)]|"
                             r" (?:per|for|of|options|object|is|with|that runs))", re.IGNORECASE)
SKIP = {".venv", ".git", "build", "dist", "runs", ".hwnas_cache", "node_modules"}
THIS_FILE = Path(__file__).resolve()  # it quotes the phrases it refuses


def _py_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py")
                  if not SKIP.intersection(p.relative_to(ROOT).parts) and p != THIS_FILE
                  and not any(part.endswith(".egg-info") for part in p.parts))


def _texts() -> list[Path]:
    extra = [*sorted((ROOT / "bench").rglob("*.md")), *sorted((ROOT / "bench").glob("*.sh")),
             ROOT / ".ci" / "run"]
    return [*DOCS, *extra, *_py_files()]


def making_of_hits(text: str) -> list[str]:
    """The phrases of ``text`` that speak of how the project was made."""
    hits = []
    for match in MAKING_OF.finditer(text):
        line_start = text.rfind("\n", 0, match.start()) + 1
        line_end = text.find("\n", match.end())
        line = text[line_start:line_end if line_end >= 0 else None]
        if RUNTIME_SESSION.match(line, match.start() - line_start):
            continue  # an onnxruntime session, named right here
        hits.append(f"{text.count(chr(10), 0, match.start()) + 1}: {line.strip()}")
    return hits


@pytest.mark.parametrize("phrase", ["no GPU was lent to this session", "see issue 20",
                                    "as in issue 12, with a session per net",
                                    "the issue's host", "the previous session measured",
                                    "as the session before", "the sessions so far",
                                    "the ~3-minute limit per run of this session"])
def test_the_phrase_check_finds_making_of_prose(phrase: str) -> None:
    assert making_of_hits(phrase), phrase


@pytest.mark.parametrize("code", ["session = ort.InferenceSession(path, options)",
                                  "a session per thread", "self.session.run(None, feeds)",
                                  "the session options of onnxruntime", "issues a warning",
                                  "one session per network"])
def test_the_phrase_check_leaves_runtime_sessions_alone(code: str) -> None:
    assert not making_of_hits(code), code


def test_the_project_speaks_of_itself() -> None:
    found = []
    for path in _texts():
        name = path.relative_to(ROOT).as_posix()
        for hit in making_of_hits(path.read_text(encoding="utf-8")):
            found.append(f"{name}:{hit}")
    assert not found, "\n".join(found)


def test_the_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_LINES, lines


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("#") and not line.startswith("#!")}


def _fenced_out(text: str) -> str:
    """``text`` without its fenced code blocks (a shell comment there is no heading)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_and_headings_that_exist(doc: Path) -> None:
    text = _fenced_out(doc.read_text(encoding="utf-8"))
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        assert path.exists(), f"{doc.name}: link to {target}: no such file"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{doc.name}: link to {target}: no such heading"


@pytest.mark.parametrize("doc", [d for d in DOCS if d.name != "CHANGELOG.md"],  # it names
                         ids=lambda p: str(p.relative_to(ROOT)))  # removed scripts too
def test_named_scripts_files_and_modules_exist(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    for name in re.findall(r"(?<![\w/.])((?:bench|tests|tools|docs)/[\w./-]*\w)", text):
        assert (ROOT / name).exists(), f"{doc.name} names {name}: no such file"
    for module in re.findall(r"python3? -m ([\w.]+)", text):
        assert importlib.util.find_spec(module) is not None, f"{doc.name}: python -m {module}"
