"""latency_predictors package."""
