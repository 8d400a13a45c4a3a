"""Per-request preprocessing of the served models: raw JSON inputs -> a validated, batched NumPy array.

Runs on the server's event loop for every request, so it is NumPy, not torch, and needs no weights (a
--no-model server uses it too). Taught in 09_async_serving.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from labkit.preprocess import Vocab, tokenize

MAX_LEN = 32            # tokens per text input (longer texts are truncated; the corpus' longest has 13)
IMAGE_SHAPE = (3, 32, 32)
MAX_TEXT_CHARS = 2_000  # tokenizing is O(chars): a cap keeps one request from stalling the loop
FLOAT32_MAX = float(np.finfo(np.float32).max)  # ~3.4e38: a larger pixel would become inf in float32


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
        if a.dtype.kind not in "iuf" and a.dtype != np.bool_:
            raise InputError(f"inputs[{i}] must hold only numbers; got {a.dtype.name} values", "wrong_dtype")
        if a.shape != IMAGE_SHAPE:
            raise InputError(f"inputs[{i}] has shape {a.shape}; expected {IMAGE_SHAPE}", "wrong_shape")
        if _has_bool(x, a):  # one message whether every pixel or a single one is a boolean
            raise InputError(f"inputs[{i}] holds a boolean (true/false); pixels must be numbers", "wrong_dtype")
        if not np.isfinite(a).all():  # checked before the cast to float32, which turns 1e39 into inf
            raise InputError(f"inputs[{i}] contains NaN or infinity", "not_finite")
        low, high = a.min(), a.max()
        if max(-low, high) > FLOAT32_MAX:
            raise InputError(f"inputs[{i}] has a value out of range for float32 (min {low:.3g}, max {high:.3g}; "
                             f"the float32 limit is ±{FLOAT32_MAX:.2g})", "out_of_range")
        if low < 0 or high > 1:
            raise InputError(f"inputs[{i}] has pixel values outside [0, 1] (min {low:.3g}, max {high:.3g})",
                             "out_of_range")
        return a.astype(np.float32)


def _has_bool(x: list, a: np.ndarray) -> bool:
    """Whether the 3x32x32 nested list x (already read into a) holds a JSON true/false anywhere.

    np.array reads [0.5, true] as [0.5, 1.0], so a single boolean hides in a float array; only an all-boolean
    image shows as dtype bool. A boolean can only be read as 0 or 1, so the walk over all 3,072 values (~57 us
    here, against ~86 us for np.array itself) runs only when a 0 or a 1 is present (a ~5 us test)."""
    if a.dtype == np.bool_:
        return True
    if not ((a == 0) | (a == 1)).any():
        return False
    return bool in set(map(type, itertools.chain.from_iterable(itertools.chain.from_iterable(x))))


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
