"""Find the bug: a deployment module written as if ONNX were a computation framework that runs models itself."""
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from labkit.grading.exercise import Exercise

TASK = """
A team ships its PyTorch digit classifier (input `(N, 1, 8, 8)` floats, output `(N, 10)` logits) to a
service through ONNX. Their module has three functions:

* `export(model, example, path)` writes the model to one ONNX file (opset 18, input named `"input"`);
  `example` is one input batch, of any size.
* `load(path, threads)` returns the object the service calls `.run(None, {"input": x})` on, with x a
  float32 numpy batch of **any** size (traffic mixes single requests and batches of 32). The service
  sizes its worker pool from `runner.get_session_options().intra_op_num_threads`, which must equal
  `threads`.
* `max_abs_diff(model, runner, x)` is the release gate: the largest absolute difference between the
  PyTorch model's logits and the runner's on batch `x` (a tensor). A release ships only if it is at most
  1e-4, so it must be large when the file and the model disagree (say, someone exported an older
  checkpoint).

The module's docstring explains the team's view of ONNX. Single requests work in their quick test.

**Find the bug and fix it.** Read what the docstring claims about ONNX, then check each claim against
what ONNX is. Taught in 07_onnx_runtime_and_edge (§1 what ONNX is, §2 the batch axis, §3 parity, §4
sessions).
"""

STUB = '''
"""Ship the classifier through ONNX.

ONNX is a neural computation framework, like PyTorch: the exported graph runs itself (onnx.reference),
adapts to any batch size the way eager PyTorch does, and computes exactly what the PyTorch model
computes, so a parity check has nothing to find.
"""
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx.reference import ReferenceEvaluator

OPSET = 18


def export(model, example, path):
    """Write model to path as one ONNX file (opset 18, input "input", output "logits"); returns the path."""
    model.eval()
    torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["logits"],
                      opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
    return Path(path)


def load(path, threads=1):
    """What the service calls .run(None, {"input": x}) on, computing with `threads` threads."""
    torch.set_num_threads(threads)  # ONNX computes with the framework's thread pool
    return ReferenceEvaluator(onnx.load(str(path)))


def max_abs_diff(model, runner, x):
    """Largest |PyTorch logit - exported logit| on batch x: the release gate (ship if <= 1e-4)."""
    return 0.0  # same framework, same numbers: an exported graph cannot disagree with its model
'''

_CACHE: dict[int, Path] = {}


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


def _batch(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))  # (n, 1, 8, 8)


def _exported(sub) -> Path:
    """Export model 0 once per submission (example batch of 4) and reuse the file across tests."""
    if id(sub) not in _CACHE:
        folder = Path(tempfile.mkdtemp(prefix="bug_onnx_"))
        path = sub.export(_model(0), _batch(4), folder / "model.onnx")
        assert Path(path).is_file(), f"export must write the file and return its path; got {path!r}"
        _CACHE[id(sub)] = Path(path)
    return _CACHE[id(sub)]


def test_export_writes_a_valid_onnx_file(sub):
    """the file passes onnx.checker and declares opset 18"""
    import onnx

    model = onnx.load(str(_exported(sub)))
    onnx.checker.check_model(model)
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    assert opsets.get("ai.onnx") == 18, f"the file declares opsets {opsets}, expected ai.onnx 18"


def test_batch_of_32_runs_in_onnx_runtime(sub):
    """the file itself accepts batches of 1 and 32 in ONNX Runtime, with PyTorch's numbers"""
    import onnxruntime as ort

    session = ort.InferenceSession(str(_exported(sub)), providers=["CPUExecutionProvider"])
    for n in (1, 32):
        try:
            out = session.run(None, {"input": _batch(n).numpy()})[0]
        except Exception as err:
            raise AssertionError(f"ONNX Runtime rejects a batch of {n}: {str(err)[:200]}") from None
        want = _model(0)(_batch(n)).detach().numpy()
        assert out.shape == want.shape, f"batch of {n}: output shape {out.shape}, expected {want.shape}"
        assert np.abs(out - want).max() <= 1e-4, f"batch of {n}: logits differ from PyTorch's"


def test_load_returns_an_engine_session_with_the_threads(sub):
    """load gives something with .run and session options whose intra-op threads equal `threads`"""
    for threads in (1, 2):
        runner = sub.load(_exported(sub), threads=threads)
        options = getattr(runner, "get_session_options", None)
        assert options is not None, (
            f"load returned a {type(runner).__name__}, which has no session options: what executes an "
            f"ONNX file, and where are its threads set?")
        got = options().intra_op_num_threads
        assert got == threads, f"load(path, threads={threads}) runs with intra_op_num_threads={got}"
        out = runner.run(None, {"input": _batch(32).numpy()})[0]
        assert out.shape == (32, 10), f"runner.run gave shape {out.shape} for a batch of 32"


def test_parity_gate_catches_a_stale_model(sub):
    """max_abs_diff is large when the file holds other weights than the model"""
    runner = sub.load(_exported(sub), threads=1)
    diff = float(sub.max_abs_diff(_model(1), runner, _batch(8)))  # model 1 was never exported
    assert diff > 1e-3, (f"the file holds model 0's weights, yet max_abs_diff against model 1 is {diff}: "
                         f"the gate would ship a model that is not the one in the file")


def test_parity_gate_passes_a_fresh_export(sub):
    """max_abs_diff of the exported model against its own file is at most 1e-4"""
    runner = sub.load(_exported(sub), threads=1)
    diff = float(sub.max_abs_diff(_model(0), runner, _batch(1)))
    assert 0 <= diff <= 1e-4, f"max_abs_diff of the exported model against its own file is {diff}"


EXERCISE = Exercise(
    name="bug_onnx_framework", title="Find the bug · ONNX is not an engine", task=TASK, stub=STUB,
    tests=(test_export_writes_a_valid_onnx_file, test_batch_of_32_runs_in_onnx_runtime,
           test_load_returns_an_engine_session_with_the_threads, test_parity_gate_catches_a_stale_model,
           test_parity_gate_passes_a_fresh_export),
    kind="bug", bug_tests=("test_batch_of_32_runs_in_onnx_runtime",
                           "test_load_returns_an_engine_session_with_the_threads",
                           "test_parity_gate_catches_a_stale_model"),
    protected_modules=('labkit.export',),
)
