"""The capstone: the text service from the naive server to the course's best configuration, one lever at a time.

Every step faces the same open-loop load (the same skewed bodies, the same offered rates) and is scored by
goodput at the p99 SLO, p99 at the best rate that met it, and accuracy measured through its own /predict.
Steps: naive -> dynamic batching -> ONNX Runtime -> INT8 weights -> result cache -> 2 replicas on one port
(SO_REUSEPORT: the kernel spreads connections, no balancer hop). INT8 is always measured; the later steps
keep it only where its accuracy holds (`int8_holds`, checked in-process before any server starts), else they
build on the fp32 ONNX graph.
Run from the command line: `labkit bench capstone [--quick]`. Taught in 16_deployment_and_reliability.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import urllib.request
from dataclasses import dataclass, field
from typing import Sequence

from labkit.serve.balancer import BalancerConfig
from labkit.serve.benchmark import running
from labkit.serve.config import ServeConfig
from labkit.serve.loadgen import run_closed_loop
from labkit.serve.replicas import BalancerProcess
from labkit.serve.slo import goodput_at_slo


@dataclass(frozen=True)
class Step:
    name: str
    changes: dict = field(default_factory=dict)   # ServeConfig fields this step sets (on top of the base)
    replicas: int = 1


MAX_INT8_DROP = 0.01   # INT8 is kept for the later steps when it loses at most this much accuracy


def capstone_steps(use_int8: bool) -> tuple[Step, ...]:
    """The capstone's levers in order; the cache and replica steps build on INT8 only when use_int8."""
    engine = "onnx-int8" if use_int8 else "onnx"
    return (Step("naive", {"batching": False, "engine": "torch"}),
            Step("+ batching", {"engine": "torch"}),
            Step("+ ONNX Runtime", {"engine": "onnx"}),
            Step("+ INT8 weights", {"engine": "onnx-int8"}),
            Step("+ cache", {"engine": engine, "cache": True}),
            Step("+ 2 replicas", {"engine": engine, "cache": True, "reuse_port": True}, replicas=2))


STEPS = capstone_steps(use_int8=False)


def int8_holds(model: str = "text", n: int = 2000, max_drop: float = MAX_INT8_DROP) -> dict:
    """Accuracy of the served fp32 ONNX graph and of its INT8 twin on n labelled inputs, in-process:
    {"fp32": ..., "int8": ..., "holds": int8 >= fp32 - max_drop}."""
    import numpy as np

    from labkit.data import generate_negation_corpus
    from labkit.serve.engines import make_forward
    from labkit.serve.lifecycle import load_model

    if model != "text":
        raise ValueError(f"the capstone serves the text model; got {model!r}")
    loaded = load_model(model, evaluate=False)
    pairs = generate_negation_corpus(n, 4321)
    x = np.asarray(loaded.preprocess([s for s, _ in pairs]))
    y = np.array([label for _, label in pairs])
    acc = {name: float((make_forward(model, loaded.model, loaded.weights, engine)(x).argmax(1) == y).mean())
           for name, engine in (("fp32", "onnx"), ("int8", "onnx-int8"))}
    return {**acc, "holds": acc["int8"] >= acc["fp32"] - max_drop}


def labelled_bodies(n: int = 256, items: int = 32, seed: int = 1234) -> tuple[list[bytes], list[int]]:
    """Text /predict bodies of `items` sentences each and their true labels, for accuracy through a server."""
    from labkit.data import generate_negation_corpus

    pairs = generate_negation_corpus(n, seed)
    bodies = [json.dumps({"inputs": [s for s, _ in pairs[i:i + items]]}).encode() for i in range(0, n, items)]
    return bodies, [y for _, y in pairs]


def accuracy_via(url: str, bodies: Sequence[bytes], labels: Sequence[int]) -> float:
    """Accuracy of the labels a server answers for `bodies` (POST url, one body at a time)."""
    predicted: list[int] = []
    for body in bodies:
        req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            predicted += json.loads(resp.read())["labels"]
    if len(predicted) != len(labels):
        raise RuntimeError(f"{len(predicted)} answers for {len(labels)} inputs")
    return sum(p == y for p, y in zip(predicted, labels)) / len(labels)


def step_configs(base: ServeConfig, steps: Sequence[Step] = STEPS) -> list[list[ServeConfig]]:
    """The replica configs of each step; a step with the same changes as an earlier one reuses its servers."""
    return [[base.replace(**s.changes)] * s.replicas for s in steps]


def run_capstone(base: ServeConfig, bodies: Sequence[bytes], slo_ms: float, rates: Sequence[float], *,
                 steps: Sequence[Step] = STEPS, duration_s: float = 1.0, refine: int = 0,
                 accuracy_n: int = 256, log=print):
    """One row per step: goodput at p99 <= slo_ms over `rates`, p99 and offered rate there, the next probed rate
    that missed the SLO (NaN: none did, the step may serve more), rejections and errors over all probes,
    accuracy through the step's /predict."""
    import pandas as pd

    configs = step_configs(base, steps)
    pool: list[ServeConfig] = []           # distinct server processes: shared between steps where equal
    for group in configs:
        for k, c in enumerate(group):
            if not c.reuse_port and sum(p == c for p in pool) <= k:
                pool.append(c)
    acc_bodies, labels = labelled_bodies(accuracy_n)
    rows = []
    with running(*pool) as servers:
        for step, group in zip(steps, configs):
            with _front(pool, servers, group) as url:
                run_closed_loop(url, bodies, users=8, duration_s=0.3, timeout_s=5.0)   # warm-up
                found = goodput_at_slo(url, bodies, slo_ms, rates, duration_s=duration_s, refine=refine,
                                       timeout_s=5.0)
                best = _best_row(found.table)
                above = found.table[~found.table["meets_slo"] & (found.table["offered_rps"] > found.rate_rps)]
                rows.append({"step": step.name, "goodput_rps": found.goodput_rps, "rate_rps": found.rate_rps,
                             "next_failed_rps": float(above["offered_rps"].min()) if len(above) else float("nan"),
                             "p99_ms": best.get("p99_ms", float("nan")),
                             "rejected": int(found.table["rejected"].sum()),
                             "error": int(found.table["error"].sum()),
                             "accuracy": accuracy_via(url, acc_bodies, labels),
                             "probes": len(found.table)})
                log(f"{step.name}: goodput {found.goodput_rps:.0f} req/s at p99 <= {slo_ms:g} ms")
    return pd.DataFrame(rows)


def _urls(pool: Sequence[ServeConfig], servers, group: Sequence[ServeConfig]) -> list[str]:
    taken: list[int] = []
    for c in group:
        i = next(i for i, p in enumerate(pool) if p == c and i not in taken)
        taken.append(i)
    return [f"{servers[i].url}/predict" for i in taken]


@contextlib.contextmanager
def _front(pool: Sequence[ServeConfig], servers, group: Sequence[ServeConfig]):
    """The one /predict URL of a step: its server; or its replicas on one port (SO_REUSEPORT: the kernel spreads
    the connections, no extra hop), started for this step; or a balancer process in front of its replicas."""
    if group[0].reuse_port:
        with reuse_port_replicas(group) as url:
            yield url
        return
    urls = _urls(pool, servers, group)
    if len(urls) == 1:
        yield urls[0]
        return
    with BalancerProcess([u.rsplit("/predict", 1)[0] for u in urls], BalancerConfig()) as bal:
        yield f"{bal.url}/predict"


@contextlib.contextmanager
def reuse_port_replicas(configs: Sequence[ServeConfig]):
    """Start one server per config, all on one free port with SO_REUSEPORT; yield that port's /predict URL."""
    from labkit.serve.process import ServerProcess, free_port

    if not all(c.reuse_port for c in configs):
        raise ValueError("every replica on a shared port needs reuse_port=True")
    port = free_port()
    servers = [ServerProcess(c, port=port) for c in configs]
    from concurrent.futures import ThreadPoolExecutor

    try:
        with ThreadPoolExecutor(len(servers)) as pool:  # each waits for a /health answered by its own pid
            for future in [pool.submit(s.start) for s in servers]:
                future.result()
        yield f"{servers[0].url}/predict"
    finally:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(lambda server: server.stop(), servers))


def _best_row(table) -> dict:
    """The summary of the highest rate that met the SLO (or of the lowest rate probed if none did)."""
    passed = table[table["meets_slo"]]
    if len(passed):
        return passed.sort_values("offered_rps").iloc[-1].to_dict()
    return table.sort_values("offered_rps").iloc[0].to_dict() if len(table) else {}


# ---------------------------------------------------------------- `labkit bench capstone`

QUICK_RATES = (300, 1000, 2500)
FULL_RATES = (100, 200, 400, 600, 800, 1200, 1600, 2400, 3200, 4800, 6400, 8000, 9600, 12800)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `labkit bench capstone`."""
    parser.add_argument("--slo-ms", type=float, default=50.0, help="p99 SLO (default 50 ms)")
    parser.add_argument("--quick", action="store_true", help="3 rates, 1 s each, no refinement (~1-2 minutes)")
    parser.add_argument("--duration", type=float, help="seconds per probed rate (default 3, quick 1)")
    parser.add_argument("--json", action="store_true", help="print the table as JSON records")


def run(args: argparse.Namespace) -> int:
    """Carry out `labkit bench capstone`: the table of notebook 16 §5, on this machine, now."""
    from labkit.serve.workloads import sample_bodies, zipf_bodies

    gate = int8_holds()
    print(f"INT8 accuracy {gate['int8']:.4f} vs fp32 {gate['fp32']:.4f}: later steps use "
          f"{'INT8' if gate['holds'] else 'fp32'}", file=sys.stderr)
    skewed = zipf_bodies(sample_bodies("text", 512, seed=0), 4096, s=1.1, seed=0)
    table = run_capstone(ServeConfig(model="text", threads=1), skewed, args.slo_ms,
                         QUICK_RATES if args.quick else FULL_RATES, steps=capstone_steps(gate["holds"]),
                         duration_s=args.duration or (1.0 if args.quick else 3.0), refine=0 if args.quick else 1,
                         log=lambda line: print(line, file=sys.stderr))
    table["x_naive"] = table.goodput_rps / max(table.goodput_rps.iloc[0], 1e-9)
    print(table.to_json(orient="records") if args.json else table.round(2).to_string(index=False))
    return 0
