"""Model versions for the router: checkpoints of the served text model that differ the way updates do.

v1 is the model as deployed (the cached serving weights); v2 is v1 after an update (two Adam steps on
128 validation sentences, which it never trained on); "bad" is v2 with its two output rows swapped, as
an update pipeline that mixed up the label order would ship: every answer inverted, loss and shapes fine.
Each is saved with labkit.train.save_checkpoint and served with `labkit serve --checkpoint`, which loads it
with weights_only=True. Taught in 14_online_learning.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from labkit.data import load_negation_corpus
from labkit.serve.config import ServeConfig
from labkit.serve.lifecycle import load_model
from labkit.serve.process import ServerProcess
from labkit.serve.replicas import start_servers
from labkit.train import fit_tensors, model_accuracy, save_checkpoint


def fine_tune(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epochs: int = 1, lr: float = 1e-3,
              seed: int = 0) -> nn.Module:
    """A copy of `model` after `epochs` of Adam on (X, y) in minibatches of 64 (the update)."""
    return fit_tensors(copy.deepcopy(model), X, y, epochs, lr=lr, batch_size=64, seed=seed)


def swap_outputs(model: nn.Module) -> nn.Module:
    """A copy whose output layer has its two rows swapped: a "bad update" that inverts every answer."""
    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad.head.weight.copy_(bad.head.weight.flip(0))
        bad.head.bias.copy_(bad.head.bias.flip(0))
    return bad


def make_text_versions(directory: str | Path, update_rows: int = 128,
                       test_rows: int = 500) -> dict[str, dict]:
    """Save v1, v2 (fine-tuned on update_rows validation sentences) and bad; {name: {"path", "test_accuracy"}}.

    test_accuracy is measured on the first test_rows test sentences."""
    directory = Path(directory)
    loaded = load_model("text", evaluate=False)
    corpus = load_negation_corpus()
    X_val = torch.from_numpy(loaded.preprocess(corpus.val[:update_rows]))
    X_test = torch.from_numpy(loaded.preprocess(corpus.test[:test_rows]))
    v2 = fine_tune(loaded.model, X_val, corpus.y_val[:update_rows])
    out = {}
    for name, model in (("v1", loaded.model), ("v2", v2), ("bad", swap_outputs(v2))):
        path = save_checkpoint(directory / f"text-{name}.pt", model)
        out[name] = {"path": str(path), "test_accuracy": model_accuracy(model, X_test, corpus.y_test[:test_rows])}
    return out


def start_versions(checkpoints: dict[str, str], config: ServeConfig = ServeConfig()) -> dict[str, ServerProcess]:
    """One `labkit serve --checkpoint PATH` replica per version, started together; {name: server}."""
    servers = start_servers([config.replace(checkpoint=str(path)) for path in checkpoints.values()])
    return dict(zip(checkpoints, servers))
