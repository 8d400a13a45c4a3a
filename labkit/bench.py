"""Timing helpers: repeated measurements, percentiles, batch-size sweeps, side-by-side comparisons.

Every speed-up the course claims is a ratio from `compare`, which runs the variants interleaved in one
run, so a noisy neighbour slows them all alike. Nothing here asserts a speed.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

Variant = Callable[[Any], object]  # takes one batch (a tensor, a list of texts, a numpy array…)
MakeInput = Callable[[int], Any]  # batch size -> one batch
STANDARD_BATCH_SIZES = (1, 8, 32, 64)
QUICK_BATCH_SIZES = (1, 32)


def time_calls(fn: Callable[[], object], repeats: int = 50, warmup: int = 5) -> np.ndarray:
    """Wall-clock milliseconds of `repeats` calls of fn after `warmup` unmeasured ones. Taught in 00_welcome."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")
    for _ in range(warmup):
        fn()
    samples_ms = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        samples_ms[i] = (time.perf_counter() - start) * 1e3
    return samples_ms


def percentiles(samples_ms: np.ndarray, qs: tuple[float, ...] = (50, 90, 99)) -> dict[str, float]:
    """{'p50_ms': …, 'p90_ms': …, 'p99_ms': …} plus mean and spread (max/min) of the samples."""
    samples_ms = np.asarray(samples_ms, dtype=float)
    if samples_ms.size == 0:
        raise ValueError("no timing samples")
    row = {f"p{q:g}_ms": float(np.percentile(samples_ms, q)) for q in qs}
    row["mean_ms"] = float(samples_ms.mean())
    row["max_over_min"] = float(samples_ms.max() / samples_ms.min()) if samples_ms.min() > 0 else float("inf")
    return row


def throughput_row(samples_ms: np.ndarray, batch_size: int) -> dict[str, float]:
    """percentiles() plus throughput_sps: samples per second at the median latency. Taught in 05_hardware_acceleration."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    row = percentiles(samples_ms)
    row["throughput_sps"] = batch_size / (row["p50_ms"] / 1e3) if row["p50_ms"] > 0 else float("inf")
    return row


# ------------------------------------------------------------------------------ side by side


def full_gc_ms() -> dict[str, float]:
    """How long one full cyclic-GC pass stops this process, before and after gc.freeze() (then unfrozen).

    A full pass walks every tracked object; after torch and a model are imported that is ~10^5 objects.
    gc.freeze() moves them to a permanent generation that passes skip. Taught in 09_async_serving.
    """
    import gc

    if gc.get_freeze_count():
        raise RuntimeError("objects are already frozen in this process: the 'before' time would be wrong")
    gc.collect()
    tracked = len(gc.get_objects())
    start = time.perf_counter()
    gc.collect()
    full_ms = (time.perf_counter() - start) * 1e3
    gc.freeze()
    try:
        start = time.perf_counter()
        gc.collect()
        frozen_ms = (time.perf_counter() - start) * 1e3
    finally:
        gc.unfreeze()
    return {"tracked_objects": tracked, "full_pass_ms": full_ms, "after_freeze_ms": frozen_ms}


def synchronizer(sync: bool | None) -> Callable[[], None]:
    """torch.cuda.synchronize when timing GPU work (None: whenever CUDA is in use), else a no-op."""
    if sync is None:
        sync = torch.cuda.is_available() and torch.cuda.is_initialized()
    return torch.cuda.synchronize if sync else (lambda: None)


def _timed(fn: Variant, batch: Any, wait: Callable[[], None]) -> float:
    """Milliseconds of one call, including the wait for queued GPU work."""
    start = time.perf_counter()
    fn(batch)
    wait()
    return (time.perf_counter() - start) * 1e3


def _check_compare_args(variants: dict, batch_sizes: Sequence[int], repeats: int, warmup: int,
                        baseline: str | None) -> None:
    if not variants:
        raise ValueError("variants is empty: give at least one {name: callable}")
    bad = [name for name, fn in variants.items() if not callable(fn)]
    if bad:
        raise ValueError(f"variants {bad} are not callable")
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be positive integers; got {list(batch_sizes)}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0; got repeats={repeats}, warmup={warmup}")
    if baseline is not None and baseline not in variants:
        raise ValueError(f"baseline {baseline!r} is not one of the variants {list(variants)}")


def compare(variants: dict[str, Variant], make_input: MakeInput, batch_sizes: Sequence[int] = (1,),
            repeats: int = 30, warmup: int = 5, baseline: str | None = None, sync: bool | None = None):
    """Time variants interleaved (round-robin, rotating order) at each batch size; a pandas DataFrame.

    Rows: variant, batch, p50/p90/p99/mean ms, max_over_min (spread), throughput_sps, and speedup =
    baseline p50 / variant p50 at the same batch (baseline: the first variant). Calls run under
    torch.no_grad(); pass modules in eval mode. Taught in 05_hardware_acceleration.
    """
    import pandas as pd

    _check_compare_args(variants, batch_sizes, repeats, warmup, baseline)
    baseline = baseline or next(iter(variants))
    names, wait, rows = list(variants), synchronizer(sync), []
    with torch.no_grad():
        for batch_size in batch_sizes:
            batch = make_input(int(batch_size))
            for name in names:
                for _ in range(warmup):
                    _timed(variants[name], batch, wait)
            samples = {name: np.empty(repeats) for name in names}
            for r in range(repeats):
                for k in range(len(names)):  # rotate the order so no variant always runs first
                    name = names[(r + k) % len(names)]
                    samples[name][r] = _timed(variants[name], batch, wait)
            base_p50 = float(np.percentile(samples[baseline], 50))
            for name in names:
                row = {"variant": name, "batch": int(batch_size), **throughput_row(samples[name], int(batch_size))}
                row["speedup"] = base_p50 / row["p50_ms"] if row["p50_ms"] > 0 else float("inf")
                rows.append(row)
    return pd.DataFrame(rows)


def sweep_batch_sizes(fn: Variant, make_input: MakeInput, batch_sizes: Sequence[int] = STANDARD_BATCH_SIZES,
                      repeats: int = 30, warmup: int = 5, sync: bool | None = None):
    """Latency percentiles and throughput of one callable (or eval-mode model) per batch size. Taught in 05_hardware_acceleration."""
    df = compare({"fn": fn}, make_input, batch_sizes, repeats, warmup, sync=sync)
    return df.drop(columns=["variant", "speedup"])


def plot_sweep(df, ax=None, title: str = ""):
    """Two panels vs batch size: p50 latency (band p50–p99) and throughput; one line per variant.

    ax: None (a new figure) or a pair of axes. Returns the pair. Taught in 05_hardware_acceleration.
    """
    import matplotlib.pyplot as plt

    missing = {"batch", "p50_ms", "p99_ms", "throughput_sps"} - set(df.columns)
    if missing:
        raise ValueError(f"plot_sweep needs columns {sorted(missing)} (a sweep_batch_sizes or compare table)")
    if ax is None:
        _, ax = plt.subplots(1, 2, figsize=(10, 3.2))
    ax_lat, ax_thr = ax
    groups = df.groupby("variant", sort=False) if "variant" in df.columns else [("", df)]
    for name, part in groups:
        part = part.sort_values("batch")
        line, = ax_lat.plot(part["batch"], part["p50_ms"], marker="o", label=f"{name} p50".strip())
        ax_lat.fill_between(part["batch"], part["p50_ms"], part["p99_ms"], color=line.get_color(), alpha=0.2)
        ax_thr.plot(part["batch"], part["throughput_sps"], marker="o", label=str(name) or None)
    batches = sorted(df["batch"].unique())
    for a, label in ((ax_lat, "latency per batch (ms); band to p99"), (ax_thr, "throughput (samples/s)")):
        a.set_xscale("log", base=2); a.set_xlabel("batch size"); a.set_ylabel(label)
        a.set_xticks(batches, [str(b) for b in batches])  # the measured sizes, not powers of two
    ax_lat.legend(fontsize=8)
    if "variant" in df.columns:
        ax_thr.legend(fontsize=8)
    ax_lat.figure.suptitle(title)
    ax_lat.figure.tight_layout()
    return ax_lat, ax_thr


# ------------------------------------------------------------------------------ the standard models

GRU_VOCAB, GRU_TOKENS = 1000, 32


def standard_models(seed: int = 0) -> dict[str, tuple[nn.Module, MakeInput]]:
    """The course's serving-relevant models (eval mode) with an input maker each. Taught in 05_hardware_acceleration."""
    from labkit.models import MLP, RNNClassifier, SmallCNN

    def token_ids(b: int) -> torch.Tensor:
        return torch.randint(2, GRU_VOCAB, (b, GRU_TOKENS), generator=torch.Generator().manual_seed(b))  # (B, T)

    def images(b: int) -> torch.Tensor:
        return torch.rand(b, 3, 32, 32, generator=torch.Generator().manual_seed(b))  # (B, 3, 32, 32)

    def features(b: int) -> torch.Tensor:
        return torch.rand(b, 784, generator=torch.Generator().manual_seed(b))  # (B, 784)

    with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's RNG state is left alone
        torch.manual_seed(seed)
        return {
            "gru text (emb 128, hidden 256, 32 tokens)": (
                RNNClassifier(GRU_VOCAB, embed_dim=128, hidden_dim=256, cell="gru").eval(), token_ids),
            "mlp 784-1024-1024-10": (MLP(784, hidden=(1024, 1024)).eval(), features),
            "small cnn 3x32x32": (SmallCNN(3, 12, image_size=32).eval(), images),
        }


def bench_models(batch_sizes: Sequence[int] = STANDARD_BATCH_SIZES, repeats: int = 30, warmup: int = 5,
                 seed: int = 0):
    """sweep_batch_sizes for every standard model in eager fp32 on CPU: one table. Taught in 05_hardware_acceleration."""
    import pandas as pd

    parts = []
    for name, (model, make_input) in standard_models(seed).items():
        df = sweep_batch_sizes(model, make_input, batch_sizes, repeats, warmup)
        parts.append(df.assign(model=name))
    cols = ["model", "batch", "p50_ms", "p90_ms", "p99_ms", "throughput_sps", "max_over_min"]
    return pd.concat(parts, ignore_index=True)[cols]


# ------------------------------------------------------------------------------ `labkit bench models`


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch sizes are comma-separated integers, e.g. 1,8,32; got {text!r}")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers; got {text!r}")
    return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `labkit bench models`."""
    parser.add_argument("--batch-sizes", type=_batch_sizes, default=None,
                        help=f"comma-separated (default {','.join(map(str, STANDARD_BATCH_SIZES))}; "
                             f"--quick: {','.join(map(str, QUICK_BATCH_SIZES))})")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per point (default 30; --quick: 10)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes and repeats (well under a minute)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    """Run the standard comparison and print it (a table, or JSON with --json); returns 0."""
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1; got {args.threads}")
    if args.repeats is not None and args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1; got {args.repeats}")
    batch_sizes = args.batch_sizes or (QUICK_BATCH_SIZES if args.quick else STANDARD_BATCH_SIZES)
    repeats = args.repeats or (10 if args.quick else 30)
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads or previous)
    try:
        threads = torch.get_num_threads()
        df = bench_models(batch_sizes, repeats, warmup=2 if args.quick else 5)
    finally:
        torch.set_num_threads(previous)
    if args.json:
        meta = {"torch": torch.__version__, "threads": threads, "repeats": repeats, "device": "cpu",
                "dtype": "float32", "mode": "eager"}
        print(json.dumps({**meta, "results": df.to_dict(orient="records")}))
    else:
        print(f"eager fp32 on cpu, {threads} thread(s), {repeats} timed calls per row (torch {torch.__version__})")
        print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def pareto(df: Any, cost: str, quality: str = "accuracy") -> list:
    """Index labels of the rows of a DataFrame that no other row beats on both cost (lower) and quality (higher).

    Ties on both columns keep every tied row. Taught in 06_model_compression.
    """
    c, q = df[cost].to_numpy(), df[quality].to_numpy()
    return [name for i, name in enumerate(df.index)
            if not ((c <= c[i]) & (q >= q[i]) & ((c < c[i]) | (q > q[i]))).any()]
