"""Replicas on two Ray nodes on this machine, and what happens to requests when one node dies.

A Ray node is a raylet with its own share of CPUs (plus its object store and agents); a cluster is a head
node (GCS, Serve controller, HTTP proxy) and worker nodes. `ray.cluster_utils.Cluster` (Ray's own
multi-node test harness) starts real nodes as separate processes here, each with `num_cpus=1`; Serve spreads
the two replicas with `max_replicas_per_node=1`. `kill_worker` SIGKILLs every process of the worker node (a
machine lost, no graceful shutdown) and `add_worker` starts a replacement node, as a cluster autoscaler or a
restarted machine would. On a real cluster the deployment code is the same (`ray start --head`, `ray start
--address=HEAD:6379` on the others, `ray.init(address="auto")`); only the node start-up differs.
Taught in 16_deployment_and_reliability.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Sequence

from labkit.serve.config import ServeConfig
from labkit.serve.process import free_port
from labkit.serve.ray_app import APP_NAME, RayStartError, build_app, run_on_serve, shutdown

# No node_ip_address: ray.init rewrites a loopback bootstrap address to the machine's own IP, so the nodes
# listen on the address Ray picks for this machine (nothing leaves it); the Serve proxy stays on 127.0.0.1.
NODE_ARGS = {"num_cpus": 1, "num_gpus": 0, "object_store_memory": 100 * 1024 * 1024}
# How fast the GCS declares a silent node dead: a health check every `period` ms, dead after `threshold` misses.
# Ray's defaults (3,000 ms x 5, after a 5 s initial delay) take 15-20 s; a demo that waits that long shows the
# defaults, not the recovery. Both are settings of a real cluster too (RAY_health_check_period_ms, ...).
HEALTH_CHECK = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                "health_check_initial_delay_ms": 1000}


class TwoNodeServe:
    """A head and a worker node on loopback, Ray Serve with one replica of the course's app on each."""

    def __init__(self, config: ServeConfig = ServeConfig(), port: int | None = None, startup_timeout_s: float = 180.0):
        if config.threads != 1:
            raise ValueError(f"each node has one CPU: threads must be 1; got {config.threads}")
        self.config, self.port, self.startup_timeout_s = config, port or free_port(), startup_timeout_s
        self.cluster = self.worker = None
        self.startup_s = float("nan")

    @property
    def predict_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/predict"

    def start(self) -> TwoNodeServe:
        import ray
        from ray.cluster_utils import Cluster

        start = time.perf_counter()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")   # nothing leaves the machine
        os.environ["RAY_worker_niceness"] = "0"                 # as RayServe: workers at normal priority
        try:
            self.cluster = Cluster(initialize_head=True, head_node_args={
                **NODE_ARGS, "include_dashboard": True, "dashboard_host": "127.0.0.1",
                "dashboard_port": free_port(),                  # the dashboard serves Ray's state API
                "_system_config": HEALTH_CHECK})
            self.worker = self.cluster.add_node(**NODE_ARGS)
            ray.init(address=self.cluster.address, log_to_driver=False, logging_level=logging.WARNING)
            logging.getLogger("ray.serve").setLevel(logging.WARNING)   # Serve's INFO lines in a notebook
        except Exception as err:
            self.stop()
            raise RayStartError(f"the two-node cluster did not start ({type(err).__name__}: {err})") from err
        try:
            # the proxy on the head only: both nodes share this machine's address, so a proxy per node would
            # share a port
            run_on_serve(build_app(self.config, num_replicas=2, max_replicas_per_node=1), self.port,
                         self.config.model, self.startup_timeout_s, proxy_location="HeadOnly")
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - start
        return self

    def replicas(self):
        """The app's replica actors from Ray's state API: one row each (actor, state, node, node role)."""
        import pandas as pd
        from ray.util.state import list_actors

        roles = {n.node_id: "head" if n is self.cluster.head_node else "worker" for n in self.cluster.list_all_nodes()}
        rows = [{"actor_id": a.actor_id[:8], "class": a.class_name, "state": a.state, "node_id": a.node_id[:8],
                 "node": roles.get(a.node_id, "gone")}
                for a in list_actors(filters=[("state", "=", "ALIVE")], detail=False, raise_on_missing_output=False)
                if a.class_name.startswith("ServeReplica")]
        return pd.DataFrame(rows, columns=["actor_id", "class", "state", "node_id", "node"])

    def running_replicas(self) -> int:
        from ray import serve

        app = serve.status().applications.get(APP_NAME)
        if app is None:
            return 0
        return sum(d.replica_states.get("RUNNING", 0) for d in app.deployments.values())

    def kill_worker(self) -> None:
        """Every process of the worker node SIGKILLed at once: the machine is gone."""
        self.cluster.remove_node(self.worker, allow_graceful=False)
        self.worker = None

    def add_worker(self) -> None:
        """A replacement worker node joins (Serve places the missing replica on it)."""
        self.worker = self.cluster.add_node(**NODE_ARGS)

    def stop(self) -> None:
        try:
            shutdown()
        finally:
            if self.cluster is not None:
                self.cluster.shutdown()
                self.cluster = None

    def __enter__(self) -> TwoNodeServe:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def node_failure_drill(serve2: TwoNodeServe, bodies: Sequence[bytes], rate_rps: float, duration_s: float,
                       kill_at_s: float, timeout_s: float = 5.0, poll_s: float = 0.1) -> dict:
    """Open-loop load for duration_s (1-s chunks); at kill_at_s the worker node dies and a replacement joins.
    Returns the chunks, the replica count over time and times in seconds after the kill: until the replacement
    node had joined, until Serve counted fewer than two running replicas (noticed), until it counted two again
    (replicas back; NaN if not within duration_s), and until a whole 1-s chunk answered everything ok."""
    import pandas as pd

    from labkit.deploy.load import BackgroundLoad, timeline

    replicas_over_time: list[tuple[float, int]] = []
    stop = threading.Event()
    load = BackgroundLoad(serve2.predict_url, bodies, lambda t: rate_rps, timeout_s=timeout_s)

    def watch() -> None:
        while not stop.wait(poll_s):
            replicas_over_time.append((load.elapsed_s(), serve2.running_replicas()))

    watcher = threading.Thread(target=watch, name="labkit-replica-watch", daemon=True)
    with load:
        watcher.start()
        time.sleep(max(0.0, kill_at_s - load.elapsed_s()))
        killed_at = load.elapsed_s()
        serve2.kill_worker()
        serve2.add_worker()
        replacement_at = load.elapsed_s()
        while load.elapsed_s() < duration_s:
            time.sleep(0.05)
    stop.set()
    watcher.join()
    counts = pd.DataFrame(replicas_over_time, columns=["t_s", "running"])
    after = counts[counts.t_s > killed_at]
    dipped = after[after.running < 2]
    noticed = dipped.t_s.iloc[0] if len(dipped) else float("nan")
    back = after[(after.t_s > noticed) & (after.running >= 2)] if len(dipped) else after.iloc[:0]
    chunks = timeline(load.chunks)
    clean = chunks[(chunks.start_s > killed_at) & (chunks.ok == chunks.sent)]
    return {"chunks": load.chunks, "timeline": chunks, "replicas": counts, "killed_at_s": killed_at,
            "replacement_node_s": replacement_at - killed_at, "noticed_s": noticed - killed_at,
            "replicas_back_s": back.t_s.iloc[0] - killed_at if len(back) else float("nan"),
            "all_ok_again_s": clean.start_s.iloc[0] - killed_at if len(clean) else float("nan")}
