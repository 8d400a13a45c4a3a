"""Preprocessing: image scaling and augmentation (torchvision.transforms.v2); tokenizer, vocabulary, embeddings.

Images are float tensors (N, C, H, W). Statistics for standardization come from the training split only
and are reused for validation and test, so no information leaks from the data we evaluate on.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from torchvision.transforms import v2
# torchvision is imported inside the image functions: the text path (a model server's start-up) need not pay for it

# ---------------------------------------------------------------------------------------------- images


def _check_images(X: torch.Tensor) -> None:
    """Raise a clear error unless X is a finite, non-empty float (N, C, H, W) tensor. Taught in 01_cnn_image_classification."""
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor; got {type(X).__name__}")
    if X.ndim != 4:
        raise ValueError(f"images must be 4-D (N, C, H, W); got shape {tuple(X.shape)}")
    if not X.is_floating_point():
        raise ValueError(f"images must be a float tensor; got {X.dtype} (convert with X.float() / 255)")
    if X.numel() == 0:
        raise ValueError(f"images are empty; got shape {tuple(X.shape)}")
    n_nan = int(torch.isnan(X).sum())
    if n_nan:
        raise ValueError(f"images contain {n_nan} NaN values")
    n_inf = int(torch.isinf(X).sum())
    if n_inf:
        raise ValueError(f"images contain {n_inf} infinite values")


def channel_stats(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) std over N, H, W; each of shape (C,). Taught in 01_cnn_image_classification."""
    _check_images(X)
    return X.mean(dim=(0, 2, 3)), X.std(dim=(0, 2, 3), correction=0)  # (C,), (C,)


def _per_channel(v: torch.Tensor | Sequence[float], name: str, X: torch.Tensor) -> torch.Tensor:
    """A (C,) statistic reshaped to (1, C, 1, 1) so it broadcasts over X. Taught in 01_cnn_image_classification."""
    v = torch.as_tensor(v, dtype=X.dtype, device=X.device).reshape(-1)
    if v.numel() != X.shape[1]:
        raise ValueError(f"{name} has {v.numel()} values but images have {X.shape[1]} channels")
    return v.view(1, -1, 1, 1)


def standardize(X: torch.Tensor, mean: torch.Tensor | Sequence[float] | None = None,
                std: torch.Tensor | Sequence[float] | None = None, eps: float = 1e-8) -> torch.Tensor:
    """(X - mean) / std per channel; pass the training split's stats for val/test. Taught in 01_cnn_image_classification."""
    _check_images(X)
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std (from the training split) or neither")
    if mean is None:
        mean, std = channel_stats(X)
    # eps keeps a constant channel (std 0) finite instead of dividing by zero
    return (X - _per_channel(mean, "mean", X)) / (_per_channel(std, "std", X) + eps)  # (N, C, H, W)


def minmax_normalize(X: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Map the global min..max of X onto exactly [low, high]; constant input maps to low. Taught in 01_cnn_image_classification."""
    _check_images(X)
    if low >= high:
        raise ValueError(f"low must be < high; got low={low}, high={high}")
    x_min, x_max = X.min(), X.max()
    if x_min == x_max:
        return torch.full_like(X, low)
    w = (X - x_min) / (x_max - x_min)  # in [0, 1]; exactly 0 at the min and 1 at the max
    # low*(1-w) + high*w hits both ends exactly; low + w*(high-low) can miss `high` by one rounding step
    return (low * (1 - w) + high * w).clamp_(low, high)


def resize_images(X: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize to size x size (an int) or (H, W), with antialiasing. Taught in 01_cnn_image_classification."""
    _check_images(X)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"size must be a positive int or (H, W); got {size}")
    # an int here means a square; torchvision's own int means "shorter edge", which keeps the aspect ratio
    from torchvision.transforms.v2 import functional as TF

    return TF.resize(X, list(hw), antialias=True)  # (N, C, H', W')


def augment_pipeline(size: int, crop_padding: int = 2, degrees: float = 10.0,
                     flip: bool = False) -> "v2.Compose":
    """Random rotation, padded random crop back to size, optional horizontal flip. Taught in 01_cnn_image_classification."""
    if size < 1 or crop_padding < 0 or degrees < 0:
        raise ValueError(f"need size >= 1, crop_padding >= 0, degrees >= 0; got {size}, {crop_padding}, {degrees}")
    from torchvision.transforms import v2

    steps: list[nn.Module] = [v2.RandomRotation(degrees), v2.RandomCrop(size, padding=crop_padding)]
    if flip:  # off by default: a mirrored digit 3 or 7 is no longer that digit
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


def augment_batch(X: torch.Tensor, pipeline: "v2.Compose", seed: int) -> torch.Tensor:
    """Apply pipeline to each image with its own random draw; same seed, same batch. Taught in 01_cnn_image_classification."""
    _check_images(X)
    # v2 transforms draw from torch's global RNG; fork_rng seeds it here and restores the caller's state after
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.stack([pipeline(img) for img in X])  # (N, C, size, size)


# ------------------------------------------------------------------------------------------------ text

# a word (letters/digits, with inner apostrophes: "isn't", "o'clock"), or any single punctuation mark
_TOKEN_RE = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lowercase, then split into words (keeping "isn't" whole) and single punctuation marks. Taught in 02_rnn_sequence_classification."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str; got {type(text).__name__}")
    return _TOKEN_RE.findall(text.lower().replace("\u2019", "'"))  # curly apostrophe -> straight


def word_frequencies(token_lists: Iterable[list[str]]) -> Counter:
    """How often each token occurs across all token lists. Taught in 02_rnn_sequence_classification."""
    counts: Counter = Counter()
    for tokens in token_lists:
        counts.update(tokens)
    return counts


class Vocab:
    """Token <-> id mapping: <pad> is 0, <unk> is 1, then tokens by frequency. Taught in 02_rnn_sequence_classification."""

    PAD = "<pad>"
    UNK = "<unk>"
    __slots__ = ("itos", "stoi")

    def __init__(self, itos: Sequence[str]) -> None:
        if list(itos[:2]) != [self.PAD, self.UNK]:
            raise ValueError(f"itos must start with {self.PAD!r}, {self.UNK!r}; got {list(itos[:2])}")
        if len(set(itos)) != len(itos):
            raise ValueError("itos contains duplicate tokens")
        self.itos: list[str] = list(itos)
        self.stoi: dict[str, int] = {tok: i for i, tok in enumerate(self.itos)}

    @classmethod
    def build(cls, token_lists: Iterable[list[str]], min_freq: int = 1,
              max_size: int | None = None) -> Vocab:
        """Tokens seen >= min_freq times, most frequent first, ties alphabetical; max_size includes the 2 specials. Taught in 02_rnn_sequence_classification."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1; got {min_freq}")
        if max_size is not None and max_size < 2:
            raise ValueError(f"max_size must be >= 2 (room for {cls.PAD} and {cls.UNK}); got {max_size}")
        counts = word_frequencies(token_lists)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        words = [w for w, c in ranked if c >= min_freq and w not in (cls.PAD, cls.UNK)]
        if max_size is not None:
            words = words[: max_size - 2]
        return cls([cls.PAD, cls.UNK, *words])

    @property
    def pad_id(self) -> int:
        """Id of the padding token (0). Taught in 02_rnn_sequence_classification."""
        return self.stoi[self.PAD]

    @property
    def unk_id(self) -> int:
        """Id that every out-of-vocabulary token maps to (1). Taught in 02_rnn_sequence_classification."""
        return self.stoi[self.UNK]

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, first={self.itos[2:7]})"

    def encode(self, tokens: list[str]) -> list[int]:
        """Token ids; unknown tokens become unk_id. Taught in 02_rnn_sequence_classification."""
        unk = self.unk_id
        return [self.stoi.get(tok, unk) for tok in tokens]

    def decode(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        """Tokens for ids; an id outside the vocabulary raises IndexError. Taught in 02_rnn_sequence_classification."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        for i in ids:
            if not 0 <= int(i) < len(self):
                raise IndexError(f"id {int(i)} is out of range for a vocabulary of {len(self)} tokens")
        return [self.itos[int(i)] for i in ids]

    def encode_batch(self, texts: list[str], max_len: int) -> torch.Tensor:
        """Tokenize and encode into (B, max_len) int64, truncated or padded with pad_id. Taught in 02_rnn_sequence_classification."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not a single str")
        if len(texts) == 0:
            raise ValueError("texts is empty")
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1; got {max_len}")
        rows = [self.encode(tokenize(text))[:max_len] for text in texts]  # keep the first max_len tokens
        # pad in Python and build one tensor: one torch call per row would cost ~3x more
        return torch.tensor([ids + [self.pad_id] * (max_len - len(ids)) for ids in rows], dtype=torch.int64)

    def unknown_rate(self, texts: list[str]) -> float:
        """Fraction of the texts' tokens that map to <unk> (0.0 when there are no tokens). Taught in 02_rnn_sequence_classification."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not a single str")
        if len(texts) == 0:
            raise ValueError("texts is empty")
        ids = [i for text in texts for i in self.encode(tokenize(text))]
        return sum(i == self.unk_id for i in ids) / len(ids) if ids else 0.0


# ------------------------------------------------------------------------------------------ embeddings


def build_embedding(vocab: Vocab, dim: int, seed: int = 0) -> nn.Embedding:
    """A trainable N(0, 1) embedding table with a zero, gradient-free padding row. Taught in 02_rnn_sequence_classification."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1; got {dim}")
    gen = torch.Generator().manual_seed(seed)  # own generator: the global RNG stays untouched
    weight = torch.randn(len(vocab), dim, generator=gen)  # (V, dim), as nn.Embedding initialises
    weight[vocab.pad_id] = 0.0
    return nn.Embedding.from_pretrained(weight, freeze=False, padding_idx=vocab.pad_id)


def embedding_lookup(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Rows of weight (V, dim) for integer ids of any shape; returns (..., dim). Taught in 02_rnn_sequence_classification."""
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.int64:
        got = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"ids must be an int64 (torch.long) tensor; got {got}")
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (vocab, dim); got shape {tuple(weight.shape)}")
    bad = ids[(ids < 0) | (ids >= weight.shape[0])]
    if bad.numel():
        raise IndexError(f"id {int(bad[0])} is out of range for a vocabulary of {weight.shape[0]} rows "
                         f"({bad.numel()} bad ids in all)")
    return F.embedding(ids, weight)  # (..., dim)
