"""The served models' lifecycle: build, train once (seeded, one thread), cache the weights, load them.

"text" is the default: a GRU over token ids, whose throughput grows ~6-10x from batch 1 to 64 on 2
cores, so batching pays. "image" is a small 32x32 CNN on the shapes data, where batching buys ~2-4x.
Per-request preprocessing lives in labkit.serve.preprocessing, the forward in labkit.serve.engines.
Taught in 09_async_serving.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from labkit.data import SHAPES_CLASSES, load_negation_corpus, load_shapes_split
from labkit.models import RNNClassifier, SmallCNN
from labkit.serve.preprocessing import ImagePreprocessor, TextPreprocessor, make_preprocessor, text_vocab
from labkit.train import fit_tensors, load_checkpoint, model_accuracy

RECIPE_VERSION = 1      # bump when a training recipe changes: the cached weights are then retrained
EMBED_DIM, HIDDEN_DIM = 128, 256
SEED = 0


def cache_dir() -> Path:
    """Where trained serving weights are kept: $LABKIT_CACHE/serving or ~/.cache/labkit/serving."""
    root = os.environ.get("LABKIT_CACHE") or Path.home() / ".cache" / "labkit"
    return Path(root) / "serving"


def num_classes(name: str) -> int:
    """Classes model `name` answers: 2 for text (negation corpus), one per shape for image."""
    if name == "text":
        return 2
    return len(SHAPES_CLASSES)


def build_model(name: str, vocab_size: int | None = None) -> nn.Module:
    """An untrained serving model: GRU classifier (embedding 128, hidden 256) or SmallCNN for 3x32x32."""
    if name == "text":
        return RNNClassifier(vocab_size or len(text_vocab()), num_classes=2, embed_dim=EMBED_DIM,
                             hidden_dim=HIDDEN_DIM, cell="gru")
    if name == "image":
        return SmallCNN(in_channels=3, num_classes=num_classes(name), image_size=32)
    raise ValueError(f"model must be 'text' or 'image'; got {name!r}")


def _datasets(name: str, preprocess) -> tuple[torch.Tensor, ...]:
    """(X_train, y_train, X_test, y_test) already preprocessed for the model."""
    if name == "text":
        c = load_negation_corpus()
        X_train, X_test = (torch.from_numpy(preprocess(texts)) for texts in (c.train, c.test))
        return X_train, c.y_train, X_test, c.y_test
    s = load_shapes_split(seed=SEED)
    return s.X_train, s.y_train, s.X_test, s.y_test


def _train(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int) -> None:
    """Adam at 3e-3 over shuffled minibatches: ~4 s for the GRU (1 epoch), ~7 s for the CNN (5) on one thread."""
    fit_tensors(model, X, y, epochs, lr=3e-3, batch_size=batch_size, seed=SEED)


def cached_weights_path(name: str) -> Path:
    """The cache file of model `name`'s weights under this recipe version and seed."""
    return cache_dir() / f"{name}-v{RECIPE_VERSION}-seed{SEED}.pt"


def train_and_cache(name: str, preprocess) -> Path:
    """Train model `name` deterministically on one thread and save it atomically to the cache."""
    torch.manual_seed(SEED)
    model = build_model(name, len(preprocess.vocab) if name == "text" else None)
    X, y, _, _ = _datasets(name, preprocess)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: same weights on every machine, and ~as fast on 2 cores
    try:
        _train(model, X, y, epochs=1 if name == "text" else 5, batch_size=128 if name == "text" else 64)
    finally:
        torch.set_num_threads(threads)
    path = cached_weights_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save({"architecture": type(model).__name__, "model": model.state_dict()}, tmp)
    os.replace(tmp, path)  # atomic: two servers starting at once never read half a file
    return path


@dataclass
class LoadedModel:
    """A served model in eval mode with its preprocessing, weights file and held-out accuracy."""
    name: str
    model: nn.Module
    preprocess: TextPreprocessor | ImagePreprocessor
    weights: Path
    accuracy: float
    load_s: float


def load_model(name: str, checkpoint: str | None = None, evaluate: bool = True) -> LoadedModel:
    """Load `checkpoint`, else the cached weights, else train and cache them; report held-out accuracy."""
    start = time.perf_counter()
    preprocess = make_preprocessor(name)
    path = Path(checkpoint) if checkpoint else cached_weights_path(name)
    if checkpoint is None and not path.exists():
        path = train_and_cache(name, preprocess)
    model = build_model(name, len(preprocess.vocab) if name == "text" else None)
    load_checkpoint(path, model)
    model.eval()
    acc = float("nan")
    if evaluate:
        _, _, X_test, y_test = _datasets(name, preprocess)
        acc = model_accuracy(model, X_test, y_test)
    return LoadedModel(name, model, preprocess, path, acc, time.perf_counter() - start)
