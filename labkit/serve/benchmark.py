"""`labkit bench serving`: the serving bounds, and what the naive and batched servers reach under a p99 SLO.

One run, one machine, side by side:
  (a) r_model  in-process batched forward throughput at the server's max batch (no HTTP at all);
  (b) r_http   the same server stack with --no-model, driven by the same load generator (closed loop);
  (c) bound    B = 1 / (1/r_model + 1/r_http): model and HTTP share the same cores, so their costs add;
  (d) naive    (--no-batching) goodput at p99 <= SLO: the highest open-loop rate that meets the SLO;
  (e) batched  goodput at p99 <= SLO, same search.
Batched / naive says what batching buys; batched / B how close the server gets to its bound.
Taught in 09_async_serving.
"""
from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from labkit.serve.config import ENGINES, ServeConfig
from labkit.serve.loadgen import run_closed_loop
from labkit.serve.records import jsonable
from labkit.serve.slo import GoodputSearch, goodput_at_slo
from labkit.serve.workloads import sample_bodies

DEFAULT_SLO_MS = 50.0  # the SLO: p99 <= 50 ms for admitted requests
BOUND_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1.05)  # offered rates probed, as fractions of each server's bound


@dataclass(frozen=True)
class BenchConfig:
    """What `labkit bench serving` runs; the server flags are the batched server's (naive = --no-batching)."""
    slo_ms: float = DEFAULT_SLO_MS
    model: str = "text"
    max_batch: int = 64          # rows per forward (also the batch r_model is measured at)
    max_wait_ms: float = 2.0     # how long a batch may wait to fill
    engine: str = "onnx"         # ONNX Runtime releases the GIL for the whole forward; "torch" = eager PyTorch
    threads: int = 1             # intra-op threads in the server: 1 leaves a core for HTTP + client
    queue_limit: int = 256
    duration_s: float = 3.0      # seconds of open-loop load per probed rate
    refine: int = 2              # bisection steps between the last rate that met the SLO and the first that did not
    http_users: int = 64         # closed-loop users that saturate the --no-model server
    repeats: int = 30            # timed forwards for r_model
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("slo_ms", "duration_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")
        if self.refine < 0 or self.http_users < 1 or self.repeats < 1:
            raise ValueError(f"need refine >= 0, http_users >= 1, repeats >= 1; got {self.refine}, "
                             f"{self.http_users}, {self.repeats}")

    def server(self, **changes) -> ServeConfig:
        """The batched server's config (with changes)."""
        base = ServeConfig(model=self.model, max_batch=self.max_batch, max_wait_ms=self.max_wait_ms,
                           engine=self.engine, threads=self.threads, queue_limit=self.queue_limit)
        return base.replace(**changes)


QUICK = dict(duration_s=1.0, refine=1, repeats=10)  # --quick: the CI smoke run (<~60 s on an idle machine)


def model_bound(model: str = "text", batch: int = 64, threads: int = 1, repeats: int = 30,
                seed: int = 0, engine: str = BenchConfig.engine) -> dict[str, float]:
    """In-process forward throughput (rows/s) at `batch` and at batch 1, on `threads` threads of `engine`."""
    import torch

    from labkit.bench import percentiles, time_calls
    from labkit.serve.engines import make_forward
    from labkit.serve.lifecycle import load_model

    loaded = load_model(model, evaluate=False)
    inputs = [json.loads(b)["inputs"][0] for b in sample_bodies(model, n=batch, seed=seed)]
    x = loaded.preprocess(inputs)  # (batch, ...)
    forward = make_forward(model, loaded.model, loaded.weights, engine, threads)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        p_batch = percentiles(time_calls(lambda: forward(x), repeats=repeats))
        p_one = percentiles(time_calls(lambda: forward(x[:1]), repeats=repeats))
    finally:
        torch.set_num_threads(before)
    return {"r_model": batch / (p_batch["p50_ms"] / 1e3), "r_model_batch1": 1 / (p_one["p50_ms"] / 1e3),
            "forward_ms": p_batch["p50_ms"], "forward_batch1_ms": p_one["p50_ms"]}


def combined_bound(*rates_rps: float) -> float:
    """1 / sum(1 / r): stages that share the same cores add their per-request costs."""
    if not rates_rps or any(not r > 0 for r in rates_rps):
        raise ValueError(f"rates must be > 0; got {rates_rps}")
    return 1.0 / sum(1.0 / r for r in rates_rps)


@contextmanager
def running(*configs: ServeConfig, startup_timeout_s: float = 240.0):
    """Start one server per config at once (start-up is mostly single-threaded imports, so two cores start
    two servers about as fast as one), yield the ServerProcesses, and stop every one of them on exit."""
    from concurrent.futures import ThreadPoolExecutor

    from labkit.serve.process import ServerProcess

    servers = [ServerProcess(c, startup_timeout_s=startup_timeout_s) for c in configs]
    try:
        with ThreadPoolExecutor(max(1, len(servers))) as pool:
            for future in [pool.submit(s.start) for s in servers]:
                future.result()
        yield servers
    finally:  # stop them all at once too: each waits for its in-flight answers
        with ThreadPoolExecutor(max(1, len(servers))) as pool:
            list(pool.map(lambda server: server.stop(), servers))


def _warm_up(url: str, bodies: list[bytes]) -> None:
    """A short closed-loop burst: first requests pay lazy initialisation, not the measurement."""
    run_closed_loop(url, bodies, users=8, duration_s=0.5, timeout_s=5.0)


def http_bound(url: str, bodies: list[bytes], users: int = 64, duration_s: float = 3.0) -> float:
    """Closed-loop throughput (req/s) of the server at `url` (a --no-model server measures the HTTP bound)."""
    _warm_up(url, bodies)
    return run_closed_loop(url, bodies, users, duration_s=duration_s, timeout_s=5.0).summary()["throughput_rps"]


def server_goodput(url: str, bodies: list[bytes], slo_ms: float, bound_rps: float, duration_s: float = 3.0,
                   refine: int = 2) -> GoodputSearch:
    """Goodput at p99 <= slo_ms of the server at `url`, probing fractions of its bound_rps (req/s)."""
    _warm_up(url, bodies)
    rates = [round(f * bound_rps, 1) for f in BOUND_FRACTIONS]
    return goodput_at_slo(url, bodies, slo_ms, rates, duration_s=duration_s, refine=refine, timeout_s=5.0)


def bench_serving(bench: BenchConfig = BenchConfig(), log=print) -> dict:
    """All five measurements and the two ratios, as one dict (the --json output). Taught in 09_async_serving."""
    start = time.perf_counter()
    bodies = sample_bodies(bench.model, n=256, seed=bench.seed)
    batched, naive = bench.server(), bench.server(batching=False)
    m = model_bound(bench.model, bench.max_batch, bench.threads, bench.repeats, bench.seed, bench.engine)
    log(f"r_model measured: {m['r_model']:.0f} rows/s at batch {bench.max_batch}")
    with running(batched.replace(no_model=True), naive, batched) as (http_server, naive_server, batched_server):
        r_http = http_bound(http_server.url + "/predict", bodies, bench.http_users, bench.duration_s)
        log(f"r_http measured: {r_http:.0f} req/s")
        bound, bound_naive = combined_bound(m["r_model"], r_http), combined_bound(m["r_model_batch1"], r_http)
        found_naive = server_goodput(naive_server.url + "/predict", bodies, bench.slo_ms, bound_naive,
                                     bench.duration_s, bench.refine)
        log(f"naive goodput measured: {found_naive.goodput_rps:.0f} req/s")
        found = server_goodput(batched_server.url + "/predict", bodies, bench.slo_ms, bound, bench.duration_s,
                               bench.refine)
    return {"slo_ms": bench.slo_ms, "r_model": m["r_model"], "r_http": r_http, "bound": bound,
            "naive_goodput": found_naive.goodput_rps, "batched_goodput": found.goodput_rps,
            "batched_over_naive": found.goodput_rps / found_naive.goodput_rps if found_naive.goodput_rps else None,
            "batched_over_bound": found.goodput_rps / bound,
            "naive_rate": found_naive.rate_rps, "batched_rate": found.rate_rps,
            "r_model_batch1": m["r_model_batch1"], "naive_bound": bound_naive,
            "forward_ms": m["forward_ms"], "forward_batch1_ms": m["forward_batch1_ms"],
            "batched_server": batched.to_args(), "naive_server": naive.to_args(),
            "bench": asdict(bench), "seconds": time.perf_counter() - start,
            "naive_runs": found_naive.table.to_dict("records"), "batched_runs": found.table.to_dict("records")}


def format_report(result: dict) -> list[str]:
    """The human-readable lines: each measurement and the two ratios, one per line."""
    ratio = result["batched_over_naive"]
    return [f"slo: p99 <= {result['slo_ms']:g} ms",
            f"r_model: {result['r_model']:.0f} req/s (in-process forward at batch {result['bench']['max_batch']}, "
            f"{result['bench']['engine']}, {result['bench']['threads']} thread(s))",
            f"r_http: {result['r_http']:.0f} req/s (--no-model server, closed loop)",
            f"bound: {result['bound']:.0f} req/s (1 / (1/r_model + 1/r_http))",
            f"naive_goodput: {result['naive_goodput']:.0f} req/s at p99 <= {result['slo_ms']:g} ms (--no-batching)",
            f"batched_goodput: {result['batched_goodput']:.0f} req/s at p99 <= {result['slo_ms']:g} ms "
            f"({' '.join(result['batched_server']) or 'defaults'})",
            f"batched/naive: {ratio:.2f}" if ratio is not None else "batched/naive: n/a (naive goodput 0)",
            f"batched/bound: {result['batched_over_bound']:.2f}",
            f"seconds: {result['seconds']:.0f}"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `labkit bench serving`."""
    d = BenchConfig()
    parser.add_argument("--slo-ms", type=float, default=d.slo_ms, help=f"p99 SLO (default {d.slo_ms:g} ms)")
    parser.add_argument("--model", choices=("text", "image"), default=d.model)
    parser.add_argument("--max-batch", type=int, default=d.max_batch)
    parser.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms)
    parser.add_argument("--engine", choices=ENGINES, default=d.engine, help=f"forward engine (default {d.engine})")
    parser.add_argument("--threads", type=int, default=d.threads, help="intra-op threads in the server")
    parser.add_argument("--queue-limit", type=int, default=d.queue_limit)
    parser.add_argument("--duration", type=float, help=f"seconds per probed rate (default {d.duration_s:g})")
    parser.add_argument("--refine", type=int, help=f"bisection steps (default {d.refine})")
    parser.add_argument("--quick", action="store_true", help="short probes for CI (~1 minute)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    quick = QUICK if args.quick else {}
    overrides = {k: v for k, v in (("duration_s", args.duration), ("refine", args.refine)) if v is not None}
    return BenchConfig(slo_ms=args.slo_ms, model=args.model, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                       engine=args.engine, threads=args.threads, queue_limit=args.queue_limit, **{**quick, **overrides})


def run(args: argparse.Namespace) -> int:
    """Carry out `labkit bench serving`."""
    import sys

    bench = config_from_args(args)
    result = bench_serving(bench, log=lambda line: print(line, file=sys.stderr))
    if args.json:
        print(json.dumps(jsonable({k: v for k, v in result.items() if not k.endswith("_runs")})))
    else:
        print("\n".join(format_report(result)))
    return 0
