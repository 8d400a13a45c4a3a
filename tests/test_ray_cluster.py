"""Issue 18, bounded smoke form of notebook 16 §2b: replicas on two Ray nodes, the worker node killed under load,
every request answered or explicitly failed, and the replicas back on a replacement node.

Skipped only when Ray itself cannot start here (RayStartError) or LABKIT_SKIP_RAY=1.
"""
import pytest

from labkit.serve import ServeConfig
from labkit.serve.workloads import sample_bodies

pytest.importorskip("ray")
from labkit.deploy.raycluster import TwoNodeServe, node_failure_drill  # noqa: E402
from labkit.deploy.load import totals  # noqa: E402


@pytest.fixture(scope="module")
def two_nodes(start_ray):
    return start_ray(TwoNodeServe(ServeConfig(model="text", threads=1)))


def test_replicas_on_both_nodes_then_a_node_dies_and_nothing_is_lost(two_nodes):
    placed = two_nodes.replicas()
    assert sorted(placed["node"]) == ["head", "worker"], placed   # one replica on each node (state API)
    drill = node_failure_drill(two_nodes, sample_bodies("text", 64), rate_rps=100, duration_s=24, kill_at_s=2,
                               timeout_s=5)
    counts = totals(drill["chunks"])
    # every request answered (ok, or an explicit 5xx/429), none left hanging until the client gave up
    assert counts["ok"] + counts["rejected"] + counts["error"] + counts["timeout"] == counts["sent"] > 0, counts
    assert counts["timeout"] == 0, counts
    assert counts["ok"] >= 0.9 * counts["sent"], counts          # the head's replica kept serving
    assert drill["noticed_s"] < drill["replicas_back_s"] < 22, drill["replicas"].tail(5)   # noticed, then replaced
    after = two_nodes.replicas()
    assert sorted(after["node"]) == ["head", "worker"], after    # the replacement replica is on the new node
