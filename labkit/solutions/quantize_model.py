import copy
import io
import time

import torch
from torch import nn
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer, get_default_x86_inductor_quantization_config)


def _size_mb(model: nn.Module) -> float:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)  # what a deployment ships
    return buf.tell() / 1e6


@torch.no_grad()
def _accuracy(model, X: torch.Tensor, y: torch.Tensor) -> float:
    predictions = model(X).argmax(dim=1)
    return (predictions == y).float().mean().item()


@torch.no_grad()
def _median_ms(model, x: torch.Tensor, repeats: int = 50) -> float:
    for _ in range(5):  # warm-up: first calls pay for allocation and dispatch caches
        model(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def _drop_unused(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """convert_pt2e keeps the fp32 weights as attributes; delete every tensor the graph does not read."""
    used = {node.target for node in graph.graph.nodes if node.op == "get_attr"}
    for name in [n for n, _ in list(graph.named_parameters()) + list(graph.named_buffers())]:
        if name not in used:
            parent, _, attr = name.rpartition(".")
            delattr(graph.get_submodule(parent) if parent else graph, attr)
    return graph


@torch.no_grad()
def _quantize(model: nn.Module, calibration: list) -> torch.fx.GraphModule:
    """Post-training static INT8 (PT2E): export, insert observers, run calibration inputs, convert."""
    model = copy.deepcopy(model).eval()
    batch = torch.export.Dim("batch", min=1)
    graph = torch.export.export(model, (calibration[0],), dynamic_shapes=({0: batch},)).module()
    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(graph, quantizer)
    for X in calibration:  # inputs only: observers record activation ranges, no weight changes
        prepared(X)
    return _drop_unused(convert_pt2e(prepared))


def quantize_and_report(model: nn.Module, X: torch.Tensor, y: torch.Tensor, calibration: list) -> dict:
    """INT8 copy of model plus measured size_mb, accuracy and latency_ms (and their _fp32 twins)."""
    qmodel = _quantize(model, calibration)
    one = X[:1]
    return {"model": qmodel,
            "size_mb": _size_mb(qmodel), "size_mb_fp32": _size_mb(model),
            "accuracy": _accuracy(qmodel, X, y), "accuracy_fp32": _accuracy(model, X, y),
            "latency_ms": _median_ms(qmodel, one), "latency_ms_fp32": _median_ms(model, one)}
