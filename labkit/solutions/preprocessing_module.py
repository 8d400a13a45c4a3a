import re
from collections import Counter

import torch
from torch import nn
from torchvision.transforms import v2


def standardize(X: torch.Tensor, mean, std) -> torch.Tensor:
    """(X - mean) / std per channel, with the given (training-split) statistics."""
    mean = torch.as_tensor(mean, dtype=X.dtype).view(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1) broadcasts over N, H, W
    std = torch.as_tensor(std, dtype=X.dtype).view(1, -1, 1, 1)
    return (X - mean) / std


def normalize_to_range(X: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Map X's global min to exactly low and its max to exactly high."""
    if low >= high:
        raise ValueError(f"low must be < high; got {low} and {high}")
    x_min, x_max = X.min(), X.max()
    if x_min == x_max:
        return torch.full_like(X, low)
    w = (X - x_min) / (x_max - x_min)  # exactly 0 at the min, exactly 1 at the max
    return (low * (1 - w) + high * w).clamp(low, high)  # both ends exact, unlike low + w * (high - low)


def augment(X: torch.Tensor, seed: int) -> torch.Tensor:
    """Each image rotated (<= 10 degrees) and randomly cropped after padding 2; seeded, per-image draws."""
    pipeline = v2.Compose([v2.RandomRotation(10), v2.RandomCrop(X.shape[-2:], padding=2)])
    with torch.random.fork_rng(devices=[]):  # the caller's random stream resumes untouched afterwards
        torch.manual_seed(seed)
        return torch.stack([pipeline(img) for img in X])  # one draw per image: (N, C, H, W)


def _hw(size) -> list[int]:
    return [size, size] if isinstance(size, int) else list(size)  # torchvision's int means "shorter edge"


def resize(X: torch.Tensor, size) -> torch.Tensor:
    """To size x size (an int) or (h, w): bilinear with antialiasing."""
    return v2.functional.resize(X, _hw(size), antialias=True)  # (N, C, h, w)


def center_crop(X: torch.Tensor, size) -> torch.Tensor:
    """The central size x size (or (h, w)) window of each image."""
    return v2.functional.center_crop(X, _hw(size))


def rotate(X: torch.Tensor, degrees: float) -> torch.Tensor:
    """Each image rotated counter-clockwise about its centre; same size, uncovered corners 0."""
    return v2.functional.rotate(X, degrees)  # nearest pixel, fill 0


_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")  # a word with inner apostrophes, or one punctuation mark


def tokenize(text: str) -> list[str]:
    """Lowercase words (keeping inner apostrophes) and single punctuation marks."""
    return _TOKEN.findall(text.lower().replace("\u2019", "'"))


def word_frequencies(token_lists: list[list[str]]) -> Counter:
    """How often each token occurs across all lists."""
    counts = Counter()
    for tokens in token_lists:
        counts.update(tokens)
    return counts


def build_vocab(token_lists: list[list[str]], min_freq: int = 1) -> dict[str, int]:
    """<pad> = 0, <unk> = 1, then tokens seen >= min_freq times, most frequent first, ties alphabetical."""
    ranked = sorted(word_frequencies(token_lists).items(), key=lambda item: (-item[1], item[0]))
    kept = [tok for tok, count in ranked if count >= min_freq and tok not in ("<pad>", "<unk>")]
    return {tok: i for i, tok in enumerate(["<pad>", "<unk>", *kept])}


def encode(tokens: list[str], vocab: dict[str, int]) -> list[int]:
    """Ids of tokens; unknown tokens get the <unk> id."""
    return [vocab.get(tok, vocab["<unk>"]) for tok in tokens]


def make_embedding(vocab: dict[str, int], dim: int, seed: int = 0) -> nn.Embedding:
    """A trainable N(0, 1) table of len(vocab) rows; the <pad> row is zero and gets no gradient."""
    weight = torch.randn(len(vocab), dim, generator=torch.Generator().manual_seed(seed))  # (V, dim)
    weight[vocab["<pad>"]] = 0.0
    return nn.Embedding.from_pretrained(weight, freeze=False, padding_idx=vocab["<pad>"])
