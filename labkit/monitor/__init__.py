"""Monitoring the model server: a real Prometheus, PromQL, alert rules, anomaly and drift detection, JSON logs.

Taught in 12_monitoring_and_alerting.
"""
