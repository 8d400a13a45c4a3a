"""Per-request preprocessing of the served models: raw JSON inputs -> a validated, batched NumPy array.

Runs on the server's event loop for every request, so it is NumPy, not torch, and needs no weights (a
--no-model server uses it too). Taught in 09_async_serving.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labkit.preprocess import Vocab, tokenize

MAX_LEN = 32            # tokens per text input (longer texts are truncated; the corpus' longest has 13)
IMAGE_SHAPE = (3, 32, 32)
MAX_TEXT_CHARS = 2_000  # tokenizing is O(chars): a cap keeps one request from stalling the loop


class InputError(ValueError):
    """A request input that cannot be served; `code` is the short machine-readable reason."""

    def __init__(self, message: str, code: str = "bad_input"):
        super().__init__(message)
        self.code = code


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
