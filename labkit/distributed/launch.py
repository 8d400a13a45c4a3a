"""Start `world_size` processes that form one torch.distributed group, and clean every one up whatever happens.

Two ways, as in practice: `spawn` runs one function on every rank and returns (torch.multiprocessing, what a
notebook or a test uses); `Cluster` keeps the ranks alive between calls, so a notebook pays the seconds of
process start-up and `import torch` once. `torchrun -m labkit.distributed` is the command-line launcher
(see __main__.py). Taught in 08_distributed_training.
"""
from __future__ import annotations

import importlib
import os
import pickle
import queue
import socket
import subprocess
import sys
import time
import traceback
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A loopback port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def pick_backend(world_size: int) -> str:
    """nccl when every rank can have its own CUDA GPU, gloo otherwise (CPU tensors)."""
    if torch.cuda.is_available() and torch.cuda.device_count() >= world_size and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def init_group(rank: int, world_size: int, port: int, backend: str = "gloo", timeout_s: float = 60.0) -> None:
    """Join the default process group at tcp://127.0.0.1:port; a collective that waits past timeout_s raises."""
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://{HOST}:{port}", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s))


def _rank_main(rank: int, fn: Callable, world_size: int, port: int, backend: str, threads: int,
               args: tuple, results) -> None:
    """Body of every spawned rank: join the group, run fn, hand back its result, always leave the group."""
    torch.set_num_threads(threads)
    init_group(rank, world_size, port, backend)
    try:
        out = fn(rank, world_size, *args)
        if results is not None:
            results.put((rank, pickle.dumps(out)))  # plain bytes: a tensor shared by fd dies with its rank
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable, world_size: int = 2, args: tuple = (), backend: str = "gloo", threads: int = 1,
          collect: bool = True) -> list[Any]:
    """Run fn(rank, world_size, *args) on every rank; their results by rank. If one rank fails, all are ended.

    torch.multiprocessing's join terminates the other ranks as soon as one exits with an error (a rank left
    waiting in a collective would otherwise hang until its timeout) and re-raises the error here.
    """
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue() if collect else None
    context = mp.start_processes(_rank_main, args=(fn, world_size, free_port(), backend, threads, args, results),
                                 nprocs=world_size, join=False, start_method="spawn")
    try:
        while not context.join():
            pass
    finally:
        for process in context.processes:  # on any error here (even Ctrl-C): no rank outlives the call
            if process.is_alive():
                process.kill()
            process.join()
    if results is None:
        return []
    got = dict(results.get() for _ in range(world_size))
    return [pickle.loads(got[rank]) for rank in range(world_size)]


def rank_info(rank: int, world_size: int) -> dict:
    """Who this rank is: its process, backend and intra-op threads (runs inside a rank)."""
    return {"rank": rank, "world_size": world_size, "pid": os.getpid(), "backend": dist.get_backend(),
            "threads": torch.get_num_threads()}


def fail_on_rank(rank: int, world_size: int, bad_rank: int) -> None:
    """Rank `bad_rank` raises; the others wait in a barrier for it forever (the failure the launchers must clean up)."""
    if rank == bad_rank:
        raise RuntimeError(f"rank {rank} fails on purpose")
    dist.barrier()


def alive(processes) -> int:
    """How many of these processes are still running."""
    return sum(p.is_alive() for p in processes)


class RemoteError(RuntimeError):
    """A rank of a Cluster raised: its rank and traceback are in the message."""


def _serve(rank: int, world_size: int, port: int, backend: str, threads: int, inbox, outbox) -> None:
    """A Cluster rank: join the group once, then run each (fn, args) it is sent until it gets None."""
    torch.set_num_threads(threads)
    importlib.import_module("torch._dynamo")  # DDP and optimizers import it on first use (seconds): pay it now
    init_group(rank, world_size, port, backend)
    try:
        while (task := inbox.get()) is not None:
            fn, args = task
            try:
                outbox.put((True, pickle.dumps(fn(rank, world_size, *args))))
            except BaseException:
                outbox.put((False, traceback.format_exc()))
    finally:
        dist.destroy_process_group()


class Cluster:
    """`world_size` ranks kept alive in one process group; `run(fn, *args)` calls fn(rank, world_size, *args) on all.

    Use it as a context manager: leaving the block ends every rank, and a rank that raises ends them all
    (its partners may be blocked in a collective that will never complete).
    """

    def __init__(self, world_size: int = 2, backend: str = "gloo", threads: int = 1, timeout_s: float = 120.0):
        self.world_size, self.backend, self.threads, self.timeout_s = world_size, backend, threads, timeout_s
        self.processes: list = []

    def __enter__(self) -> Cluster:
        ctx, port = mp.get_context("spawn"), free_port()
        self._inboxes = [ctx.SimpleQueue() for _ in range(self.world_size)]
        self._outboxes = [ctx.Queue() for _ in range(self.world_size)]
        for rank in range(self.world_size):
            process = ctx.Process(target=_serve, daemon=True, args=(
                rank, self.world_size, port, self.backend, self.threads, self._inboxes[rank], self._outboxes[rank]))
            process.start()
            self.processes.append(process)
        return self

    def run(self, fn: Callable, *args) -> list[Any]:
        """fn(rank, world_size, *args) on every rank at once; the results by rank (RemoteError if one raised)."""
        if alive(self.processes) < self.world_size:
            raise RemoteError("a rank of this cluster has exited; start a new one")
        for inbox in self._inboxes:
            inbox.put((fn, args))
        results: dict[int, Any] = {}
        deadline = time.monotonic() + self.timeout_s
        while len(results) < self.world_size:  # answers in any order: a failed rank must not wait behind a stuck one
            for rank in set(range(self.world_size)) - set(results):
                try:
                    ok, value = self._outboxes[rank].get(timeout=0.01)
                except queue.Empty:
                    if not self.processes[rank].is_alive() or time.monotonic() > deadline:
                        self.close(kill=True)
                        raise RemoteError(f"rank {rank} died or gave no answer within {self.timeout_s:g} s")
                    continue
                if not ok:
                    self.close(kill=True)  # its partners may wait in a collective that never completes
                    raise RemoteError(f"rank {rank} raised:\n{value}")
                results[rank] = pickle.loads(value)
        return [results[rank] for rank in range(self.world_size)]

    def close(self, kill: bool = False) -> None:
        """Ask every rank to leave (or kill them at once), then kill whichever has not left within a few seconds."""
        for process, inbox in zip(self.processes, self._inboxes):
            if process.is_alive() and not kill:
                inbox.put(None)
        for process in self.processes:
            process.join(timeout=0 if kill else 5)
            if process.is_alive():
                process.kill()
                process.join()

    def __exit__(self, *exc) -> None:
        self.close()


def torchrun_command(nproc: int, *args: str) -> list[str]:
    """argv for `torchrun --nproc-per-node nproc -m labkit.distributed ARGS` on a free loopback port."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr", HOST,
            "--master-port", str(free_port()), "-m", "labkit.distributed", *args]


def run_torchrun(nproc: int, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
    """Run torchrun to completion (it stops every rank when one fails); its exit code and output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one intra-op thread per rank, as torchrun would set anyway
    return subprocess.run(torchrun_command(nproc, *args), capture_output=True, text=True, timeout=timeout_s, env=env)
