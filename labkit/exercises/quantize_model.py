"""Exercise: quantize a trained model to INT8 and report the measured trade-off (size, latency, accuracy)."""
import copy
import io
import math

import torch
from torch import nn

from labkit.grading.exercise import Exercise
from labkit.grading.toys import blobs, train_full_batch

TASK = """
A trained classifier is about to ship to a fleet of CPU servers. Quantize it to INT8 and **report what
you measured**, so whoever reads the report can decide:

- `quantize_and_report(model, X, y, calibration)` → a dict with
  - `"model"`: the INT8 model, a callable mapping a batch of inputs `(N, F)` to logits `(N, K)` for any N;
  - `"size_mb"` and `"size_mb_fp32"`: megabytes of `torch.save(m.state_dict())` for the INT8 and the fp32 model;
  - `"accuracy"` and `"accuracy_fp32"`: fraction of correct argmax predictions on `(X, y)`;
  - `"latency_ms"` and `"latency_ms_fp32"`: median milliseconds of one call at batch size 1 (time many calls
    after a warm-up).
- `calibration` is a list of input batches (no labels). Leave `model` itself unchanged (work on a copy).

Use a current API: post-training static quantization with PT2E (`torch.export.export` with a dynamic batch
axis, `prepare_pt2e` / `convert_pt2e` from `torchao.quantization.pt2e.quantize_pt2e`, and `X86InductorQuantizer`
with `get_default_x86_inductor_quantization_config()`), or another INT8 method that keeps the accuracy. Watch
the size: `convert_pt2e` leaves the unused fp32 weights attached to the graph; delete what the graph no longer
reads (nodes with `op == "get_attr"` name what it reads) or your INT8 model ships *bigger* than the original.

Graded: accuracy within 2 points of fp32 (recomputed by the grader on fresh data too), a serialized size below
half the fp32 size (measured by the grader), every reported number equal to what the grader measures (sizes,
accuracies) or a positive time, and the original model untouched. Speed is **not** graded: on a 2-core laptop
an eager INT8 graph can be slower than fp32 (notebook 06 §3 shows why and what `torch.compile` changes).
Taught in notebook 06 §3 "Quantization: dynamic, static, and the one that trains".
"""

STUB = '''
import torch
from torch import nn


def quantize_and_report(model: nn.Module, X: torch.Tensor, y: torch.Tensor, calibration: list) -> dict:
    """INT8 copy of model plus measured size_mb, accuracy and latency_ms (and their _fp32 twins)."""
    raise NotImplementedError("quantize_and_report")
'''

FEATURES, CLASSES = 16, 4
_CACHE: dict[int, tuple] = {}


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    return blobs(n, FEATURES, CLASSES, noise=0.6, seed=seed)


def _trained_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, CLASSES))
    X, y = _data(512, seed=0)
    return train_full_batch(model, X, y, lr=3e-3)


def _mb(model: nn.Module) -> float:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 1e6


@torch.no_grad()
def _acc(model, X: torch.Tensor, y: torch.Tensor) -> float:
    return (model(X).argmax(dim=1) == y).float().mean().item()


def _run(sub) -> tuple[nn.Module, dict, dict]:
    """Call the student's function once per submission: (original model, its state before, the report)."""
    if id(sub) not in _CACHE:
        model = _trained_model()
        before = copy.deepcopy(model.state_dict())
        X, y = _data(400, seed=1)
        calibration = [_data(64, seed=s)[0] for s in (2, 3, 4)]
        report = sub.quantize_and_report(model, X, y, calibration)
        if not isinstance(report, dict):
            raise AssertionError(f"quantize_and_report must return a dict; got {type(report).__name__}")
        _CACHE[id(sub)] = model, before, report
    return _CACHE[id(sub)]


def _get(report: dict, key: str):
    assert key in report, f"the report has no {key!r} entry; it has {sorted(report)}"
    return report[key]


def test_accuracy_kept(sub):
    """the INT8 model keeps accuracy within 2 points of fp32, on the given data and on fresh data"""
    model, _, report = _run(sub)
    qmodel = _get(report, "model")
    for seed in (1, 7):
        X, y = _data(400, seed=seed)
        fp32, int8 = _acc(model, X, y), _acc(qmodel, X, y)
        assert int8 >= fp32 - 0.02, f"INT8 accuracy {int8:.3f} vs fp32 {fp32:.3f} (data seed {seed}): more than 2 points lost"
    out = qmodel(_data(1, seed=3)[0])
    assert tuple(out.shape) == (1, CLASSES), f"batch of 1 gave logits of shape {tuple(out.shape)}: keep the batch axis dynamic"


def test_smaller_on_disk(sub):
    """the serialized INT8 state dict is under half the fp32 one (the grader measures both)"""
    model, _, report = _run(sub)
    fp32, int8 = _mb(model), _mb(_get(report, "model"))
    assert int8 < 0.5 * fp32, (f"INT8 state dict is {int8:.3f} MB vs fp32 {fp32:.3f} MB: INT8 weights take a quarter "
                               "of the bytes; are the fp32 weights still attached to the graph?")


def test_reported_numbers_are_measured(sub):
    """sizes and accuracies in the report equal the grader's measurements; latencies are positive times"""
    model, _, report = _run(sub)
    X, y = _data(400, seed=1)
    qmodel = _get(report, "model")
    want = {"size_mb": _mb(qmodel), "size_mb_fp32": _mb(model), "accuracy": _acc(qmodel, X, y),
            "accuracy_fp32": _acc(model, X, y)}
    for key, value in want.items():
        got = float(_get(report, key))
        assert math.isclose(got, value, rel_tol=0.01, abs_tol=1e-4), f"{key} reported {got:.4f}, measured {value:.4f}"
    for key in ("latency_ms", "latency_ms_fp32"):
        got = float(_get(report, key))
        assert math.isfinite(got) and 0 < got < 1e4, f"{key} = {got}: report a measured median in milliseconds"


def test_original_untouched(sub):
    """the fp32 model given to quantize_and_report is unchanged (quantize a copy)"""
    model, before, _ = _run(sub)
    changed = [k for k, v in model.state_dict().items() if k not in before or not torch.equal(v, before[k])]
    assert not changed and len(model.state_dict()) == len(before), f"these fp32 tensors changed: {changed}"


EXERCISE = Exercise(
    name="quantize_model", title="Exercise · Quantize a model and report the trade-off", task=TASK, stub=STUB,
    tests=(test_accuracy_kept, test_smaller_on_disk, test_reported_numbers_are_measured, test_original_untouched),
    protected_modules=('labkit.compress',),
)
