"""labkit.online serving half: version stamps, per-version metrics, shadow, canary rollback/promotion, hot swap.

The replicas are stand-ins (tiny aiohttp apps answering a fixed label after an optional delay), so these tests
need no model server; notebook 14 runs the same router in front of real `labkit serve` replicas.
"""
import asyncio
import json
import threading
import time
import urllib.request

import pytest
from aiohttp import web

from labkit.online.policies import CanaryPolicy, Tally
from labkit.online.feedback import count_correct, split_labels
from labkit.online.router import RouterConfig, serve_router
from labkit.serve.loadgen import run_open_loop


class StandIns:
    """Replicas on one background loop: each answers `label` for every input after delay_s; keeps the bodies."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners, self.bodies = [], {}

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def start(self, name: str, label: int, delay_s: float = 0.0) -> str:
        self.bodies[name] = []

        async def predict(request):
            body = json.loads(await request.read())
            self.bodies[name].append(body)
            await asyncio.sleep(delay_s)
            n = len(body["inputs"])
            return web.json_response({"labels": [label] * n, "probabilities": [[0.5, 0.5]] * n, "batch_size": 1})

        app = web.Application()
        app.router.add_post("/predict", predict)
        runner = web.AppRunner(app, access_log=None)
        self._call(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._call(site.start())
        self.runners.append(runner)
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    def close(self):
        for runner in self.runners:
            self._call(runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def replicas():
    stand = StandIns()
    urls = {"v1": stand.start("v1", label=1), "v2": stand.start("v2", label=1, delay_s=0.01),
            "bad": stand.start("bad", label=0)}
    yield stand, urls
    stand.close()


def _post(url: str, payload: dict) -> tuple[int, dict, str]:
    req = urllib.request.Request(url + "/predict", json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read()), resp.headers["X-Model-Version"]


def _labelled(n: int) -> list[bytes]:
    return [json.dumps({"inputs": [f"sentence {i}"], "labels": [1]}).encode() for i in range(n)]


def test_split_labels_strips_feedback_only():
    body, labels = split_labels(b'{"inputs": ["a", "b"], "labels": [1, 0]}')
    assert json.loads(body) == {"inputs": ["a", "b"]} and labels == [1, 0]
    plain = b'{"inputs": ["a"]}'
    assert split_labels(plain) == (plain, None)
    assert split_labels(b'not json "labels"') == (b'not json "labels"', None)
    assert count_correct([1, 0, 1], [1, 1, 1]) == 2 and count_correct(None, [1]) == 0


def test_every_answer_names_its_version_and_labels_never_reach_the_replica(replicas):
    stand, urls = replicas
    with serve_router(urls, "v1") as r:
        status, answer, header = _post(r.url, {"inputs": ["x"], "labels": [1]})
        assert status == 200 and answer["model_version"] == header == "v1" and answer["labels"] == [1]
        assert stand.bodies["v1"][-1] == {"inputs": ["x"]}
        metrics = urllib.request.urlopen(r.url + "/metrics").read().decode()
        assert 'labkit_router_correct_items_total{role="primary",version="v1"} 1.0' in metrics


def test_shadow_is_scored_but_never_answers(replicas):
    stand, urls = replicas
    with serve_router(urls, "v1") as r:
        r.call(r.router.set_shadow, "bad")
        seen = [_post(r.url, {"inputs": ["x"], "labels": [1]})[1]["model_version"] for _ in range(20)]
        r.call(r.router.settle)
        report = r.call(r.router.shadow_report)
    assert set(seen) == {"v1"}
    assert report.requests == 20 and report.shadow_accuracy == 0.0 and report.primary_accuracy == 1.0
    assert report.agreement == 0.0


def test_policy_decisions():
    policy = CanaryPolicy(min_items=10, promote_items=20, max_drop=0.05)
    good, worse, few = Tally(), Tally(), Tally()
    for _ in range(30):
        good.add(True, 1, 1)
        worse.add(True, 1, 0)
    for _ in range(5):
        few.add(True, 1, 0)
    assert policy.decide(good, few) == "wait"          # too few items to judge
    assert policy.decide(good, worse) == "rollback"
    assert policy.decide(good, good) == "promote"
    failing = Tally()
    for _ in range(30):
        failing.add(False)
    assert policy.decide(good, failing) == "rollback"  # errors roll back even without labels
    with pytest.raises(ValueError):
        CanaryPolicy(min_items=50, promote_items=10)


def test_bad_canary_rolled_back_good_canary_promoted(replicas):
    _, urls = replicas
    config = RouterConfig(policy=CanaryPolicy(min_items=20, promote_items=40))
    with serve_router(urls, "v1", config) as r:
        r.call(r.router.start_canary, "bad", 0.5)
        result = run_open_loop(r.url + "/predict", _labelled(200), rate=400, count=200, seed=0)
        assert result.counts()["ok"] == 200
        kinds = [e["kind"] for e in r.router.events]
        assert kinds == ["canary", "rollback"] and r.router.canary is None and r.router.active == "v1"
        rollback = r.router.events[-1]
        assert rollback["canary_accuracy"] == 0.0 and rollback["stable_accuracy"] == 1.0
        r.call(r.router.start_canary, "v2", 0.5)
        run_open_loop(r.url + "/predict", _labelled(300), rate=400, count=300, seed=1)
        assert [e["kind"] for e in r.router.events][-2:] == ["promote", "swap"] and r.router.active == "v2"


def test_hot_swap_under_open_loop_load_fails_nothing(replicas):
    _, urls = replicas
    with serve_router(urls, "v2") as r:   # v2 answers after 10 ms, so requests are in flight at the swap
        box = {}
        load = threading.Thread(target=lambda: box.update(result=run_open_loop(
            r.url + "/predict", _labelled(400), rate=200, count=400, seed=2)))
        load.start()
        time.sleep(0.8)
        drain_ms = r.call(r.router.swap, "v1")
        load.join()
        result = box["result"]
        counts = result.counts()
        assert counts["ok"] + counts["rejected"] + counts["error"] + counts["timeout"] == 400
        assert counts["ok"] == 400 and counts["error"] == 0
        versions = [v for _, v in r.router.answer_log()]
        assert len(versions) == 400 and {"v1", "v2"} <= set(versions)
        first_v1 = versions.index("v1")
        assert "v2" not in versions[first_v1 + 50:]          # after the swap only stragglers finish on v2
        assert drain_ms < 1000 and r.router.versions["v2"].in_flight == 0
        with pytest.raises(ValueError):
            r.call(r.router.swap, "v9")


def test_bad_update_inverts_every_answer_and_fine_tune_leaves_the_original():
    import torch

    from labkit.models import RNNClassifier
    from labkit.online.versions import fine_tune, swap_outputs

    torch.manual_seed(0)
    model = RNNClassifier(20, num_classes=2, embed_dim=8, hidden_dim=8, cell="gru").eval()
    X = torch.randint(1, 20, (32, 6))
    with torch.no_grad():
        assert torch.equal(swap_outputs(model)(X).argmax(1), 1 - model(X).argmax(1))
    before = [p.clone() for p in model.parameters()]
    updated = fine_tune(model, X, torch.randint(0, 2, (32,)))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before, updated.parameters()))


def test_labelled_bodies_and_scraped_counts(replicas):
    from labkit.online.feedback import labelled_bodies
    from labkit.online.router import scrape_answers

    bodies = labelled_bodies(["a", "b", "c", "d", "e"], [1, 0, 1, 0, 1], items=2)
    assert [json.loads(b) for b in bodies] == [{"inputs": ["a", "b"], "labels": [1, 0]},
                                                {"inputs": ["c", "d"], "labels": [1, 0]}]
    _, urls = replicas
    with serve_router(urls, "v1") as r:
        for body in bodies:
            _post(r.url, json.loads(body))
        assert scrape_answers(r.url) == {("v1", "primary"): 2.0}
