"""Where the forward runs: inline in the event loop, in a thread pool, or in a pool of processes.

- inline: simplest, and it blocks the event loop for the whole forward: no request is parsed meanwhile.
- thread: torch releases the GIL inside its kernels, so the loop keeps serving while a thread computes.
- process: a model per process; every batch is pickled there and back, and each process holds its own
  copy of torch and the weights (~200 MB resident each).
Taught in 09_async_serving.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

from labkit.serve.engines import GIL_SWITCH_INTERVAL_S, make_forward
from labkit.serve.lifecycle import build_model

Forward = Callable[[np.ndarray], np.ndarray]  # preprocessed batch (n, ...) -> probs (n, K)


def _forward(forward: Forward, x: np.ndarray, slow_ms: float) -> np.ndarray:
    """One batched forward, plus the configured extra delay (a deliberately slow replica)."""
    probs = forward(x)
    if slow_ms:
        time.sleep(slow_ms / 1e3)
    return probs


class InlineWorker:
    """Runs the forward in the event loop's own thread: it blocks every other request meanwhile."""
    mode = "inline"

    def __init__(self, forward: Forward, threads: int = 1, slow_ms: float = 0.0):
        torch.set_num_threads(threads)
        self.forward, self.slow_ms = forward, slow_ms

    async def start(self, example: np.ndarray) -> None:
        """Run one forward on a (1, ...) example: the first request then pays no warm-up."""
        await self.run(example)

    async def run(self, x: np.ndarray) -> np.ndarray:
        return _forward(self.forward, x, self.slow_ms)

    def close(self) -> None:
        """Nothing to stop."""


class ThreadWorker(InlineWorker):
    """Runs the forward in a ThreadPoolExecutor: the loop stays free while the forward computes without the GIL."""
    mode = "thread"

    def __init__(self, forward: Forward, threads: int = 1, slow_ms: float = 0.0, num_workers: int = 1):
        super().__init__(forward, threads, slow_ms)  # torch's intra-op pool is per process: set it once
        # The forward thread needs the GIL back between torch ops; while the event loop holds it, the thread
        # waits up to the switch interval (5 ms by default) each time: a forward of ~20 ops could wait 100 ms.
        # A short interval makes the loop hand the GIL over quickly. Measured in 09_async_serving.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.pool: Executor = ThreadPoolExecutor(num_workers, thread_name_prefix="labkit-forward")
        self.num_workers = num_workers

    async def start(self, example: np.ndarray) -> None:
        """Warm every thread up with a forward on a (1, ...) example."""
        await asyncio.gather(*(self.run(example) for _ in range(self.num_workers)))

    async def run(self, x: np.ndarray) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self.pool, _forward, self.forward, x, self.slow_ms)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------- process pool
_FORWARD: Forward | None = None  # the forward of this worker process (set by _init_process)
_SLOW_MS = 0.0


def _init_process(name: str, weights: str, vocab_size: int | None, threads: int, slow_ms: float,
                  engine: str) -> None:
    """Process-pool initializer: load the model (and its engine) once per process."""
    from labkit.train import load_checkpoint

    global _FORWARD, _SLOW_MS
    torch.set_num_threads(threads)
    model = build_model(name, vocab_size)
    load_checkpoint(weights, model)
    _FORWARD, _SLOW_MS = make_forward(name, model.eval(), weights, engine, threads), slow_ms


def _process_forward(x: np.ndarray) -> np.ndarray:
    """Runs in a worker process: NumPy in, NumPy out (plain pickles, no shared-memory tensors)."""
    if _FORWARD is None:
        raise RuntimeError("worker process has no model: its initializer did not run")
    return _forward(_FORWARD, x, _SLOW_MS)


class ProcessWorker:
    """A model per process in a ProcessPoolExecutor ("spawn": forking a process that used torch threads can hang)."""
    mode = "process"

    def __init__(self, name: str, weights: str, vocab_size: int | None, threads: int = 1,
                 slow_ms: float = 0.0, num_workers: int = 1, engine: str = "torch"):
        self.name, self.num_workers = name, num_workers
        self.pool = ProcessPoolExecutor(num_workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_process,
                                        initargs=(name, str(weights), vocab_size, threads, slow_ms, engine))

    async def start(self, example: np.ndarray) -> None:
        """Start every process and load its model before the server reports healthy."""
        await asyncio.gather(*(self.run(example) for _ in range(self.num_workers)))

    async def run(self, x: np.ndarray) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self.pool, _process_forward, x)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def make_worker(mode: str, loaded, threads: int = 1, slow_ms: float = 0.0, num_workers: int = 1,
                engine: str = "torch"):
    """The worker for `mode` around a LoadedModel (see labkit.serve.lifecycle.load_model), on `engine`."""
    if mode == "process":
        vocab_size = len(loaded.preprocess.vocab) if loaded.name == "text" else None
        if engine.startswith("onnx"):  # export once here, so the worker processes only read the cached file
            make_forward(loaded.name, loaded.model, loaded.weights, engine, threads)
        return ProcessWorker(loaded.name, str(loaded.weights), vocab_size, threads, slow_ms, num_workers, engine)
    if mode not in ("inline", "thread"):
        raise ValueError(f"workers must be 'inline', 'thread' or 'process'; got {mode!r}")
    forward = make_forward(loaded.name, loaded.model, loaded.weights, engine, threads)
    if mode == "inline":
        return InlineWorker(forward, threads, slow_ms)
    return ThreadWorker(forward, threads, slow_ms, num_workers)
