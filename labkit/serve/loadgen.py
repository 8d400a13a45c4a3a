"""Load generator: open-loop Poisson arrivals and closed-loop users. Taught in 09_async_serving.

Open loop: request i is launched at its *intended* time t_i (seeded exponential gaps), each as its own task,
whether or not earlier ones have answered, and its latency is measured from t_i. A slow server therefore
shows up as latency instead of silently lowering the offered load (no coordinated omission). If the
generator itself falls behind its schedule, the lag is recorded (`lag_p99_ms`), so a client bottleneck is
visible instead of being blamed on the server. Every request ends in exactly one outcome:
ok (2xx) / rejected (429, 503) / error (other status, connection error) / timeout.

The client is labkit's lean FastClient by default (client="fast"); client="aiohttp" runs the same load
over aiohttp, to measure what a heavier client costs when it shares the cores with the server.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import math
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

OUTCOMES = ("ok", "rejected", "error", "timeout")
REJECT_STATUSES = (429, 503)
GRACE_S = 1.0  # extra time after the last request's own timeout before the global deadline cancels the rest
HEADERS = {"Content-Type": "application/json"}
now = time.perf_counter  # not loop.time(): uvloop's clock ticks in whole milliseconds


@dataclass(slots=True)
class Record:
    """One request: times in seconds from the run's start, latency from the intended send time."""
    index: int
    intended_s: float   # when the request should have been sent
    sent_s: float       # when its task actually started (NaN if it never did)
    latency_ms: float   # completion - intended (open loop) / completion - send (closed loop)
    status: int         # HTTP status, 0 when there was no response
    outcome: str        # one of OUTCOMES
    batch_size: int = 0  # the server's "batch_size" for an ok answer, 0 when unknown
    error: str = ""      # exception class name for errors/timeouts


@dataclass
class LoadResult:
    """Every request's record plus how the run was configured. Taught in 09_async_serving."""
    records: list[Record]
    mode: str                     # "open" | "closed"
    config: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        counts = self.counts()
        if sum(counts.values()) != len(self.records):  # nothing may go missing or be counted twice
            raise RuntimeError(f"request accounting broken: {counts} vs {len(self.records)} sent")

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(OUTCOMES, 0)
        for r in self.records:
            out[r.outcome] += 1
        return out

    def to_frame(self):
        """One row per request (pandas DataFrame)."""
        import pandas as pd

        return pd.DataFrame([asdict(r) for r in self.records], columns=list(Record.__dataclass_fields__))

    def elapsed_s(self) -> float:
        """From the start to the last completion (at least to the last intended send)."""
        ends = [r.intended_s + r.latency_ms / 1e3 for r in self.records]
        return max(ends + [r.intended_s for r in self.records] + [1e-9])

    def summary(self, slo_ms: float | None = None) -> dict:
        """Counts, rates (req/s) and latency percentiles (ms); goodput = ok within slo_ms per second."""
        counts, elapsed = self.counts(), self.elapsed_s()
        lat = np.array([r.latency_ms for r in self.records if r.outcome == "ok"])
        rej = np.array([r.latency_ms for r in self.records if r.outcome == "rejected"])
        lag = np.array([(r.sent_s - r.intended_s) * 1e3 for r in self.records if not math.isnan(r.sent_s)])
        good = int((lat <= slo_ms).sum()) if slo_ms is not None else counts["ok"]
        sent = len(self.records)
        rate = self.config.get("rate")
        batches = [r.batch_size for r in self.records if r.batch_size > 0]
        return {"mode": self.mode, "sent": sent, **counts,
                "offered_rps": float(rate) if rate else sent / elapsed,
                "throughput_rps": counts["ok"] / elapsed, "goodput_rps": good / elapsed, "slo_ms": slo_ms,
                "p50_ms": _pct(lat, 50), "p90_ms": _pct(lat, 90), "p99_ms": _pct(lat, 99),
                "p999_ms": _pct(lat, 99.9),
                "rejection_rate": counts["rejected"] / max(sent, 1), "reject_p99_ms": _pct(rej, 99),
                "failed_fraction": (sent - counts["ok"]) / max(sent, 1),
                "mean_batch_size": float(np.mean(batches)) if batches else float("nan"),
                "lag_p99_ms": _pct(lag, 99), "lag_max_ms": float(lag.max()) if lag.size else float("nan"),
                "elapsed_s": elapsed}

    def to_json(self, path: str | Path, slo_ms: float | None = None) -> Path:
        """Write {"config", "summary", "records"} as JSON."""
        doc = {"config": self.config, "summary": self.summary(slo_ms),
               "records": [asdict(r) for r in self.records]}
        Path(path).write_text(json.dumps(jsonable(doc), default=str))
        return Path(path)

    def to_csv(self, path: str | Path) -> Path:
        """Write one CSV row per request."""
        self.to_frame().to_csv(path, index=False)
        return Path(path)


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if x.size else float("nan")


def jsonable(x):
    """NaN -> None (JSON has no NaN), recursively; numpy scalars -> Python numbers."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    return None if isinstance(x, float) and math.isnan(x) else x


# ---------------------------------------------------------------- inputs


def poisson_arrivals(rate: float, *, count: int | None = None, duration_s: float | None = None,
                     seed: int = 0) -> np.ndarray:
    """Intended send times (s) of a Poisson process at `rate` req/s: `count` of them and/or within duration_s."""
    _check_stop(count, duration_s)
    if not rate > 0:
        raise ValueError(f"rate must be > 0 req/s; got {rate}")
    n = count if count is not None else int(rate * duration_s + 10 * math.sqrt(rate * duration_s) + 10)
    times = np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, size=n))
    return times[times < duration_s] if duration_s is not None else times


def sample_bodies(model: str = "text", n: int = 64, items: int = 1, seed: int = 0) -> list[bytes]:
    """n distinct /predict bodies of `items` inputs each: corpus sentences or 3x32x32 shape images."""
    from labkit.data import generate_negation_corpus, generate_shapes

    if model not in ("text", "image"):
        raise ValueError(f"model must be 'text' or 'image'; got {model!r}")
    if n < 1 or items < 1:
        raise ValueError(f"n and items must be >= 1; got n={n}, items={items}")
    if model == "text":
        inputs = [s for s, _ in generate_negation_corpus(n * items, seed)]
    else:
        X, _ = generate_shapes(math.ceil(n * items / 4), seed)            # (N, 32, 32, 3) uint8, 4 classes
        inputs = np.round(X.transpose(0, 3, 1, 2) / 255, 3).tolist()      # (N, 3, 32, 32) in [0, 1]
    return [json.dumps({"inputs": inputs[i * items:(i + 1) * items]}).encode() for i in range(n)]


def zipf_bodies(distinct: Sequence[bytes], n: int, s: float = 1.1, seed: int = 0) -> list[bytes]:
    """n bodies drawn from `distinct` with P(rank k) ∝ 1/k^s: a skewed workload where caching pays."""
    if not distinct or n < 1 or s < 0:
        raise ValueError(f"need distinct bodies, n >= 1 and s >= 0; got {len(distinct)}, n={n}, s={s}")
    p = 1.0 / np.arange(1, len(distinct) + 1) ** s
    idx = np.random.default_rng(seed).choice(len(distinct), size=n, p=p / p.sum())
    return [distinct[i] for i in idx]


def _check_stop(count: int | None, duration_s: float | None) -> None:
    if count is None and duration_s is None:
        raise ValueError("give count or duration_s (or both): a load run must stop by itself")
    if count is not None and count < 1:
        raise ValueError(f"count must be >= 1; got {count}")
    if duration_s is not None and not duration_s > 0:
        raise ValueError(f"duration_s must be > 0; got {duration_s}")


def _check_common(bodies: Sequence[bytes], timeout_s: float) -> list[bytes]:
    if not bodies:
        raise ValueError("bodies is empty: give at least one request body")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0; got {timeout_s}")
    return [b if isinstance(b, bytes) else str(b).encode() for b in bodies]


# ---------------------------------------------------------------- the async core


CLIENTS = ("fast", "aiohttp")


class _AiohttpClient:
    """aiohttp behind FastClient's interface: `await post(body) -> (status, body)`."""

    def __init__(self, url: str, connections: int):
        import aiohttp

        connector = aiohttp.TCPConnector(limit=connections, limit_per_host=0, keepalive_timeout=30)
        self.url = url
        self.session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                             timeout=aiohttp.ClientTimeout(total=None))

    async def __aenter__(self) -> "_AiohttpClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()

    async def post(self, body: bytes) -> tuple[int, bytes]:
        async with self.session.post(self.url, data=body, headers=HEADERS) as resp:
            return resp.status, await resp.read()


def make_client(url: str, connections: int, client: str = "fast"):
    """An async-context client with `await post(body) -> (status, body)`: FastClient or aiohttp."""
    if client == "fast":
        from labkit.serve.httpclient import FastClient

        return FastClient(url, connections)
    if client == "aiohttp":
        return _AiohttpClient(url, connections)
    raise ValueError(f"client must be one of {CLIENTS}; got {client!r}")


async def _request(http, body: bytes, index: int, start: float, intended: float, timeout_s: float) -> Record:
    """Send one POST; always return a Record, whatever happens."""
    sent, status, batch, error = now(), 0, 0, ""
    try:
        async with asyncio.timeout(timeout_s):
            status, payload = await http.post(body)
        outcome = "ok" if 200 <= status < 300 else "rejected" if status in REJECT_STATUSES else "error"
        if outcome == "ok":
            batch = _batch_size(payload)
    except TimeoutError as err:
        outcome, error = "timeout", type(err).__name__
    except Exception as err:  # connection refused/reset, bad payload: an error, never a lost request
        outcome, error = "error", type(err).__name__
    latency_ms = (now() - intended) * 1e3
    return Record(index, intended - start, sent - start, latency_ms, status, outcome, batch, error)


def _batch_size(payload: bytes) -> int:
    try:
        return int(json.loads(payload).get("batch_size", 0))
    except (ValueError, AttributeError, TypeError):
        return 0


async def _finish(tasks: list[asyncio.Task], deadline: float) -> None:
    """Wait for tasks until the global deadline, then cancel the rest (their records become timeouts)."""
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - now()))
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _cancelled(index: int, start: float, intended: float, done: float) -> Record:
    return Record(index, intended - start, float("nan"), (done - intended) * 1e3, 0, "timeout", 0, "deadline")


async def open_loop(url: str, bodies: Sequence[bytes], rate: float, *, count: int | None = None,
                    duration_s: float | None = None, timeout_s: float = 5.0, seed: int = 0,
                    connections: int = 256, deadline_s: float | None = None, client: str = "fast") -> LoadResult:
    """Poisson arrivals at `rate` req/s; request i sends bodies[i % len(bodies)]. Taught in 09_async_serving."""
    bodies = _check_common(bodies, timeout_s)
    arrivals = poisson_arrivals(rate, count=count, duration_s=duration_s, seed=seed)
    records: list[Record | None] = [None] * len(arrivals)

    async def one(i: int, intended: float) -> None:
        records[i] = await _request(http, bodies[i % len(bodies)], i, start, intended, timeout_s)

    async with make_client(url, connections, client) as http:
        start = now() + 0.005
        end = start + (deadline_s if deadline_s is not None else
                       (arrivals[-1] if len(arrivals) else 0.0) + timeout_s + GRACE_S)
        tasks = []
        for i, t in enumerate(arrivals):
            if now() >= end:
                break
            delay = start + t - now()
            if delay > 0:
                await asyncio.sleep(delay)
            elif i % 16 == 0:  # behind schedule: launch in bursts, but let started requests progress
                await asyncio.sleep(0)
            tasks.append(asyncio.create_task(one(i, start + float(t))))
        await _finish(tasks, end)
    done = now()
    records = [r or _cancelled(i, start, start + float(arrivals[i]), done) for i, r in enumerate(records)]
    cfg = dict(url=url, rate=rate, count=count, duration_s=duration_s, timeout_s=timeout_s, seed=seed,
               connections=connections, distinct_bodies=len(bodies), client=client)
    return LoadResult(records, "open", cfg)


async def closed_loop(url: str, bodies: Sequence[bytes], users: int, *, count: int | None = None,
                      duration_s: float | None = None, timeout_s: float = 5.0,
                      deadline_s: float | None = None, client: str = "fast") -> LoadResult:
    """`users` concurrent users, each sending its next request when the last one answers (no think time)."""
    bodies = _check_common(bodies, timeout_s)
    _check_stop(count, duration_s)
    if users < 1:
        raise ValueError(f"users must be >= 1; got {users}")
    counter = itertools.count()
    records: list[Record] = []
    inflight: dict[int, float] = {}

    async def user() -> None:
        while (i := next(counter)) < (count if count is not None else sys.maxsize) and now() < stop:
            inflight[i] = t = now()
            records.append(await _request(http, bodies[i % len(bodies)], i, start, t, timeout_s))
            del inflight[i]

    async with make_client(url, users, client) as http:
        start = now()
        stop = start + duration_s if duration_s is not None else math.inf
        if deadline_s is None:
            per_user = math.ceil(count / users) * timeout_s if count is not None else 0.0
            deadline_s = min(duration_s or math.inf, per_user or math.inf) + timeout_s + GRACE_S
        await _finish([asyncio.create_task(user()) for _ in range(users)], start + deadline_s)
    done = now()
    records += [_cancelled(i, start, t, done) for i, t in inflight.items()]
    records.sort(key=lambda r: r.index)
    cfg = dict(url=url, users=users, count=count, duration_s=duration_s, timeout_s=timeout_s,
               distinct_bodies=len(bodies), client=client)
    return LoadResult(records, "closed", cfg)


# ---------------------------------------------------------------- sync wrappers (usable inside Jupyter)


def _run_in_thread(make_coro: Callable[[], object]):
    """Run a fresh event loop (uvloop when installed) in a worker thread: works under a running loop too."""
    box: dict = {}

    def target() -> None:
        try:
            import uvloop
            factory = uvloop.new_event_loop
        except ImportError:
            factory = None
        try:
            with asyncio.Runner(loop_factory=factory) as runner:
                box["value"] = runner.run(make_coro())
        except BaseException as err:  # re-raised in the caller's thread
            box["error"] = err

    # The run allocates many short-lived objects; a cyclic-GC pass over them can stall the client for
    # 100+ ms and show up as server latency. Measured at 1,200 req/s here: p99 388 ms with the collector on,
    # 170 ms off, and the client's lag behind schedule 162 ms vs 21 ms. Collect once, afterwards, instead.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        worker = threading.Thread(target=target, name="labkit-loadgen", daemon=True)
        worker.start()
        worker.join()
    finally:
        if was_enabled:
            gc.enable()
    if "error" in box:
        raise box["error"]
    return box["value"]


def run_open_loop(url: str, bodies: Sequence[bytes], rate: float, **kwargs) -> LoadResult:
    """Sync twin of open_loop (same keyword arguments). Taught in 09_async_serving."""
    return _run_in_thread(lambda: open_loop(url, bodies, rate, **kwargs))


def run_closed_loop(url: str, bodies: Sequence[bytes], users: int, **kwargs) -> LoadResult:
    """Sync twin of closed_loop (same keyword arguments). Taught in 09_async_serving."""
    return _run_in_thread(lambda: closed_loop(url, bodies, users, **kwargs))


# ---------------------------------------------------------------- sweeps and the SLO search


def sweep_open_loop(url: str, bodies: Sequence[bytes], rates: Sequence[float], *, duration_s: float = 2.0,
                    slo_ms: float | None = None, timeout_s: float = 5.0, seed: int = 0, **kwargs):
    """One open-loop run per offered rate; a DataFrame of summaries indexed by offered_rps."""
    import pandas as pd

    rows = [run_open_loop(url, bodies, r, duration_s=duration_s, timeout_s=timeout_s, seed=seed + k,
                          **kwargs).summary(slo_ms) for k, r in enumerate(rates)]
    return pd.DataFrame(rows).set_index("offered_rps")


def client_cost(url: str, bodies: Sequence[bytes], client: str = "fast", users: int = 32,
                duration_s: float = 1.0) -> dict:
    """Closed-loop req/s through `client`, and the CPU this process spent per request (us): what the load
    generator itself costs. Run it against a --no-model server. Taught in 09_async_serving."""
    cpu = time.process_time()
    s = run_closed_loop(url, bodies, users, duration_s=duration_s, timeout_s=5.0, client=client).summary()
    cpu = time.process_time() - cpu
    return {"client": client, "sent": s["sent"], "ok": s["ok"], "throughput_rps": s["throughput_rps"],
            "cpu_us_per_request": cpu / max(s["sent"], 1) * 1e6}


def meets_slo(summary: dict, slo_ms: float, max_failed: float = 0.01) -> bool:
    """p99 of ok requests within slo_ms and at most max_failed of requests rejected/errored/timed out."""
    return summary["ok"] > 0 and summary["p99_ms"] <= slo_ms and summary["failed_fraction"] <= max_failed


@dataclass
class GoodputSearch:
    """The highest offered rate that met the SLO, the goodput measured there, and every run's summary."""
    rate_rps: float
    goodput_rps: float
    table: object  # DataFrame: one row per run, with a "meets_slo" column


def goodput_at_slo(url: str, bodies: Sequence[bytes], slo_ms: float, rates: Sequence[float], *,
                   duration_s: float = 2.0, refine: int = 0, max_failed: float = 0.01, patience: int = 2,
                   **kwargs) -> GoodputSearch:
    """Scan increasing rates until `patience` misses in a row (one noisy probe does not end the scan), then
    bisect `refine` times between the best rate that met the SLO and the next one that missed it.
    Taught in 09_async_serving."""
    import pandas as pd

    rates = sorted(float(r) for r in rates)
    if not rates or not slo_ms > 0 or patience < 1:
        raise ValueError(f"need rates, slo_ms > 0 and patience >= 1; got {rates}, {slo_ms}, {patience}")
    rows: list[dict] = []

    def probe(rate: float) -> bool:
        s = run_open_loop(url, bodies, rate, duration_s=duration_s, seed=len(rows), **kwargs).summary(slo_ms)
        rows.append({**s, "meets_slo": meets_slo(s, slo_ms, max_failed)})
        return rows[-1]["meets_slo"]

    misses = 0
    for rate in rates:
        misses = 0 if probe(rate) else misses + 1
        if misses >= patience:
            break
    for _ in range(refine):
        passed = [r for r in rows if r["meets_slo"]]
        best = max(passed, key=lambda r: r["offered_rps"]) if passed else None
        above = [r["offered_rps"] for r in rows if not r["meets_slo"] and best and r["offered_rps"] > best["offered_rps"]]
        if best is None or not above:
            break
        probe((best["offered_rps"] + min(above)) / 2)
    table = pd.DataFrame(rows)
    passed = [r for r in rows if r["meets_slo"]]
    if not passed:
        return GoodputSearch(0.0, 0.0, table)
    best = max(passed, key=lambda r: r["offered_rps"])
    return GoodputSearch(best["offered_rps"], best["goodput_rps"], table)


def scrape_metrics(base_url: str) -> dict[str, float]:
    """A server's /metrics as {'name{label="v"}': value} (unlabelled samples keyed by bare name)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(base_url.rstrip("/") + "/metrics", timeout=10).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


# ---------------------------------------------------------------- plots


def plot_latency_vs_load(tables: dict, slo_ms: float | None = None, ax=None):
    """p50 (dashed) and p99 (solid) latency against offered load, one colour per configuration."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for name, df in tables.items():
        x = df["offered_rps"] if "offered_rps" in df else df.index
        line, = ax.plot(x, df["p99_ms"], "o-", label=f"{name} p99")
        ax.plot(x, df["p50_ms"], "--", color=line.get_color(), alpha=0.6, label=f"{name} p50")
    if slo_ms is not None:
        ax.axhline(slo_ms, color="gray", lw=1, ls=":", label=f"SLO {slo_ms:g} ms")
    ax.set_yscale("log"); ax.set_xlabel("offered load (req/s)"); ax.set_ylabel("latency (ms)")
    ax.legend(fontsize=7)
    return ax


def plot_latency_over_time(result: LoadResult, ax=None):
    """Each request's latency at its intended send time, coloured by outcome."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    df = result.to_frame()
    for outcome, group in df.groupby("outcome"):
        ax.plot(group["intended_s"], group["latency_ms"], ".", ms=3, label=f"{outcome} ({len(group)})")
    ax.set_yscale("log"); ax.set_xlabel("intended send time (s)"); ax.set_ylabel("latency (ms)")
    ax.legend(fontsize=7)
    return ax


# ---------------------------------------------------------------- `labkit loadtest`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `labkit loadtest URL`."""
    parser.add_argument("url", help="server URL; a bare http://host:port gets /predict appended")
    load = parser.add_mutually_exclusive_group(required=True)
    load.add_argument("--rate", type=float, help="open loop: Poisson arrivals at this many req/s")
    load.add_argument("--users", type=int, help="closed loop: this many concurrent users")
    parser.add_argument("--count", type=int, help="number of requests")
    parser.add_argument("--duration", type=float, help="seconds of load (with --count: whichever ends first)")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-request timeout in seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--connections", type=int, default=256, help="open loop: client connection pool size")
    parser.add_argument("--client", choices=CLIENTS, default="fast", help="HTTP client: labkit's lean one or aiohttp")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--body-file", type=Path, help="a JSON body, or JSON Lines with one body per line")
    src.add_argument("--model", choices=("text", "image"), default="text", help="build sample bodies")
    parser.add_argument("--items", type=int, default=1, help="inputs per request for --model bodies")
    parser.add_argument("--slo-ms", type=float, help="latency SLO for goodput")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--csv", type=Path, help="write one row per request to this CSV file")
    parser.add_argument("--out-json", type=Path, help="write config, summary and records to this JSON file")


def read_bodies(path: Path) -> list[bytes]:
    """Bodies from a file holding one JSON document or JSON Lines (one body per line)."""
    text = Path(path).read_text()
    try:
        json.loads(text)
        return [text.strip().encode()]
    except ValueError:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        for n, line in enumerate(lines, 1):
            try:
                json.loads(line)
            except ValueError as err:
                raise ValueError(f"{path}: line {n} is not JSON ({err})") from None
        return [ln.encode() for ln in lines]


def run(args: argparse.Namespace) -> int:
    """Carry out `labkit loadtest`: run the load, print the summary, write the files asked for."""
    from urllib.parse import urlsplit

    url = args.url if urlsplit(args.url).path not in ("", "/") else args.url.rstrip("/") + "/predict"
    bodies = read_bodies(args.body_file) if args.body_file else sample_bodies(args.model, items=args.items,
                                                                              seed=args.seed)
    common = dict(count=args.count, duration_s=args.duration, timeout_s=args.timeout, client=args.client)
    if args.rate is not None:
        result = run_open_loop(url, bodies, args.rate, seed=args.seed, connections=args.connections, **common)
    else:
        result = run_closed_loop(url, bodies, args.users, **common)
    summary = result.summary(args.slo_ms)
    if args.json:
        print(json.dumps(jsonable(summary)))
    else:
        for key, value in summary.items():
            print(f"{key:>16}: {value:.2f}" if isinstance(value, float) else f"{key:>16}: {value}")
    if args.csv:
        result.to_csv(args.csv)
    if args.out_json:
        result.to_json(args.out_json, args.slo_ms)
    return 0
