"""What data parallel synchronization costs: compute vs all-reduce per step, buckets, accumulation, bytes.

Functions named `*_on_rank` run inside a rank (launch.Cluster.run or launch.spawn). Times are medians of a few
steps in milliseconds, each step started at a barrier so both ranks time the same thing. On a machine with
fewer free cores than ranks the ranks also compete for CPU: read every time here as "this machine, this run".
Taught in 08_distributed_training.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel as DDP

from labkit.distributed.ddp import DDPConfig, loader_for_rank, make_model, steps_of


def ring_bytes_per_rank(size_bytes: float, world_size: int) -> float:
    """Bytes each rank sends in a ring all-reduce: reduce-scatter then all-gather, 2(n-1)/n of the tensor."""
    return 2 * (world_size - 1) / world_size * size_bytes


def sent_bytes() -> int:
    """Bytes this process has written through write-like system calls (Linux /proc/self/io wchar; gloo's sends)."""
    with open("/proc/self/io") as f:
        fields = dict(line.split(": ") for line in f.read().splitlines())
    return int(fields["wchar"])


def allreduce_bytes_on_rank(rank: int, world_size: int, numel: int, repeats: int = 5) -> dict:
    """All-reduce a float32 tensor of `numel` elements `repeats` times: bytes this rank sent per call vs the formula."""
    tensor = torch.ones(numel)
    dist.all_reduce(tensor)  # warm-up: connections and buffers set up outside the count
    dist.barrier()
    before = sent_bytes()
    for _ in range(repeats):
        dist.all_reduce(tensor)
    measured = (sent_bytes() - before) / repeats
    size = numel * tensor.element_size()
    return {"tensor_bytes": size, "ring_formula_bytes": ring_bytes_per_rank(size, world_size),
            "measured_bytes": measured}


@dataclass
class CommCounter:
    """What a DDP comm hook saw: all-reduce calls (one per bucket per synced backward) and their bytes."""
    calls: int = 0
    bytes: int = 0


def counting_allreduce(counter: CommCounter, bucket):  # no annotations: DDP compares them as objects, not strings
    """DDP comm hook: count the bucket (a dist.GradBucket), then DDP's own averaging all-reduce (a Future)."""
    buffer = bucket.buffer()
    counter.calls += 1
    counter.bytes += buffer.numel() * buffer.element_size()
    return default_hooks.allreduce_hook(None, bucket)


def _timed(fn, repeats: int) -> float:
    """Median milliseconds of fn() over repeats, each started at a barrier."""
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _ddp(config: DDPConfig, counter: CommCounter | None = None) -> DDP:
    model = DDP(make_model(config), bucket_cap_mb=config.bucket_cap_mb)
    if counter is not None:
        model.register_comm_hook(counter, counting_allreduce)
    return model


def step_costs_on_rank(rank: int, world_size: int, X: torch.Tensor, y: torch.Tensor, config: DDPConfig,
                       repeats: int = 10) -> dict:
    """Per step: backward without sync (pure compute), with DDP's all-reduce, and the all-reduce alone."""
    model = _ddp(config)
    xb, yb = next(iter(loader_for_rank(X, y, config, rank, world_size)))

    def backward() -> None:
        model.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()

    def compute_only() -> None:
        with model.no_sync():  # DDP skips the all-reduce: what one rank's step costs alone
            backward()

    backward()  # warm-up
    flat = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    return {"compute_ms": _timed(compute_only, repeats), "synced_ms": _timed(backward, repeats),
            "allreduce_ms": _timed(lambda: dist.all_reduce(flat), repeats), "grad_bytes": flat.numel() * 4}


def bucket_sweep_on_rank(rank: int, world_size: int, X: torch.Tensor, y: torch.Tensor, config: DDPConfig,
                         caps_mb: tuple[float, ...], repeats: int = 8) -> list[dict]:
    """For each bucket_cap_mb: all-reduce calls per backward and the synced backward's time."""
    xb, yb = next(iter(loader_for_rank(X, y, config, rank, world_size)))
    rows = []
    for cap in caps_mb:
        counter = CommCounter()
        model = _ddp(replace(config, bucket_cap_mb=cap), counter)

        def backward() -> None:
            model.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()

        backward()  # DDP rebuilds its buckets after the first backward, in the order gradients arrived
        counter.calls = 0
        backward()
        calls = counter.calls
        rows.append({"bucket_cap_mb": cap, "allreduce_calls_per_step": calls, "synced_ms": _timed(backward, repeats)})
    return rows


def accumulation_on_rank(rank: int, world_size: int, X: torch.Tensor, y: torch.Tensor, config: DDPConfig,
                         micro_steps: int = 4, repeats: int = 5) -> dict:
    """Gradient accumulation over micro_steps batches: sync every backward vs `no_sync` until the last one."""
    batches = [(xb, yb) for _, xb, yb in steps_of(loader_for_rank(X, y, config, rank, world_size), micro_steps)]
    results = {}
    for mode in ("every", "no_sync"):
        counter = CommCounter()
        model = _ddp(config, counter)

        def accumulate() -> None:
            model.zero_grad()
            for i, (xb, yb) in enumerate(batches):
                if mode == "no_sync" and i < len(batches) - 1:
                    with model.no_sync():  # gradients pile up locally; no all-reduce
                        nn.functional.cross_entropy(model(xb), yb).backward()
                else:
                    nn.functional.cross_entropy(model(xb), yb).backward()

        accumulate()
        counter.calls = 0
        ms = _timed(accumulate, repeats)
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        results[mode] = {"ms": ms, "allreduce_calls": counter.calls / repeats, "grads": grads}
    diff = float((results["every"]["grads"] - results["no_sync"]["grads"]).abs().max())
    return {"sync_every_ms": results["every"]["ms"], "no_sync_ms": results["no_sync"]["ms"],
            "sync_every_calls": results["every"]["allreduce_calls"], "no_sync_calls": results["no_sync"]["allreduce_calls"],
            "max_grad_diff": diff}


def single_process_step_ms(X: torch.Tensor, y: torch.Tensor, config: DDPConfig, threads: int,
                           repeats: int = 10) -> float:
    """One process, the whole global batch, `threads` intra-op threads: median ms per forward + backward."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = make_model(config)
        xb, yb = X[:config.global_batch], y[:config.global_batch]
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            model.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times[1:])
    finally:
        torch.set_num_threads(previous)
