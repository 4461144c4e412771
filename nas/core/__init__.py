"""The search's model: configuration, budgets, the per-device latency constraint, the engine
(weight and architecture steps), the binary-gate gradient, latency losses and the exact
knapsack derivation."""
