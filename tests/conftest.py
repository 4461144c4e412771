from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import torch

from hwnas_common.fileio import atomic_path
from nas.run import report
from search_spaces import SPACES
from tests.helpers import TEST_SPACES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)  # faster than 2 for these tiny ops on a shared 2-core box


@pytest.fixture(autouse=True)
def _figures_drawn_not_rendered(request: pytest.FixtureRequest,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering a run's PNGs is most of a tiny search's time: a search in a test draws every
    figure but writes a stub PNG, unless the test is marked ``real_plots``."""
    if request.node.get_closest_marker("real_plots"):
        return

    def save(fig, path) -> None:
        import matplotlib.pyplot as plt

        plt.close(fig)
        with atomic_path(path) as tmp:
            tmp.write_bytes(PNG_SIGNATURE)

    monkeypatch.setattr(report, "_save", save)


@pytest.fixture(autouse=True)
def _user_tables(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's table folder (where adapted tables are cached) is a fresh temporary one, never
    ~/.hwnas; a test may point ``$HWNAS_TABLES`` elsewhere."""
    monkeypatch.setenv("HWNAS_TABLES", str(tmp_path_factory.mktemp("user-tables")))


@pytest.fixture(autouse=True, scope="session")
def _test_spaces() -> Iterator[None]:
    """The test-only spaces exist for the test run only, not from an import's side effect."""
    with ExitStack() as stack:
        for space in TEST_SPACES:
            stack.enter_context(SPACES.registered(space.name, space))
        yield
