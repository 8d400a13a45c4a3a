"""Find the bug: "post-training quantization requires retraining" (it needs calibration inputs at most)."""
import copy

import torch
from torch import nn

from labkit.grading.exercise import Exercise
from labkit.grading.toys import blobs, train_full_batch

TASK = """
The team's `post_training_quantize(model, loader)` is supposed to do post-training **static** INT8
quantization of a trained model with PT2E (`torch.export`, `prepare_pt2e`, `convert_pt2e`,
`X86InductorQuantizer`). It is given the usual `(inputs, labels)` loader. Its comment claims post-training
quantization needs a short retraining pass first. Since it was added, every release's fp32 and INT8 models
disagree with the checkpoints they came from, and the quantization job needs labels nobody has for the
production traffic it should calibrate on.

**Find the bug and fix it.** Post-training quantization does not train: dynamic PTQ needs no data at all,
static PTQ runs a few batches of *inputs* through observers (no labels, no gradients, no weight updates) to
record activation ranges. The one that trains is quantization-aware training (QAT), a different method.
`post_training_quantize` must return an INT8 model that runs on any batch size, leave the model it was given
exactly as it was, and never read a label or call `backward`. Taught in notebook 06 §3 "Quantization:
dynamic, static, and the one that trains".
"""

STUB = '''
import torch
from torch import nn
import torch.nn.functional as F
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
    X86InductorQuantizer, get_default_x86_inductor_quantization_config)


def post_training_quantize(model: nn.Module, loader, epochs: int = 1, lr: float = 1e-3) -> torch.fx.GraphModule:
    """Post-training static INT8 quantization (PT2E, X86InductorQuantizer) of a trained model."""
    # Post-training quantization requires retraining: a short fine-tuning pass lets the weights adapt
    # to INT8 before the observers record their ranges.
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for X, y in loader:
            loss = F.cross_entropy(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()

    example = next(iter(loader))[0]
    batch = torch.export.Dim("batch", min=1)
    graph = torch.export.export(model, (example,), dynamic_shapes=({0: batch},)).module()
    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(graph, quantizer)
    for X, y in loader:  # calibration: observers record activation ranges
        prepared(X)
    return convert_pt2e(prepared)
'''

FEATURES, CLASSES = 12, 3
_CACHE: dict[int, tuple] = {}


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    return blobs(n, FEATURES, CLASSES, noise=0.5, seed=seed)


def _trained_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, 64), nn.ReLU(), nn.Linear(64, CLASSES))
    X, y = _data(300, seed=0)
    return train_full_batch(model, X, y, lr=1e-2)


def _loader(seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    X, y = _data(128, seed=seed)
    return [(X[i:i + 32], y[i:i + 32]) for i in range(0, 128, 32)]


class _WatchedLabels(torch.Tensor):
    """A label tensor that records every torch operation applied to it (and then performs it)."""

    reads: list[str] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.reads.append(getattr(func, "__name__", str(func)))
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


def _run(sub) -> tuple[nn.Module, dict, object]:
    """One call per submission: (the model, its state before, the result or the error); labels are watched."""
    if id(sub) not in _CACHE:
        model = _trained_model()
        before = copy.deepcopy(model.state_dict())
        loader = [(X, y.as_subclass(_WatchedLabels)) for X, y in _loader()]
        _WatchedLabels.reads.clear()
        try:
            result = sub.post_training_quantize(model, loader)
        except Exception as err:
            result = err
        _CACHE[id(sub)] = model, before, result
    return _CACHE[id(sub)]


def _quantized(sub):
    _, _, result = _run(sub)
    if isinstance(result, Exception):
        raise AssertionError(f"post_training_quantize raised {type(result).__name__}: {result}")
    return result


def test_weights_unchanged(sub):
    """the model given to post_training_quantize keeps exactly its weights: PTQ does not train"""
    model, before, _ = _run(sub)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert not changed, (f"{changed} changed: post-training quantization does not update weights "
                         "(fine-tuning before quantizing changes the model you validated)")


def test_no_backward(sub):
    """no gradient is ever computed for the model's parameters"""
    model, _, _ = _run(sub)
    with_grad = [name for name, p in model.named_parameters() if p.grad is not None]
    assert not with_grad, (f"{with_grad} have gradients: something called backward(). Calibration is a forward "
                           "pass under torch.no_grad()")


def test_needs_no_labels(sub):
    """the loader's labels are never used: static PTQ calibrates on inputs only"""
    _run(sub)
    reads = sorted(set(_WatchedLabels.reads))
    assert not reads, (f"the labels went through {reads}: calibration needs inputs only, so the job can run on "
                       "unlabelled production traffic")


def test_int8_and_close_to_fp32(sub):
    """the result holds INT8 weights, runs at batch 1 and 300, and keeps fp32's accuracy within 3 points"""
    quantized = _quantized(sub)
    reference = _trained_model()  # the untouched fp32 model
    assert any(t.dtype == torch.int8 for t in quantized.state_dict().values()), "no INT8 tensor in the result"
    X, y = _data(300, seed=4)
    with torch.no_grad():
        assert tuple(quantized(X[:1]).shape) == (1, CLASSES), "batch 1 must work: keep the batch axis dynamic"
        fp32 = (reference(X).argmax(1) == y).float().mean().item()
        int8 = (quantized(X).argmax(1) == y).float().mean().item()
    assert int8 >= fp32 - 0.03, f"INT8 accuracy {int8:.3f} vs fp32 {fp32:.3f}"


EXERCISE = Exercise(
    name="bug_ptq_retraining", title="Find the bug · Post-training quantization that trains", task=TASK,
    stub=STUB, tests=(test_weights_unchanged, test_no_backward, test_needs_no_labels, test_int8_and_close_to_fp32),
    kind="bug", bug_tests=("test_weights_unchanged", "test_no_backward", "test_needs_no_labels"),
    protected_modules=('labkit.compress',),
)
