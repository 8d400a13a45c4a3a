"""Dynamic tuning: measure, adjust, repeat until a target is met.

hyper       Optuna search over training hyperparameters, with a pruner
serving     Optuna search over ServeConfig under a p99 SLO (constraints), a grid of equal budget, verification
controller  a feedback loop inside the server that adjusts max wait / max batch from its own p99 and queue
steps       offered load that steps between levels, summarised per level and over time
Taught in 11_dynamic_tuning.
"""
