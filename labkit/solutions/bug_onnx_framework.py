"""Ship the classifier through ONNX.

ONNX is a file format: a graph of operators from a versioned operator set, plus the weights. It computes
nothing; an engine (here ONNX Runtime) loads the file and executes it with its own threads. The batch axis
is only symbolic if the export says so, and the exported graph is a translation of the model, so parity
is measured, not assumed.
"""
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

OPSET = 18


def export(model, example, path):
    """Write model to path as one ONNX file (opset 18, input "input", output "logits"); returns the path."""
    model.eval()
    if len(example) < 2:  # torch.export specializes a size-1 dimension to a constant
        example = example.repeat(2, *([1] * (example.dim() - 1)))
    torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["logits"],
                      opset_version=OPSET, dynamo=True, external_data=False, verbose=False,
                      dynamic_shapes=({0: torch.export.Dim("batch")},))  # axis 0 symbolic: any batch size
    return Path(path)


def load(path, threads=1):
    """What the service calls .run(None, {"input": x}) on, computing with `threads` threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # the engine's own thread pool, not PyTorch's
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def max_abs_diff(model, runner, x):
    """Largest |PyTorch logit - exported logit| on batch x: the release gate (ship if <= 1e-4)."""
    model.eval()
    want = model(x).numpy()
    got = runner.run(None, {"input": x.numpy().astype(np.float32)})[0]
    if got.shape != want.shape:
        raise ValueError(f"the runner's output has shape {got.shape}, the model's {want.shape}")
    return float(np.abs(got - want).max())
