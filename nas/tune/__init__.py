"""Optuna on top of a search: the NSGA-II budget sweep over a trained supernet (``sweep``,
``sweep_run``) and the latency-loss strength calibration (``calibrate_budget``)."""
