"""The served models: build, train-once-and-cache or load, per-request preprocessing, batched predict.

"text" is the default: a GRU over token ids, whose throughput grows ~6-10x from batch 1 to 64 on 2
cores, so batching pays. "image" is a small 32x32 CNN on the shapes data, where batching buys ~2-4x.
Taught in 09_async_serving.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from labkit.models import RNNClassifier, SmallCNN
from labkit.preprocess import Vocab, tokenize

RECIPE_VERSION = 1      # bump when a training recipe changes: the cached weights are then retrained
MAX_LEN = 32            # tokens per text input (longer texts are truncated; the corpus' longest has 13)
EMBED_DIM, HIDDEN_DIM = 128, 256
IMAGE_SHAPE = (3, 32, 32)
MAX_TEXT_CHARS = 2_000  # tokenizing is O(chars): a cap keeps one request from stalling the loop
SEED = 0


class InputError(ValueError):
    """A request input that cannot be served; `code` is the short machine-readable reason."""

    def __init__(self, message: str, code: str = "bad_input"):
        super().__init__(message)
        self.code = code


def cache_dir() -> Path:
    """Where trained serving weights are kept: $LABKIT_CACHE/serving or ~/.cache/labkit/serving."""
    root = os.environ.get("LABKIT_CACHE") or Path.home() / ".cache" / "labkit"
    return Path(root) / "serving"


# ------------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class TextPreprocessor:
    """Raw strings -> (k, MAX_LEN) int64 token ids, validated one input at a time.

    NumPy, not torch, on the request path: np.array on a few short lists costs ~2 us, torch.tensor ~9 us."""
    vocab: Vocab
    max_len: int = MAX_LEN

    def __call__(self, inputs: list) -> np.ndarray:
        encode, pad, rows = self.vocab.encode, self.vocab.pad_id, []
        for i, text in enumerate(inputs):
            if not isinstance(text, str):
                raise InputError(f"inputs[{i}] must be a string for the text model; got {type(text).__name__}",
                                 "wrong_dtype")
            if len(text) > MAX_TEXT_CHARS:
                raise InputError(f"inputs[{i}] has {len(text)} characters; the limit is {MAX_TEXT_CHARS}",
                                 "text_too_long")
            ids = encode(tokenize(text))[: self.max_len]
            if not ids:
                raise InputError(f"inputs[{i}] has no tokens", "empty_text")
            rows.append(ids + [pad] * (self.max_len - len(ids)))
        return np.array(rows, dtype=np.int64)  # (k, MAX_LEN)


@dataclass(frozen=True)
class ImagePreprocessor:
    """3x32x32 nested lists of numbers in [0, 1] -> (k, 3, 32, 32) float32, validated one input at a time."""

    def __call__(self, inputs: list) -> np.ndarray:
        return np.stack([self._one(i, x) for i, x in enumerate(inputs)])  # (k, 3, 32, 32)

    @staticmethod
    def _one(i: int, x: object) -> np.ndarray:
        if not isinstance(x, list):
            raise InputError(f"inputs[{i}] must be a 3x32x32 nested list of numbers; got {type(x).__name__}",
                             "wrong_dtype")
        try:
            a = np.array(x)  # no dtype here: np.array(["1.0"], dtype=float32) would quietly parse strings
        except ValueError as err:  # ragged lists
            raise InputError(f"inputs[{i}] is not a regular 3x32x32 array: {err}", "wrong_shape") from None
        if a.dtype.kind not in "iuf":
            raise InputError(f"inputs[{i}] must hold only numbers; got {a.dtype.name} values", "wrong_dtype")
        if a.shape != IMAGE_SHAPE:
            raise InputError(f"inputs[{i}] has shape {a.shape}; expected {IMAGE_SHAPE}", "wrong_shape")
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise InputError(f"inputs[{i}] contains NaN or infinity", "not_finite")
        if a.min() < 0 or a.max() > 1:
            raise InputError(f"inputs[{i}] has pixel values outside [0, 1] (min {a.min():.3g}, max {a.max():.3g})",
                             "out_of_range")
        return a


def text_vocab() -> Vocab:
    """The course vocabulary: every word of the negation corpus' training split."""
    from labkit.data import load_negation_corpus

    return Vocab.build([tokenize(text) for text in load_negation_corpus().train])


def make_preprocessor(name: str) -> TextPreprocessor | ImagePreprocessor:
    """The per-request preprocessing of model `name` (no weights needed: a --no-model server uses it too)."""
    if name == "text":
        return TextPreprocessor(text_vocab())
    if name == "image":
        return ImagePreprocessor()
    raise ValueError(f"model must be 'text' or 'image'; got {name!r}")


# ------------------------------------------------------------------------------- models and weights


def build_model(name: str, vocab_size: int | None = None) -> nn.Module:
    """An untrained serving model: GRU classifier (embedding 128, hidden 256) or SmallCNN for 3x32x32."""
    if name == "text":
        return RNNClassifier(vocab_size or len(text_vocab()), num_classes=2, embed_dim=EMBED_DIM,
                             hidden_dim=HIDDEN_DIM, cell="gru")
    if name == "image":
        from labkit.data import SHAPES_CLASSES

        return SmallCNN(in_channels=3, num_classes=len(SHAPES_CLASSES), image_size=32)
    raise ValueError(f"model must be 'text' or 'image'; got {name!r}")


def _datasets(name: str, preprocess) -> tuple[torch.Tensor, ...]:
    """(X_train, y_train, X_test, y_test) already preprocessed for the model."""
    if name == "text":
        from labkit.data import load_negation_corpus

        c = load_negation_corpus()
        X_train, X_test = (torch.from_numpy(preprocess(texts)) for texts in (c.train, c.test))
        return X_train, c.y_train, X_test, c.y_test
    from labkit.data import load_shapes_split

    s = load_shapes_split(seed=SEED)
    return s.X_train, s.y_train, s.X_test, s.y_test


def _train(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int) -> None:
    """Adam at 3e-3 over shuffled minibatches: ~4 s for the GRU (1 epoch), ~7 s for the CNN (5) on one thread."""
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=gen)
        for i in range(0, len(X), batch_size):
            idx = perm[i:i + batch_size]
            loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()


@torch.inference_mode()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Held-out accuracy, in eval mode, in chunks of 256."""
    model.eval()
    right = sum(int((model(X[i:i + 256]).argmax(1) == y[i:i + 256]).sum()) for i in range(0, len(X), 256))
    return right / len(X)


def cached_weights_path(name: str) -> Path:
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
    from labkit.train import load_checkpoint

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
        acc = accuracy(model, X_test, y_test)
    return LoadedModel(name, model, preprocess, path, acc, time.perf_counter() - start)


# ------------------------------------------------------------------------------- predict


@torch.inference_mode()
def predict_probs(model: nn.Module, x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Class probabilities (n, K) as float32 NumPy for a preprocessed batch x (n, ...), in eval mode."""
    return model(torch.as_tensor(x)).softmax(dim=-1).numpy()  # as_tensor: no copy of a NumPy array


def fixed_probs(n: int, num_classes: int) -> np.ndarray:
    """The --no-model answer: uniform probabilities for n inputs."""
    return np.full((n, num_classes), 1.0 / num_classes, dtype=np.float32)


def num_classes(name: str) -> int:
    if name == "text":
        return 2
    from labkit.data import SHAPES_CLASSES

    return len(SHAPES_CLASSES)

