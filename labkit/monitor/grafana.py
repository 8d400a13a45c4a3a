"""The course's Grafana dashboard (grafana_dashboard.json): Grafana is a query and display layer that *pulls*
from Prometheus with PromQL at view time; nothing is sent to Grafana. Import the JSON in Grafana
(Dashboards -> Import) and pick a Prometheus data source. Taught in 12_monitoring_and_alerting.
"""
from __future__ import annotations

import json
from pathlib import Path

DASHBOARD = Path(__file__).parent / "grafana_dashboard.json"


def dashboard_queries(path: Path = DASHBOARD, rate_interval: str = "5s") -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of the dashboard, with Grafana's $__rate_interval filled in."""
    doc = json.loads(Path(path).read_text())
    return [(p["title"], t["expr"].replace("$__rate_interval", rate_interval))
            for p in doc["panels"] for t in p.get("targets", [])]
