"""labkit.monitor offline: rule files and promtool, anomaly detectors vs scikit-learn, drift, skew, logs."""
import io
import json
import os

import numpy as np
import pytest
from sklearn import metrics as skm

from labkit.monitor import anomaly, drift, logs, prometheus, rules
from labkit.monitor.faults import skewed_text

needs_promtool = pytest.mark.skipif(prometheus.find_binary("promtool") is None and not os.environ.get("CI"),
                                    reason="promtool not installed (apt-get install prometheus)")


def test_prometheus_is_installed_in_ci():
    """CI must run the live checks: a missing prometheus there fails instead of skipping."""
    if not os.environ.get("CI"):
        pytest.skip("only enforced when CI is set")
    assert prometheus.available(), "CI lacks prometheus/promtool: .ci/run installs them with apt-get"


def test_committed_rules_are_generated(tmp_path):
    assert rules.write_rules(tmp_path / "r.yml").read_text() == rules.RULES_FILE.read_text(), \
        "run labkit.monitor.rules.write_rules() after changing the rules"


def test_slo_windows_scale_the_sre_workbook():
    slo = rules.SLO()
    assert slo.window(3600) == "18s" and slo.window(300) == "2s" and rules.SLO(time_scale=1).window(3600) == "3600s"
    assert "0.144" in rules.burn_condition(slo, 14.4, 3600, 300)


@needs_promtool
def test_promtool_check_rules():
    result = rules.check_rules()
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_test_rules():
    result = rules.test_rules()
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_promconfig_is_valid_yaml():
    import yaml

    doc = yaml.safe_load(prometheus.PromConfig(("http://127.0.0.1:8000",), rule_files=("/r.yml",)).to_yaml())
    assert doc["global"]["scrape_interval"] == "1000ms"
    assert doc["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:8000"]


def test_evaluate_matches_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        t, p = rng.random(80) < 0.2, rng.random(80) < 0.3
        got = anomaly.evaluate(t, p)
        assert np.isclose(got["precision"], skm.precision_score(t, p, zero_division=0))
        assert np.isclose(got["recall"], skm.recall_score(t, p, zero_division=0))
        assert np.isclose(got["f1"], skm.f1_score(t, p, zero_division=0))


def test_detection_delay_and_windows():
    y = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0])
    p = np.array([0, 0, 1, 1, 0, 0, 0, 0, 0])
    assert anomaly.windows(y) == [(1, 4), (6, 8)]
    r = anomaly.evaluate(y, p, step_s=2.0)
    assert r["faults"] == 2 and r["caught"] == 1 and r["mean_delay_s"] == 2.0


def test_best_detector_finds_simulated_faults():
    X, y = anomaly.simulate_series(seed=3)
    rows = anomaly.score_all(X[:60], X, y)
    best = max(rows, key=lambda r: r["f1"])
    assert best["f1"] >= 0.8, rows
    trivial = anomaly.evaluate(y, np.ones_like(y))["f1"]
    assert trivial < 0.4, "the fault windows must be rare enough that flagging everything scores badly"


def test_robust_z_ignores_outliers_in_training():
    X = np.column_stack([np.full(50, 100.0), np.zeros(50), np.full(50, 0.02)])
    X[0] = [1e6, 1.0, 10.0]  # one wild point barely moves the median and the MAD
    det = anomaly.RobustZ().fit(X)
    assert det.center_.tolist() == [100.0, 0.0, 0.02] and not det.predict(X[1:]).any()


def test_psi_flags_shift_with_few_false_alarms():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 2000)
    unshifted = [rng.normal(0, 1, 500) for _ in range(40)]
    assert drift.false_alarm_rate(drift.psi_drifted, ref, unshifted) <= 0.1
    assert drift.psi_drifted(ref, rng.normal(0.5, 1, 500)) and drift.ks_drifted(ref, rng.normal(0.5, 1, 500))
    assert drift.psi(ref, ref) < 1e-9


def test_skew_report_and_finite_guard():
    a = np.array([[0.9, 0.1], [0.2, 0.8]])
    r = drift.skew_report(a, a[:, ::-1])
    assert r["label_flip_rate"] == 1.0 and drift.skew_report(a, a)["mismatch_rate"] == 0.0
    assert drift.finite_guard(np.array([[1.0, np.nan], [1.0, 2.0], [np.inf, 0]])).tolist() == [False, True, False]
    assert skewed_text("the food was not good") == "the food was good"


def test_json_logs_carry_request_id():
    stream = io.StringIO()
    log = logs.json_logger("labkit.test.requests", stream)
    log.info("request", extra={"request_id": "abc-1", "latency_ms": 812.5, "outcome": "ok"})
    log.info("request", extra={"request_id": "abc-2", "latency_ms": 3.0})
    lines = logs.read_json_lines(stream.getvalue())
    assert lines[0]["request_id"] == "abc-1" and "outcome" not in lines[1]
    assert logs.slowest(lines, 1)[0]["request_id"] == "abc-1"
    assert json.loads(stream.getvalue().splitlines()[0])["level"] == "INFO"


def test_grafana_dashboard_queries_name_real_series():
    import re

    from labkit.monitor.grafana import dashboard_queries
    from labkit.serve.telemetry import Metrics

    exposed = {s.name for fam in Metrics().registry.collect() for s in fam.samples}
    recorded = {r["record"] for r in rules.recording_rules()}
    queries = dashboard_queries()
    assert len(queries) >= 8 and all("$__" not in q for _, q in queries)
    for title, q in queries:
        names = set(re.findall(r"\b(labkit_[a-z_]+|job:[a-z0-9_:]+)", q))
        assert names <= exposed | recorded, f"{title}: {names - exposed - recorded} is not exported or recorded"


def test_fault_routes_set_every_field():
    import asyncio

    from starlette.testclient import TestClient
    from starlette.applications import Starlette

    from labkit.monitor import faults

    class FakeService:
        async def infer(self, inputs, deadline_ms):
            return inputs

    service = FakeService()
    client = TestClient(Starlette(routes=faults.routes(service)))
    assert client.post("/fault", json={"skew": 1, "delay_ms": 1}).json() == {"error_rate": 0.0, "delay_ms": 1.0,
                                                                             "skew": 1.0}
    assert asyncio.run(service.infer(["it was not good"], None)) == ["it was good"]
    client.post("/fault", json={"error_rate": 1})
    with pytest.raises(faults.InjectedFault):
        asyncio.run(service.infer(["x"], None))
    assert client.post("/fault", json={"error_rate": 2}).status_code == 400
    assert client.post("/fault", json={}).json() == {"error_rate": 0.0, "delay_ms": 0.0, "skew": 0.0}


def test_no_prometheus_switch(monkeypatch):
    monkeypatch.setenv("LABKIT_NO_PROMETHEUS", "1")
    assert not prometheus.available()
