"""Online learning and safe model updates: a drifting stream, incremental learners, drift detectors,
a version-aware router with shadow / canary / rollback / hot swap. Taught in 14_online_learning."""
