"""ONNX export, ONNX Runtime sessions, parity checks, ORT quantization and the edge-budget pick.

ONNX is a file format: a graph of operators from a versioned operator set (the opset), with the
weights stored as initializers. It computes nothing. ONNX Runtime is an inference engine: it loads
that graph, rewrites it (graph optimizations) and runs it on execution providers (CPU, CUDA, ...).
Taught in 07_onnx_runtime_and_edge.
"""
from __future__ import annotations

import copy
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from labkit.data import minibatches
from labkit.metrics import accuracy, max_abs_diff

OPSET = 18  # stated, not left to the exporter's default: every runtime lists the opsets it supports
INPUT_NAME, OUTPUT_NAME = "input", "logits"
OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "layout", "all")  # ORT's levels, cumulative


# ------------------------------------------------------------------------------ export and inspect


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, opset: int = OPSET,
                dynamic_batch: bool = True, dynamic_axes: dict[int, str] | None = None) -> Path:
    """Export an eval-mode copy of model with the torch.export-based exporter (dynamo=True) and check it.

    One self-contained file (weights inside, no .data side file); axis 0 is the symbolic "batch"
    when dynamic_batch, else fixed to example's batch size; dynamic_axes names more symbolic axes
    ({1: "time"}: any sequence length). Taught in 07_onnx_runtime_and_edge.
    """
    if not isinstance(example, torch.Tensor) or example.dim() < 1:
        raise ValueError(f"example must be a batched tensor; got {type(example).__name__}")
    if dynamic_batch and len(example) < 2:
        example = example.repeat(2, *([1] * (example.dim() - 1)))  # batch 1 would be specialized as a constant
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu().eval()  # the caller's model keeps its device and mode
    axes = {**({0: "batch"} if dynamic_batch else {}), **(dynamic_axes or {})}
    dynamic_shapes = ({axis: torch.export.Dim(name) for axis, name in axes.items()},) if axes else None
    torch.onnx.export(model, (example.to("cpu"),), str(path), input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME], opset_version=opset, dynamo=True,
                      dynamic_shapes=dynamic_shapes, external_data=False, verbose=False)
    check_onnx(path)
    return path


def check_onnx(path: str | Path):
    """Load an ONNX file and run onnx.checker on it; returns the ModelProto. Taught in 07_onnx_runtime_and_edge."""
    import onnx

    path = _existing(path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)  # full_check adds shape inference
    return model


def graph_summary(path: str | Path, check: bool = True) -> dict:
    """What the file holds: opset, operator counts, input shape (names for symbolic dims), weights, size.

    check=False skips onnx.checker, for graphs ORT saved with its own (com.microsoft) fused operators.
    """
    import onnx

    model = check_onnx(path) if check else onnx.load(str(_existing(path)))
    graph = model.graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    weights = sum(int(np.prod(t.dims)) for t in graph.initializer)
    return {"opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            "operators": dict(Counter(n.op_type for n in graph.node)),
            "input": f"{graph.input[0].name} {dims}", "initializer_values": weights,
            "size_kb": file_size_kb(path)}


def file_size_kb(path: str | Path) -> float:
    """Size on disk in KB (1000 bytes): what an edge budget counts. Taught in 07_onnx_runtime_and_edge."""
    return _existing(path).stat().st_size / 1e3


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}")
    return path


# ------------------------------------------------------------------------------ ONNX Runtime


def make_session(path: str | Path, intra_op_threads: int = 0, inter_op_threads: int = 0,
                 optimization: str = "all", providers: Sequence[str] | None = None,
                 optimized_path: str | Path | None = None, spinning: bool = True):
    """An onnxruntime.InferenceSession with explicit SessionOptions.

    Threads 0 = ORT's default (one per physical core). optimization: one of OPTIMIZATION_LEVELS.
    providers: None = CUDA if this onnxruntime build has it, then CPU. optimized_path: where ORT writes
    the graph it actually runs. spinning=False stops ORT's idle threads busy-waiting for the next run,
    which would steal cores from other thread pools in the process (PyTorch's). Taught in 07_onnx_runtime_and_edge.
    """
    import onnxruntime as ort

    path = _existing(path)
    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(f"optimization must be one of {OPTIMIZATION_LEVELS}; got {optimization!r}")
    if intra_op_threads < 0 or inter_op_threads < 0:
        raise ValueError(f"thread counts must be >= 0; got {intra_op_threads}, {inter_op_threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = intra_op_threads, inter_op_threads
    options.graph_optimization_level = _level(optimization)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), options, providers=pick_providers(providers))


def _level(name: str):
    import onnxruntime as ort

    L = ort.GraphOptimizationLevel
    level = {"disabled": L.ORT_DISABLE_ALL, "basic": L.ORT_ENABLE_BASIC, "extended": L.ORT_ENABLE_EXTENDED,
             "layout": getattr(L, "ORT_ENABLE_LAYOUT", None), "all": L.ORT_ENABLE_ALL}[name]
    if level is None:
        raise ValueError(f"onnxruntime {ort.__version__} has no 'layout' optimization level; use 'extended' or 'all'")
    return level


def pick_providers(wanted: Sequence[str] | None = None) -> list[str]:
    """Execution providers to ask for, in priority order; unknown names raise. Taught in 07_onnx_runtime_and_edge."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if wanted is None:
        return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    missing = [p for p in wanted if p not in available]
    if missing:
        raise ValueError(f"execution providers {missing} are not in this onnxruntime build; available: {available}")
    return list(wanted)


def run_session(session, x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Run the session's single input on x (converted to float32 numpy); returns the first output."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32, copy=False)})[0]


def runner(session) -> Callable[[torch.Tensor | np.ndarray], np.ndarray]:
    """A one-argument callable x -> outputs, the shape labkit.bench.compare times."""
    return lambda x: run_session(session, x)


def session_accuracy(session, X: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of an ORT session on (X, y), batch by batch. Taught in 07_onnx_runtime_and_edge."""
    if len(X) == 0 or len(X) != len(y):
        raise ValueError(f"X and y must be non-empty and equally long; got {len(X)} and {len(y)}")
    preds = np.concatenate([run_session(session, xb).argmax(axis=1) for (xb,) in minibatches(X, batch_size=batch_size)])
    return accuracy(y, preds)


# ------------------------------------------------------------------------------ parity


@torch.no_grad()
def parity(model: nn.Module, session, x: torch.Tensor) -> float:
    """Max abs difference between PyTorch's (eval-mode) and ONNX Runtime's outputs on x. Taught in 07_onnx_runtime_and_edge."""
    was_training = model.training
    try:
        reference = model.eval()(x.to(next(model.parameters()).device)).cpu()
    finally:
        model.train(was_training)
    return max_abs_diff(reference, run_session(session, x))


# ------------------------------------------------------------------------------ quantization


def cpu_has_vnni() -> bool:
    """True if this CPU advertises VNNI (int8 dot-product) instructions; False when unknown (not Linux x86)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def _reduce_range(reduce_range: bool | None) -> bool:
    # Without VNNI, x86 int8 kernels multiply u8 x s8 pairs into int16 with saturation (VPMADDUBSW):
    # 7-bit weights avoid the overflow, as ORT's quantization guide advises for such CPUs.
    return (not cpu_has_vnni()) if reduce_range is None else reduce_range


def quantize_dynamic_int8(src: str | Path, dst: str | Path, per_channel: bool = False,
                          reduce_range: bool | None = None) -> Path:
    """Post-training dynamic INT8 with ORT: weights stored as int8, activations quantized per batch at run time.

    No data, no retraining. reduce_range: 7-bit weights; None = only on CPUs without VNNI. Taught in
    07_onnx_runtime_and_edge.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = _prepared(src), Path(dst)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                     reduce_range=_reduce_range(reduce_range))
    check_onnx(dst)
    return dst


class ArrayCalibrationReader:
    """A CalibrationDataReader over a float array: yields {input_name: batch} until exhausted."""

    def __init__(self, X: np.ndarray | torch.Tensor, input_name: str = INPUT_NAME, batch_size: int = 64):
        X = X.cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
        if len(X) == 0:
            raise ValueError("calibration data is empty: static quantization needs representative inputs")
        self.batches = iter([{input_name: X[i:i + batch_size].astype(np.float32)}
                             for i in range(0, len(X), batch_size)])

    def get_next(self) -> dict | None:
        return next(self.batches, None)


def quantize_static_int8(src: str | Path, dst: str | Path, calibration: np.ndarray | torch.Tensor,
                         per_channel: bool = False, reduce_range: bool | None = None) -> Path:
    """Post-training static INT8 (QDQ format): activation ranges fixed once from calibration inputs.

    Still no retraining: calibration only runs the model forward. reduce_range as in quantize_dynamic_int8.
    Taught in 07_onnx_runtime_and_edge.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    src, dst = _prepared(src), Path(dst)
    reader = ArrayCalibrationReader(calibration, input_name=_input_name(src))
    quantize_static(str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    reduce_range=_reduce_range(reduce_range), activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)
    check_onnx(dst)
    return dst


def _input_name(path: Path) -> str:
    return check_onnx(path).graph.input[0].name


def _prepared(src: str | Path) -> Path:
    """ORT's recommended pre-processing (shape inference + graph cleanup) into a side file."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = _existing(src)
    out = src.with_name(src.stem + ".pre.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quant_pre_process(str(src), str(out))
    return out


# ------------------------------------------------------------------------------ edge budget


def pick_within_budget(rows: Iterable[dict], max_size_kb: float, max_p99_ms: float,
                       accuracy_tolerance: float = 0.01) -> dict | None:
    """The smallest candidate meeting both budgets whose accuracy is within accuracy_tolerance of the best
    candidate that meets them; None if none fits.

    Each row needs size_kb, p99_ms and accuracy (a fraction). Taught in 07_onnx_runtime_and_edge.
    """
    rows = list(rows)
    missing = sorted({k for r in rows for k in ("size_kb", "p99_ms", "accuracy") if k not in r})
    if missing:
        raise ValueError(f"candidate rows need the keys {missing}")
    if max_size_kb <= 0 or max_p99_ms <= 0 or accuracy_tolerance < 0:
        raise ValueError(f"budgets must be positive and the tolerance >= 0; got {max_size_kb} KB, "
                         f"{max_p99_ms} ms, {accuracy_tolerance}")
    fits = [r for r in rows if r["size_kb"] <= max_size_kb and r["p99_ms"] <= max_p99_ms]
    if not fits:
        return None
    best = max(r["accuracy"] for r in fits)
    return min((r for r in fits if r["accuracy"] >= best - accuracy_tolerance), key=lambda r: r["size_kb"])
