"""A real Prometheus server for a notebook or a test: generated config, free port, ready wait, always stopped.

    with PrometheusProcess(targets=[server.url]) as prom:
        run_open_loop(server.url + "/predict", bodies, rate=100, count=200)
        prom.wait_for_value('sum(labkit_requests_total)', 200)

It runs the Debian `prometheus` binary (apt-get install prometheus) as a ServerProcess child, so it shares
the launch on a free loopback port, the clean-up at exit and the SIGKILL of its process group. The course
scrapes and evaluates rules every second (production uses 15-60 s): a live demo then takes seconds, not
minutes. PromQL goes through the HTTP API (/api/v1/query, /api/v1/query_range, /api/v1/alerts).
Taught in 12_monitoring_and_alerting.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from labkit.serve.process import ServerProcess

SCRAPE_INTERVAL_S = 1.0   # course scale: 1 s scrape and rule evaluation, so an alert moves within seconds


def find_binary(name: str = "prometheus") -> str | None:
    """Path of `prometheus` or `promtool` (PATH, then /usr/bin), or None when not installed."""
    return shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)


def available() -> bool:
    """Both binaries are installed (the live parts of notebook 12 need them); LABKIT_NO_PROMETHEUS=1 pretends
    they are not, to check the path a machine without them takes."""
    if os.environ.get("LABKIT_NO_PROMETHEUS") == "1":
        return False
    return find_binary("prometheus") is not None and find_binary("promtool") is not None


@dataclass(frozen=True)
class PromConfig:
    """What the generated prometheus.yml says."""
    targets: tuple[str, ...]           # "http://127.0.0.1:PORT" of each server to scrape
    job: str = "labkit"                # the `job` label of every target
    interval_s: float = SCRAPE_INTERVAL_S  # scrape_interval and evaluation_interval
    rule_files: tuple[str, ...] = ()   # absolute paths of rule files

    def to_yaml(self) -> str:
        """prometheus.yml as text (JSON is valid YAML, so no YAML writer is needed)."""
        hosts = [t.split("://", 1)[-1].rstrip("/") for t in self.targets]
        interval = f"{int(self.interval_s * 1000)}ms"
        doc = {"global": {"scrape_interval": interval, "evaluation_interval": interval,
                          "scrape_timeout": interval},
               "rule_files": list(self.rule_files),
               "scrape_configs": [{"job_name": self.job, "metrics_path": "/metrics",
                                   "static_configs": [{"targets": hosts}]}]}
        return json.dumps(doc, indent=2)


class PrometheusProcess(ServerProcess):
    """`prometheus` on a free loopback port with a temporary config and TSDB; a context manager."""
    log_name = "prometheus"

    def __init__(self, targets: Sequence[str], rule_files: Sequence[str | Path] = (),
                 interval_s: float = SCRAPE_INTERVAL_S, startup_timeout_s: float = 30.0):
        super().__init__(startup_timeout_s=startup_timeout_s)
        binary = find_binary("prometheus")
        if binary is None:
            raise FileNotFoundError("prometheus is not installed: apt-get install prometheus (as root)")
        self.binary = binary
        self.prom_config = PromConfig(tuple(targets), interval_s=interval_s,
                                      rule_files=tuple(str(Path(p).resolve()) for p in rule_files))
        self.workdir = Path(tempfile.mkdtemp(prefix="labkit-prometheus-"))
        (self.workdir / "prometheus.yml").write_text(self.prom_config.to_yaml())

    def argv(self) -> list[str]:
        return [self.binary, f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address={self.host}:{self.port}",
                "--storage.tsdb.retention.time=1h", "--log.level=warn"]

    def _health_status(self) -> int | None:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code  # 503 while the TSDB opens
        except OSError:
            return None

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """Stop the server and delete its config and TSDB."""
        code = super().stop(timeout_s)
        shutil.rmtree(self.workdir, ignore_errors=True)
        return code

    # ------------------------------------------------------------------ HTTP API
    def api(self, path: str, **params) -> dict | list:
        """GET /api/v1/<path>; returns `data`, raises RuntimeError on an error status."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                doc = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            doc = json.loads(err.read() or b"{}")
        if doc.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} {params}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, promql: str, at: float | None = None) -> dict[str, float]:
        """An instant query as {label set: value} ('' for an unlabelled result)."""
        params = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})}
        data = self.api("query", **params)
        if data["resultType"] == "scalar":
            return {"": float(data["result"][1])}
        return {_key(r["metric"]): float(r["value"][1]) for r in data["result"]}

    def value(self, promql: str, at: float | None = None) -> float:
        """The single value of a query (NaN when it returns nothing)."""
        result = self.query(promql, at)
        if len(result) > 1:
            raise ValueError(f"{promql!r} returned {len(result)} series; aggregate it (sum, max, ...)")
        return next(iter(result.values()), float("nan"))

    def query_range(self, promql: str, start: float, end: float, step_s: float = SCRAPE_INTERVAL_S
                    ) -> dict[str, list[tuple[float, float]]]:
        """A range query as {label set: [(unix time s, value), ...]}."""
        data = self.api("query_range", query=promql, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step_s:g}")
        return {_key(r["metric"]): [(float(t), float(v)) for t, v in r["values"]] for r in data["result"]}

    def alerts(self) -> dict[str, str]:
        """{alert name: state} of active alerts ("pending" or "firing"); an absent name is inactive."""
        out: dict[str, str] = {}
        for a in self.api("alerts")["alerts"]:
            name = a["labels"]["alertname"]
            out[name] = "firing" if "firing" in (a["state"], out.get(name)) else a["state"]
        return out

    def targets_up(self) -> int:
        """Scrape targets whose last scrape succeeded."""
        return sum(t["health"] == "up" for t in self.api("targets")["activeTargets"])

    def wait_for_value(self, promql: str, want: float, timeout_s: float = 15.0, poll_s: float = 0.2) -> float:
        """Poll a query until it returns `want` (a scrape after a load run has landed); the last value seen."""
        deadline, got = time.monotonic() + timeout_s, float("nan")
        while time.monotonic() < deadline:
            got = self.value(promql)
            if got == want:
                break
            time.sleep(poll_s)
        return got

    def wait_for_alert(self, name: str, state: str | None = "firing", timeout_s: float = 30.0,
                       poll_s: float = 0.25) -> tuple[float, list[tuple[float, str]]]:
        """Poll /api/v1/alerts until `name` is in `state` (None = inactive); (seconds, [(t, state) changes])."""
        start, seen = time.monotonic(), []
        while time.monotonic() - start < timeout_s:
            now = self.alerts().get(name)
            if not seen or seen[-1][1] != (now or "inactive"):
                seen.append((round(time.monotonic() - start, 2), now or "inactive"))
            if now == state:
                return time.monotonic() - start, seen
            time.sleep(poll_s)
        raise TimeoutError(f"alert {name} not {state or 'inactive'} after {timeout_s:g} s; states seen {seen}")


def _key(metric: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(metric.items()) if k != "__name__")
