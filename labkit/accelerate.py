"""Hardware levers, each measurable: device choice, threads, mixed precision, torch.compile, data loading."""
from __future__ import annotations

import copy
import os
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from labkit.bench import Variant, synchronizer, compare, throughput_row, time_calls
from labkit.metrics import max_abs_diff


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA when present (or asked for), else CPU; LABKIT_DEVICE overrides. Taught in 00_welcome."""
    name = prefer or os.environ.get("LABKIT_DEVICE")
    if name:
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def environment_report() -> dict[str, str]:
    """Versions, cores, threads and accelerators: the facts every measurement depends on. Taught in 00_welcome."""
    import numpy, sklearn, torchvision  # imported here: only the report needs their versions

    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
        "cpu cores (os)": str(os.cpu_count()),
        "cpu cores usable": str(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else "?",
        "torch intra-op threads": str(torch.get_num_threads()),
        "torch inter-op threads": str(torch.get_num_interop_threads()),
        "cuda available": str(cuda),
        "gpu": torch.cuda.get_device_name(0) if cuda else "none",
    }


def cpu_capability() -> dict[str, object]:
    """The vector ISA torch dispatches to and whether the CPU has native bf16 (AVX512-BF16, AMX). Taught in 05_hardware_acceleration."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = set(cpuinfo.read_text().split()) if cpuinfo.exists() else set()
    return {"isa": torch.backends.cpu.get_cpu_capability(), "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags}


# ------------------------------------------------------------------------------ CPU threads


def thread_sweep(fn: Variant, batch: Any, batch_size: int, thread_counts: Sequence[int], repeats: int = 20,
                 warmup: int = 3, rounds: int = 3):
    """Latency and throughput of fn(batch) per intra-op thread count; speedup vs the first count.

    The counts are visited `rounds` times in turn, so slow drift on a shared machine hits them alike;
    torch's thread count is restored afterwards. Taught in 05_hardware_acceleration.
    """
    import pandas as pd

    if not thread_counts or min(thread_counts) < 1:
        raise ValueError(f"thread_counts must be positive integers; got {list(thread_counts)}")
    if repeats < rounds or rounds < 1:
        raise ValueError(f"need rounds >= 1 and repeats >= rounds; got repeats={repeats}, rounds={rounds}")
    previous, samples = torch.get_num_threads(), {n: [] for n in thread_counts}
    try:
        with torch.no_grad():
            for _ in range(rounds):
                for n in thread_counts:
                    torch.set_num_threads(n)
                    samples[n].append(time_calls(lambda: fn(batch), repeats // rounds, warmup))
    finally:
        torch.set_num_threads(previous)
    rows = [{"threads": n, **throughput_row(np.concatenate(s), batch_size)} for n, s in samples.items()]
    df = pd.DataFrame(rows)
    df["speedup"] = df["p50_ms"].iloc[0] / df["p50_ms"]
    return df


def parallel_throughput(fn: Variant, batch: Any, batch_size: int, workers: int, threads_per_worker: int,
                        calls_per_worker: int = 20) -> dict[str, float]:
    """Samples/s when `workers` Python threads call fn(batch) at once, each with its own intra-op threads.

    workers × threads_per_worker above the core count is oversubscription: threads queue for cores
    and spin at barriers. Taught in 05_hardware_acceleration.
    """
    if min(workers, threads_per_worker, calls_per_worker) < 1:
        raise ValueError(f"workers, threads_per_worker, calls_per_worker must be >= 1; "
                         f"got {workers}, {threads_per_worker}, {calls_per_worker}")
    start_line, errors = threading.Barrier(workers + 1), []

    def work() -> None:
        try:
            with torch.no_grad():  # grad mode is per thread: set it in each worker
                fn(batch)  # warm-up: each thread starts its own OpenMP team here
                start_line.wait()
                for _ in range(calls_per_worker):
                    fn(batch)
        except Exception as err:  # noqa: BLE001 - reported to the caller below
            errors.append(err)
            start_line.abort()

    previous = torch.get_num_threads()
    torch.set_num_threads(threads_per_worker)  # new threads take this count at their first parallel op
    try:
        pool = [threading.Thread(target=work) for _ in range(workers)]
        for t in pool:
            t.start()
        try:
            start_line.wait()
        except threading.BrokenBarrierError:
            pass
        start = time.perf_counter()
        for t in pool:
            t.join()
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)
    if errors:
        raise RuntimeError(f"a worker failed: {errors[0]!r}") from errors[0]
    samples = workers * calls_per_worker * batch_size
    return {"workers": workers, "threads_per_worker": threads_per_worker,
            "total_threads": workers * threads_per_worker, "seconds": seconds, "throughput_sps": samples / seconds}


# ------------------------------------------------------------------------------ mixed precision


def autocast_fn(fn: Variant, device_type: str = "cpu", dtype: torch.dtype = torch.bfloat16) -> Variant:
    """fn run under torch.autocast(device_type, dtype): matmuls and convs in low precision. Taught in 05_hardware_acceleration."""
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"autocast dtype must be torch.bfloat16 or torch.float16; got {dtype}")

    def run(batch: Any) -> object:
        with torch.autocast(device_type=device_type, dtype=dtype):
            return fn(batch)
    return run


def low_precision_copy(model: torch.nn.Module, dtype: torch.dtype = torch.bfloat16) -> Variant:
    """A copy of model with its weights stored in dtype; floating inputs are cast to dtype on the way in.

    Unlike autocast, no weight is converted per call; the outputs come back in dtype. Taught in 05_hardware_acceleration.
    """
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"dtype must be torch.bfloat16 or torch.float16; got {dtype}")
    low = copy.deepcopy(model).to(dtype)
    for module in low.modules():
        if isinstance(module, torch.nn.RNNBase):
            module.flatten_parameters()  # cuDNN wants one contiguous weight buffer, or it compacts every call

    def run(batch: torch.Tensor) -> object:
        return low(batch.to(dtype) if batch.is_floating_point() else batch)
    return run


def output_gap(reference: Variant, candidate: Variant, batch: Any) -> float:
    """labkit.metrics.max_abs_diff of two callables' outputs on one batch (each cast to float32 first)."""
    with torch.no_grad():
        a, b = reference(batch), candidate(batch)
    if a.shape != b.shape:
        raise ValueError(f"outputs differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return max_abs_diff(a.float(), b.float())


# ------------------------------------------------------------------------------ torch.compile


@dataclass(frozen=True)
class CompileResult:
    """A compiled callable (None if compiling failed), the seconds its first call took, the error if any."""
    fn: Variant | None
    compile_s: float
    error: str | None = None


def time_first_call(fn: Variant, batch: Any, sync: bool | None = None) -> float:
    """Seconds of one call under no_grad; for a compiled fn with a new input shape this is the (re)compile."""
    wait = synchronizer(sync)
    start = time.perf_counter()
    with torch.no_grad():
        fn(batch)
    wait()
    return time.perf_counter() - start


def compile_and_time(model: torch.nn.Module, batch: Any, sync: bool | None = None,
                     **compile_kwargs: Any) -> CompileResult:
    """torch.compile(model) and time its first call (tracing + code generation); errors are caught.

    Steady-state speed is a separate measurement: bench.compare(eager vs result.fn). Taught in 05_hardware_acceleration.
    """
    try:
        compiled = torch.compile(model, **compile_kwargs)
        return CompileResult(compiled, time_first_call(compiled, batch, sync))
    except Exception as err:  # noqa: BLE001 - a missing compiler or an unsupported op: shown, not hidden
        message = f"{type(err).__name__}: {err}".strip()
        return CompileResult(None, float("nan"), message[:600])


# ------------------------------------------------------------------------------ device placement


def on_device(fn: Variant, device: torch.device | str, resident: bool) -> Variant:
    """fn on device. resident=False: copy the input there and the output back on every call;
    resident=True: the input is copied once (first call) and kept, the output stays. Taught in 05_hardware_acceleration."""
    device, kept = torch.device(device), {}

    def copy_each_call(batch: torch.Tensor) -> torch.Tensor:
        return fn(batch.to(device)).cpu()

    def keep_resident(batch: torch.Tensor) -> torch.Tensor:
        if id(batch) not in kept:
            kept[id(batch)] = (batch, batch.to(device))  # holding batch keeps its id from being reused
        return fn(kept[id(batch)][1])
    return keep_resident if resident else copy_each_call


def h2d_copy(sizes_mb: Sequence[float], device: torch.device | str = "cuda", repeats: int = 30, warmup: int = 5):
    """Host-to-device copy time and GB/s from pageable vs pinned memory, interleaved. Taught in 05_hardware_acceleration."""
    import pandas as pd

    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"h2d_copy measures copies to a CUDA device; got {device}")
    parts = []
    for size_mb in sizes_mb:
        pageable = torch.rand(int(size_mb * 1e6 / 4))  # float32: 4 bytes each
        pinned = pageable.pin_memory()
        variants = {"pageable": lambda _: pageable.to(device),
                    "pinned": lambda _: pinned.to(device, non_blocking=True)}
        df = compare(variants, lambda _: None, (1,), repeats, warmup, sync=True)
        df["size_mb"] = size_mb
        df["gb_per_s"] = pageable.numel() * 4 / 1e9 / (df["p50_ms"] / 1e3)
        parts.append(df[["size_mb", "variant", "p50_ms", "p99_ms", "gb_per_s", "speedup"]])
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------------------ data loading


def resize_standardize(img: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """One (C, H, W) image resized to size×size and standardized per channel: a serving-style preprocess."""
    from labkit.preprocess import resize_images, standardize

    return standardize(resize_images(img[None], size), mean, std)[0]  # (C, size, size)


class TransformDataset(Dataset):
    """(transform(X[i]), y[i]): preprocessing paid on every access, in the loader's workers. Taught in 05_hardware_acceleration."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]):
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        self.X, self.y, self.transform = X, y, transform

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.X[i]), self.y[i]


def loader_throughput(loader, consume: Variant | None = None, device: torch.device | str | None = None,
                      epochs: int = 1) -> dict[str, float]:
    """Samples/s of iterating a DataLoader (worker start-up included), optionally moving each batch to
    device and calling consume(batch) on it. Taught in 05_hardware_acceleration."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1; got {epochs}")
    wait = synchronizer(None if device is None else torch.device(device).type == "cuda")
    samples, batches, start = 0, 0, time.perf_counter()
    with torch.no_grad():
        for _ in range(epochs):
            for xb, _yb in loader:
                if device is not None:
                    xb = xb.to(device, non_blocking=bool(getattr(loader, "pin_memory", False)))
                if consume is not None:
                    consume(xb)
                samples, batches = samples + len(xb), batches + 1
    wait()
    seconds = time.perf_counter() - start
    return {"samples": samples, "batches": batches, "seconds": seconds, "samples_per_s": samples / seconds}
