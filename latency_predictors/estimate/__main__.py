"""``python -m latency_predictors.estimate DIR``: write the shipped estimated tables into DIR
(:func:`latency_predictors.estimate.tables.main`)."""

from .tables import main

main()
