"""ProxylessNAS search under latency budgets, exact budget-constrained derivation, export.

Public API::

    from nas import SearchConfig, search
    result = search(SearchConfig(devices=("vpu",), budgets_ms=(30.0,)))
    result.spec, result.latency_ms, result.run_dir
"""

from nas.core.budget import parse_budget, parse_budgets
from nas.core.config import SearchConfig
from nas.core.constraints import Constraint, load_constraints
from nas.core.derive import derive_arch, solve
from nas.core.engine import SearchEngine
from nas.run.search import RunResult, search

__all__ = [
    "Constraint", "RunResult", "SearchConfig", "SearchEngine", "derive_arch",
    "load_constraints", "parse_budget", "parse_budgets", "search", "solve",
]
