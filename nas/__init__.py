"""ProxylessNAS search under latency budgets, exact budget-constrained derivation, export.

Public API::

    from nas import SearchConfig, search
    result = search(SearchConfig(devices=("vpu",), budgets_ms=(30.0,)))
    result.spec, result.latency_ms, result.run_dir
"""

from .budget import parse_budget, parse_budgets
from .config import SearchConfig
from .constraints import Constraint, load_constraints
from .derive import DeviceBudget, solve
from .engine import SearchEngine
from .search import RunResult, derive, search

__all__ = [
    "Constraint", "DeviceBudget", "RunResult", "SearchConfig", "SearchEngine", "derive",
    "load_constraints", "parse_budget", "parse_budgets", "search", "solve",
]
