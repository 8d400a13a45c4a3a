"""Model compression: pruning, quantization (dynamic, static, QAT), low-rank factorization, serialized size.

Knowledge distillation lives in `labkit.distill`, a variant's accuracy in `labkit.train.model_accuracy`. Every
function returns a new model and leaves its input untouched, so a notebook can compare the original with each
variant side by side.
"""
from __future__ import annotations

import copy
import io
import warnings
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn.utils import prune

from labkit.data import minibatches

# ---------------------------------------------------------------- measuring a variant


def serialized_mb(model: nn.Module) -> float:
    """Megabytes of torch.save(model.state_dict()): what a deployment ships. Taught in 06_model_compression."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 1e6


def caught_warnings(fn: Callable[[], object]) -> tuple[object, list[str]]:
    """(fn(), the distinct warning messages it raised): how the notebook shows deprecation notices."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    messages = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    return result, messages


# ---------------------------------------------------------------- pruning

PRUNABLE = (nn.Linear, nn.Conv2d)


def _check_amount(amount: float) -> None:
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount is the fraction to remove and must be in [0, 1); got {amount}")


def weight_sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero weights over all Linear and Conv2d weight tensors. Taught in 06_model_compression."""
    weights = [m.weight for m in model.modules() if isinstance(m, PRUNABLE)]
    if not weights:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layers")
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def magnitude_prune(model: nn.Module, amount: float, scope: str = "global") -> nn.Module:
    """A copy with the smallest-|w| fraction `amount` of weights set to zero (unstructured).

    scope="global" ranks all weights together (torch.nn.utils.prune.global_unstructured), "layer" prunes
    each layer by `amount` (l1_unstructured). The masks are made permanent, so the result is an ordinary
    dense model full of zeros. Taught in 06_model_compression.
    """
    _check_amount(amount)
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer'; got {scope!r}")
    pruned = copy.deepcopy(model)
    params = [(m, "weight") for m in pruned.modules() if isinstance(m, PRUNABLE)]
    if not params:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layers to prune")
    if scope == "global":
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    else:
        for module, name in params:
            prune.l1_unstructured(module, name, amount=amount)
    for module, name in params:
        prune.remove(module, name)  # weight_orig * weight_mask -> a plain weight tensor
    return pruned


def _chained_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The model's Linear layers in order; refuse models where removing a neuron is not a local edit."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    others = [n for n, m in model.named_modules()
              if not isinstance(m, nn.Linear) and any(True for _ in m.parameters(recurse=False))]
    if len(linears) < 2 or others:
        raise ValueError(f"prune_neurons needs a chain of >= 2 Linear layers and no other parameterized layers; "
                         f"{type(model).__name__} has {len(linears)} Linear layers and {others or 'no'} others")
    for (_, a), (name, b) in zip(linears, linears[1:]):
        if a.out_features != b.in_features:
            raise ValueError(f"layer {name} takes {b.in_features} inputs but the layer before gives {a.out_features}")
    return linears


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _sliced_linear(layer: nn.Linear, rows: torch.Tensor, cols: torch.Tensor) -> nn.Linear:
    """A smaller Linear holding only the given output rows and input columns of `layer`."""
    new = nn.Linear(len(cols), len(rows), bias=layer.bias is not None)
    with torch.no_grad():
        new.weight.copy_(layer.weight[rows][:, cols])
        if layer.bias is not None:
            new.bias.copy_(layer.bias[rows])
    return new


def neuron_keep_masks(model: nn.Module, amount: float) -> list[torch.Tensor]:
    """For each hidden Linear, a bool mask of the neurons (rows) that ln_structured (L2 norm) keeps."""
    _check_amount(amount)
    masks = []
    for _, layer in _chained_linears(model)[:-1]:  # the output layer keeps every class
        probe = nn.Linear(layer.in_features, layer.out_features, bias=False)
        with torch.no_grad():
            probe.weight.copy_(layer.weight)
        prune.ln_structured(probe, "weight", amount=amount, n=2, dim=0)  # zero whole rows
        masks.append(probe.weight_mask.any(dim=1))  # (out_features,)
    return masks


def prune_neurons(model: nn.Module, amount: float) -> nn.Module:
    """Structured pruning made physical: drop the `amount` weakest neurons of each hidden Linear layer.

    Rows are ranked by L2 norm (torch.nn.utils.prune.ln_structured); removed rows, their biases and the
    matching input columns of the next layer are cut out, so the matrices really shrink. The result equals
    the original with those neurons' weights and biases zeroed, for activations with f(0) = 0 (ReLU).
    Taught in 06_model_compression.
    """
    masks = neuron_keep_masks(model, amount)
    pruned = copy.deepcopy(model)
    linears = _chained_linears(pruned)
    cols = torch.arange(linears[0][1].in_features)
    for (name, layer), keep in zip(linears, masks + [None]):
        rows = keep.nonzero().flatten() if keep is not None else torch.arange(layer.out_features)
        _replace(pruned, name, _sliced_linear(layer, rows, cols))
        cols = rows
    return pruned


# ---------------------------------------------------------------- low-rank factorization


def _check_rank(rank: int, full: int) -> None:
    if not 1 <= rank <= full:
        raise ValueError(f"rank must be in [1, {full}] for this layer; got {rank}")


def _svd_factors(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (out, r) and B (r, in) with A @ B the best rank-r approximation of matrix (Eckart-Young)."""
    U, S, Vh = torch.linalg.svd(matrix.detach(), full_matrices=False)
    root = S[:rank].sqrt()
    return U[:, :rank] * root, root[:, None] * Vh[:rank]  # split the singular values evenly


def low_rank_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """Linear(in, out) -> Linear(in, rank, no bias) then Linear(rank, out), from a truncated SVD. Taught in 06_model_compression."""
    _check_rank(rank, min(layer.in_features, layer.out_features))
    A, B = _svd_factors(layer.weight, rank)  # (out, r), (r, in)
    first, second = nn.Linear(layer.in_features, rank, bias=False), nn.Linear(rank, layer.out_features,
                                                                          bias=layer.bias is not None)
    with torch.no_grad():
        first.weight.copy_(B)
        second.weight.copy_(A)
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def low_rank_conv(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    """Conv2d(c_in, c_out, k) -> Conv2d(c_in, rank, k) then a 1x1 Conv2d(rank, c_out), via SVD. Taught in 06_model_compression."""
    if conv.groups != 1:
        raise ValueError(f"low_rank_conv needs groups=1; got groups={conv.groups}")
    c_out, c_in, kh, kw = conv.weight.shape
    _check_rank(rank, min(c_out, c_in * kh * kw))
    A, B = _svd_factors(conv.weight.flatten(1), rank)  # (c_out, r), (r, c_in*kh*kw)
    first = nn.Conv2d(c_in, rank, (kh, kw), conv.stride, conv.padding, conv.dilation, bias=False,
                      padding_mode=conv.padding_mode)
    second = nn.Conv2d(rank, c_out, 1, bias=conv.bias is not None)
    with torch.no_grad():
        first.weight.copy_(B.reshape(rank, c_in, kh, kw))
        second.weight.copy_(A[:, :, None, None])
        if conv.bias is not None:
            second.bias.copy_(conv.bias)
    return nn.Sequential(first, second)


def factorize(model: nn.Module, rank: int, convs: bool = False) -> nn.Module:
    """A copy with every Linear (and Conv2d if convs) replaced by its rank-`rank` factors where that saves weights.

    A layer is left alone when rank >= its full rank or when the two factors would hold more weights than
    the original (rank * (in + out) >= in * out). Taught in 06_model_compression.
    """
    if rank < 1:
        raise ValueError(f"rank must be >= 1; got {rank}")
    out = copy.deepcopy(model)
    for name, m in list(out.named_modules()):
        if isinstance(m, nn.Linear) and rank * (m.in_features + m.out_features) < m.in_features * m.out_features:
            _replace(out, name, low_rank_linear(m, rank))
        elif convs and isinstance(m, nn.Conv2d) and m.groups == 1:
            c_out, fan_in = m.weight.shape[0], m.weight[0].numel()
            if rank * (fan_in + c_out) < fan_in * c_out:
                _replace(out, name, low_rank_conv(m, rank))
    return out


# ---------------------------------------------------------------- quantization


def dynamic_int8_legacy(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """(copy with INT8 Linear layers via torch.ao.quantization.quantize_dynamic, the warnings it raised).

    Post-training dynamic quantization: weights stored INT8, activations quantized on the fly per batch;
    no data, no training. torch.ao.quantization is deprecated: kept to show its warning and its real fbgemm
    kernels on CPU. Taught in 06_model_compression.
    """
    import torch.ao.quantization as tq

    model = copy.deepcopy(model).eval()
    return caught_warnings(lambda: tq.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8))


def dynamic_int8_torchao(model: nn.Module) -> nn.Module:
    """Copy with torchao's Int8DynamicActivationInt8WeightConfig applied (the current eager API; GPU/compile-first)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    model = copy.deepcopy(model).eval()
    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    return model


def export_model(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """torch.export graph of an eval-mode copy, with the batch axis dynamic (so batch 1 and 32 both run)."""
    model = copy.deepcopy(model).eval()
    batch = torch.export.Dim("batch", min=1)
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},)).module()


def _x86_quantizer(is_qat: bool = False):
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer, get_default_x86_inductor_quantization_config)

    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config(is_qat=is_qat))
    return quantizer


def drop_unused_tensors(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Delete parameters and buffers the graph never reads (convert_pt2e leaves the fp32 weights behind)."""
    used = {node.target for node in graph.graph.nodes if node.op == "get_attr"}
    for name in [n for n, _ in list(graph.named_parameters()) + list(graph.named_buffers())]:
        if name not in used and not any(name.startswith(u + ".") for u in used):
            parent, _, attr = name.rpartition(".")
            delattr(graph.get_submodule(parent) if parent else graph, attr)
    return graph


@torch.no_grad()
def quantize_static(model: nn.Module, calibration: Iterable[torch.Tensor]) -> torch.fx.GraphModule:
    """Post-training static INT8 via PT2E + X86InductorQuantizer: export, observe, convert.

    `calibration` is a few batches of *inputs only*: no labels, no gradients, no weight updates; the
    observers record activation ranges. Run the result through `compile_cpu` for real INT8 kernels (eager
    it runs a slow reference graph). Taught in 06_model_compression.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    batches = list(calibration)
    if not batches:
        raise ValueError("calibration needs at least one batch of inputs")
    prepared = prepare_pt2e(export_model(model, batches[0]), _x86_quantizer())
    for X in batches:
        prepared(X)
    return drop_unused_tensors(convert_pt2e(prepared))


def prepare_qat(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """Quantization-aware training, step 1: a graph with fake-quantize ops that you then *train*."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    model = copy.deepcopy(model).train()
    batch = torch.export.Dim("batch", min=1)
    graph = torch.export.export(model, (example,), dynamic_shapes=({0: batch},)).module()
    return prepare_qat_pt2e(graph, _x86_quantizer(is_qat=True))


def train_qat(prepared: torch.fx.GraphModule, X: torch.Tensor, y: torch.Tensor, epochs: int = 2,
              lr: float = 1e-4, batch_size: int = 64, seed: int = 0) -> list[float]:
    """Quantization-aware training, step 2: fine-tune through the fake-quant ops; mean loss per epoch."""
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    if epochs < 1 or len(X) == 0 or len(X) != len(y):
        raise ValueError(f"need epochs >= 1 and equally long non-empty X, y; got {epochs}, {len(X)}, {len(y)}")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(prepared.parameters(), lr=lr)
    move_exported_model_to_train(prepared)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for xb, yb in minibatches(X, y, batch_size=batch_size, shuffle=True, generator=generator):
            loss = nn.functional.cross_entropy(prepared(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(xb)
        losses.append(total / len(X))
    move_exported_model_to_eval(prepared)
    return losses


def convert_qat(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Quantization-aware training, step 3: replace fake-quant ops with real INT8 weights."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    move_exported_model_to_eval(prepared)
    return drop_unused_tensors(convert_pt2e(prepared))


def compile_cpu(model: nn.Module, examples: Iterable[torch.Tensor]) -> Callable:
    """torch.compile with Inductor weight freezing, compiled now on each example batch; returns the compiled callable.

    Freezing lets Inductor fold the weights and lower PT2E INT8 graphs to oneDNN INT8 kernels. It is set as a
    config patch during these first calls, which is when compilation happens (passing it through
    torch.compile(options=...) fails to lower the INT8 ops in torch 2.14). Give the batch sizes you will
    serve: a later new shape triggers a recompile without freezing. Taught in 06_model_compression.
    """
    import torch._inductor.config as inductor_config

    examples = list(examples)
    if not examples:
        raise ValueError("compile_cpu needs at least one example batch to compile for")
    compiled = torch.compile(model)
    with inductor_config.patch(freezing=True), torch.no_grad():
        for X in examples:
            compiled(X)
    return compiled
