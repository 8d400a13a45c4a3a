"""Recording rules and multi-window, multi-burn-rate SLO alerts for the model server, checked by promtool.

The alerts follow the Google SRE workbook (chapter "Alerting on SLOs"): page when the error budget burns
14.4x too fast over 1 h *and* over 5 min (or 6x over 6 h and 30 min); open a ticket at 3x over 1 d and
2 h (or 1x over 3 d and 6 h). The long window says the burn is real, the short one that it is still
happening (so the alert resolves soon after the fault is gone). The course runs everything TIME_SCALE
times faster (1 h -> 18 s), to watch an alert fire and resolve in seconds; production uses scale 1.
`labkit/monitor/rules/labkit.rules.yml` is write_rules()'s output; promtool checks and unit-tests it.
Taught in 12_monitoring_and_alerting.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from labkit.monitor.prometheus import find_binary

RULES_DIR = Path(__file__).parent / "rules"
RULES_FILE = RULES_DIR / "labkit.rules.yml"
RULES_TEST_FILE = RULES_DIR / "labkit.rules.test.yml"
TIME_SCALE = 200            # course clock: 1 h of production is 18 s here
BAD_OUTCOMES = "error|deadline"   # what spends the error budget (429s are the client's to retry, not errors)
# (severity, burn rate, long window s, short window s) at production scale, from the SRE workbook
BURN_ALERTS = (("page", 14.4, 3600, 300), ("page", 6.0, 6 * 3600, 1800),
               ("ticket", 3.0, 86400, 7200), ("ticket", 1.0, 3 * 86400, 6 * 3600))


@dataclass(frozen=True)
class SLO:
    """An availability SLO over predict requests and a latency threshold for the p99 alert."""
    objective: float = 0.99        # fraction of requests that must not fail: budget = 1 - objective
    p99_threshold_s: float = 0.1   # p99 latency above this for `for_s` pages
    time_scale: int = TIME_SCALE   # divide every window by this
    for_s: int = 2                 # how long a condition must hold: pending -> firing

    @property
    def budget(self) -> float:
        return 1.0 - self.objective

    def window(self, seconds: int) -> str:
        """A PromQL duration for a production window, scaled (at least 2 s: rate() needs two samples)."""
        return f"{max(2, round(seconds / self.time_scale))}s"


def error_ratio_rule(window: str) -> dict:
    """Recording rule: the job's failed fraction of predict requests over `window`."""
    bad = f'sum by (job) (rate(labkit_requests_total{{outcome=~"{BAD_OUTCOMES}"}}[{window}]))'
    return {"record": f"job:labkit_request_errors:ratio_rate{window}",
            "expr": f"{bad} / sum by (job) (rate(labkit_requests_total[{window}]))"}


def recording_rules(slo: SLO = SLO()) -> list[dict]:
    """Throughput by outcome, p99 latency, and the error ratio over every window the alerts need."""
    windows = sorted({slo.window(s) for _, _, long, short in BURN_ALERTS for s in (long, short)},
                     key=lambda w: int(w[:-1]))
    short = slo.window(300)
    return [{"record": "job:labkit_requests:rate5s",
             "expr": "sum by (job, outcome) (rate(labkit_requests_total[5s]))"},
            {"record": "job:labkit_request_latency_seconds:p99_5s",
             "expr": "histogram_quantile(0.99, sum by (job, le) "
                     "(rate(labkit_request_latency_seconds_bucket[5s])))"},
            {"record": f"instance:labkit_request_errors:ratio_rate{short}",
             "expr": f'sum by (job, instance) (rate(labkit_requests_total{{outcome=~"{BAD_OUTCOMES}"}}'
                     f'[{short}])) / sum by (job, instance) (rate(labkit_requests_total[{short}]))'},
            *[error_ratio_rule(w) for w in windows]]


def burn_condition(slo: SLO, rate: float, long_s: int, short_s: int) -> str:
    """Both windows burn faster than `rate` times the budget."""
    threshold = f"{rate * slo.budget:.6g}"
    return (f"(job:labkit_request_errors:ratio_rate{slo.window(long_s)} > {threshold} and "
            f"job:labkit_request_errors:ratio_rate{slo.window(short_s)} > {threshold})")


def alert_rules(slo: SLO = SLO()) -> list[dict]:
    """The two burn-rate alerts (page, ticket) and a p99 latency alert."""
    out = []
    for severity, name in (("page", "LabkitErrorBudgetBurnFast"), ("ticket", "LabkitErrorBudgetBurnSlow")):
        expr = " or ".join(burn_condition(slo, r, lw, sw) for sev, r, lw, sw in BURN_ALERTS if sev == severity)
        out.append({"alert": name, "expr": expr, "for": f"{slo.for_s}s", "labels": {"severity": severity},
                    "annotations": {"summary": f"error budget of the {slo.objective:.2%} SLO burning too fast"}})
    out.append({"alert": "LabkitLatencyP99High",
                "expr": f"job:labkit_request_latency_seconds:p99_5s > {slo.p99_threshold_s:g}",
                "for": f"{slo.for_s}s", "labels": {"severity": "page"},
                "annotations": {"summary": f"p99 latency above {slo.p99_threshold_s * 1e3:g} ms"}})
    return out


def rules_document(slo: SLO = SLO()) -> dict:
    """The whole rule file as a dict (groups evaluate at the global 1 s interval)."""
    return {"groups": [{"name": "labkit_recording", "rules": recording_rules(slo)},
                       {"name": "labkit_alerts", "rules": alert_rules(slo)}]}


def write_rules(path: Path = RULES_FILE, slo: SLO = SLO()) -> Path:
    """Write the rule file (JSON is YAML; promtool reads it)."""
    Path(path).write_text(json.dumps(rules_document(slo), indent=2) + "\n")
    return Path(path)


def promtool(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    """Run promtool (FileNotFoundError when it is not installed); never raises on its exit code."""
    binary = find_binary("promtool")
    if binary is None:
        raise FileNotFoundError("promtool is not installed: apt-get install prometheus (as root)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout_s)


def check_rules(path: Path = RULES_FILE) -> subprocess.CompletedProcess:
    """`promtool check rules`: syntax, PromQL and duplicate names."""
    return promtool("check", "rules", str(path))


def test_rules(path: Path = RULES_TEST_FILE) -> subprocess.CompletedProcess:
    """`promtool test rules`: the rule file's unit tests (input series, expected alerts at given times)."""
    return promtool("test", "rules", str(path))


test_rules.__test__ = False  # a library function, not a pytest test
