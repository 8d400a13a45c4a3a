"""What runs the forward's arithmetic in the server: eager PyTorch or ONNX Runtime. Taught in 09_async_serving.

Eager PyTorch drives the model one operator at a time from Python. It drops the GIL inside each kernel
but must take it back between operators, and the serving GRU's forward (checks, packing, GRU, head,
softmax) takes it back dozens of times. In a server whose event loop runs Python in another thread,
each take-back waits for the loop: under load the forward thread spends more time waiting for the GIL
than computing. ONNX Runtime runs the whole exported graph in one C++ call that releases the GIL once.
09_async_serving measures both, alone and beside a thread that holds the GIL.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from labkit.export import INPUT_NAME, OPSET, export_onnx, make_session
from labkit.models import RNNClassifier
from labkit.serve.config import ENGINES
from labkit.serve.lifecycle import cache_dir
from labkit.serve.preprocessing import IMAGE_SHAPE, MAX_LEN

PARITY_TOL = 1e-4  # max |ONNX Runtime - PyTorch| probability accepted at export
GIL_SWITCH_INTERVAL_S = 0.0002  # the thread worker's interpreter switch interval; Python's default is 0.005


@torch.inference_mode()
def predict_probs(model: nn.Module, x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Class probabilities (n, K) as float32 NumPy for a preprocessed batch x (n, ...), in eval mode (eager)."""
    return model(torch.as_tensor(x)).softmax(dim=-1).numpy()  # as_tensor: no copy of a NumPy array


def fixed_probs(n: int, num_classes: int) -> np.ndarray:
    """The --no-model answer: uniform probabilities for n inputs (no forward at all: the HTTP bound)."""
    return np.full((n, num_classes), 1.0 / num_classes, dtype=np.float32)


class LastStepProbs(nn.Module):
    """RNNClassifier's probabilities without packing, so the exporter can trace it.

    The GRU runs over the padded ids and each row is read at its last real token. A GRU is causal,
    so the padding after that token cannot change it: same numbers as the packed forward (tested).
    """

    def __init__(self, model: RNNClassifier):
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T) int64 -> (B, K)
        m = self.model
        lengths = (ids != m.pad_id).sum(dim=1).clamp(min=1)                   # (B,)
        outputs, _ = m.rnn(m.embedding(ids))                                   # (B, T, H)
        index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, outputs.shape[2])  # (B, 1, H)
        return m.head(outputs.gather(1, index).squeeze(1)).softmax(dim=-1)


class Probs(nn.Module):
    """model(x).softmax(-1): the exported graph returns what /predict serves."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).softmax(dim=-1)


def _example(name: str, model: nn.Module) -> torch.Tensor:
    """A small input with realistic structure: token ids padded at the end, or images in [0, 1]."""
    gen = torch.Generator().manual_seed(0)
    if name == "text":
        ids = torch.randint(1, model.vocab_size, (4, MAX_LEN), generator=gen)
        for row, length in enumerate((1, 5, 13, MAX_LEN)):
            ids[row, length:] = model.pad_id
        return ids
    return torch.rand((4, *IMAGE_SHAPE), generator=gen)


def onnx_file(name: str, weights: str | Path) -> Path:
    """Where the exported graph of these weights is cached: named by a hash of the weights file."""
    if not Path(weights).is_file():
        raise FileNotFoundError(f"no weights file at {weights}: the ONNX engine exports saved weights")
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()[:16]
    return cache_dir() / f"{name}-{digest}-opset{OPSET}.onnx"


@contextmanager
def _exclusive(path: Path):
    """An inter-process lock next to path: servers starting together export once, the others wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _once(path: Path, write: Callable[[Path], None]) -> Path:
    """path, written by write(path) unless it exists; servers starting together write it once, the others wait."""
    if path.exists():
        return path
    with _exclusive(path):
        if not path.exists():  # another process may have written it while this one waited
            write(path)
    return path


def export_for_serving(name: str, model: nn.Module, weights: str | Path) -> Path:
    """Export model's probabilities to ONNX once per weights file (cached), after a parity check."""
    return _once(onnx_file(name, weights), lambda path: _export_checked(name, model, path))


def _export_checked(name: str, model: nn.Module, path: Path) -> None:
    wrapped = (LastStepProbs(model) if name == "text" else Probs(model)).eval()
    example = _example(name, model)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.onnx")
    with warnings.catch_warnings():  # the exporter's progress chatter, not problems
        warnings.simplefilter("ignore")
        export_onnx(wrapped, example, tmp, dynamic_axes={1: "time"} if name == "text" else None)
    forward = OnnxForward(tmp, threads=1, pad_id=model.pad_id if name == "text" else None)
    for x in (example, example[:1], example[1:3]):  # the text forward trims each to its longest row
        gap = float(np.abs(forward(x.numpy()) - predict_probs(model, x.numpy())).max())
        if not gap <= PARITY_TOL:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"exported {name} model differs from PyTorch by {gap:.2e} (> {PARITY_TOL})")
    os.replace(tmp, path)  # atomic: a reader never sees half a file


class OnnxForward:
    """probs (n, K) for a preprocessed batch, in one ONNX Runtime call (the GIL is released for all of it)."""

    def __init__(self, path: str | Path, threads: int = 1, pad_id: int | None = None):
        self.session = make_session(path, intra_op_threads=threads, inter_op_threads=1, spinning=False)
        # The exporter sometimes fixes the time axis to the example's length (torch.export specializes it
        # in some model shapes); then every batch must keep its full width.
        time_axis = self.session.get_inputs()[0].shape[1] if pad_id is not None else None
        self.pad_id = pad_id if isinstance(time_axis, str) else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.pad_id is not None:  # token ids: drop the all-padding tail columns (T = longest row)
            x = x[:, :max(1, int((x != self.pad_id).sum(axis=1).max()))]
        return self.session.run(None, {INPUT_NAME: x})[0]


def int8_for_serving(name: str, model: nn.Module, weights: str | Path) -> Path:
    """The served ONNX graph with dynamic INT8 weights (ORT quantize_dynamic), cached beside it. No parity bound:
    INT8 changes the probabilities, so whoever serves it measures accuracy (16_deployment_and_reliability §5)."""
    from labkit.export import quantize_dynamic_int8

    src = export_for_serving(name, model, weights)

    def quantize(path: Path) -> None:
        tmp = path.with_suffix(f".{os.getpid()}.tmp.onnx")
        quantize_dynamic_int8(src, tmp)
        os.replace(tmp, path)  # atomic: a reader never sees half a file
    return _once(src.with_name(src.stem + "-int8.onnx"), quantize)


def make_forward(name: str, model: nn.Module, weights: str | Path, engine: str = "torch",
                 threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """x (n, ...) -> probs (n, K) on `engine` ("torch": eager PyTorch; "onnx": exported, ONNX Runtime;
    "onnx-int8": that graph with INT8 weights)."""
    if engine == "torch":
        return lambda x: predict_probs(model, x)
    if engine in ("onnx", "onnx-int8"):
        path = (export_for_serving if engine == "onnx" else int8_for_serving)(name, model, weights)
        return OnnxForward(path, threads, model.pad_id if name == "text" else None)
    raise ValueError(f"engine must be one of {ENGINES}; got {engine!r}")


def rate_beside_python(forward: Callable[[np.ndarray], np.ndarray], x: np.ndarray, seconds: float = 1.0,
                       switch_interval_s: float = GIL_SWITCH_INTERVAL_S) -> dict[str, float]:
    """Rows/s of forward(x) alone, then while another thread runs pure Python (as a busy event loop does).

    The other thread holds the GIL whenever it can; the forward gets it back only when that thread is
    made to drop it (every switch_interval_s: the thread worker's setting). The ratio says how much of
    the forward needs the GIL. Taught in 09_async_serving.
    """
    def rate() -> float:
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            forward(x)
            calls += 1
        return calls * len(x) / (time.perf_counter() - start)

    def spin() -> None:
        while not stop.is_set():
            pass

    before, stop = sys.getswitchinterval(), threading.Event()
    sys.setswitchinterval(switch_interval_s)
    try:
        alone = rate()
        other = threading.Thread(target=spin, daemon=True)
        other.start()
        try:
            beside = rate()
        finally:
            stop.set()
            other.join()
    finally:
        sys.setswitchinterval(before)
    return {"alone_rows_s": alone, "beside_python_rows_s": beside, "ratio": beside / alone}
