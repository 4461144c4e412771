"""A table from whole-net timings, for any device (``hwnas tables fit``), and the error every
table states.

- :mod:`.timings`: the file of (architecture, milliseconds) a user timed with any tool;
- :mod:`.priors`: what a fit starts from: a table hwnas already has, or the analytical
  roofline's per-op components;
- :mod:`.fitting`: the fit (non-negative least squares on the relative error, the prior and
  its model chosen by leave-one-out cross-validation) and the fitted table it writes;
- :mod:`.error`: a table's error distribution (out-of-sample measured/predicted ratios) and the
  margin under which a search derives so that its net meets the budget with a stated
  probability.
"""

from __future__ import annotations

from .error import DEFAULT_CONFIDENCE, TableError, budget_margin, table_error
from .fitting import FitResult, fit_table
from .priors import Prior, roofline_prior, table_prior
from .timings import Timings, read_timings

__all__ = ["DEFAULT_CONFIDENCE", "FitResult", "Prior", "TableError", "Timings",
           "budget_margin", "fit_table", "read_timings", "roofline_prior", "table_error",
           "table_prior"]
