"""Datasets for the course: sklearn digits, generated shapes, a generated negation corpus.

Nothing is downloaded. Generated files live in data/ with SHA-256 sums that every load checks.
"""
from __future__ import annotations

import hashlib
import math
import os
import random
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from labkit.paths import DATA_DIR

CHECKSUM_FILE = "CHECKSUMS.sha256"
DATA_FILES = ("negation.tsv", "shapes.npz")
REGENERATE_HINT = "regenerate it with `labkit data --regenerate`"
SHAPES_PER_CLASS = 400  # 12 classes x 400 = 4800 images, ~4 MB compressed
SHAPES_SEED = 0
CORPUS_SIZES = {"train": 6000, "val": 1000, "test": 1000}
CORPUS_SEED = 0


class DataError(RuntimeError):
    """A shipped data file is missing or does not match its checksum."""


def data_dir() -> Path:
    """The data folder: $LABKIT_DATA_DIR if set, else the repo's data/."""
    return Path(os.environ.get("LABKIT_DATA_DIR") or DATA_DIR)


# ---------------------------------------------------------------- splits and loaders


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors elementwise has no single truth value
class Split:
    """Image or tabular tensors split three ways. Taught in 01_cnn_image_classification."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]

    def subset_train(self, n_per_class: int, seed: int = 0) -> Split:
        """Keep n_per_class training examples of every class (val/test unchanged)."""
        if n_per_class < 1:
            raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
        rng, y = np.random.default_rng(seed), self.y_train.numpy()
        picks = []
        for c, name in enumerate(self.classes):
            pool = np.flatnonzero(y == c)
            if len(pool) < n_per_class:
                raise ValueError(f"class {name!r} has {len(pool)} training examples, asked for {n_per_class}")
            picks.append(rng.choice(pool, n_per_class, replace=False))
        idx = torch.from_numpy(rng.permutation(np.concatenate(picks)))  # classes interleaved
        return replace(self, X_train=self.X_train[idx], y_train=self.y_train[idx])


def _split_indices(y: np.ndarray, seed: int, val_frac: float, test_frac: float) -> tuple[np.ndarray, ...]:
    """Stratified train/val/test index arrays."""
    from sklearn.model_selection import train_test_split  # lazy: sklearn takes ~2 s to import

    if len(y) == 0:
        raise ValueError("cannot split an empty dataset")
    if not (0 < val_frac < 1 and 0 < test_frac < 1 and val_frac + test_frac < 1):
        raise ValueError(f"need 0 < val_frac, test_frac and val_frac + test_frac < 1; got {val_frac}, {test_frac}")
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=test_frac, stratify=y, random_state=seed)
    train, val = train_test_split(rest, test_size=val_frac / (1 - test_frac), stratify=y[rest], random_state=seed)
    return train, val, test


def _make_split(X: np.ndarray, y: np.ndarray, classes: tuple[str, ...], seed: int, val_frac: float,
                test_frac: float) -> Split:
    """Split numpy arrays into a Split of float32 / int64 tensors."""
    parts = _split_indices(y, seed, val_frac, test_frac)
    tensors = [t for i in parts for t in (torch.from_numpy(X[i]).float(), torch.from_numpy(y[i]).long())]
    return Split(*tensors, classes=classes)


def load_digits_split(seed: int = 0, val_frac: float = 0.15, test_frac: float = 0.15) -> Split:
    """sklearn's 1797 8x8 digits as (N,1,8,8) floats in [0,1], stratified. Taught in 01_cnn_image_classification."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    classes = tuple(str(c) for c in digits.target_names)
    return _make_split(X, digits.target.astype(np.int64), classes, seed, val_frac, test_frac)


def make_loader(X: torch.Tensor, y: torch.Tensor, batch_size: int = 64, shuffle: bool = False,
                seed: int = 0) -> DataLoader:
    """A DataLoader over (X, y); shuffling is seeded. Taught in 01_cnn_image_classification."""
    if len(X) == 0:
        raise ValueError("make_loader got an empty X")
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=shuffle, generator=generator)


def minibatches(*tensors: torch.Tensor, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
    """One pass over equally long tensors in slices of batch_size rows, in order or in a fresh random order.

    Shuffling draws one torch.randperm per call, from `generator` (on its device) or else from torch's global
    generator on the tensors' device: the same draws the course's hand-written loops made, so results repeat.
    """
    if not tensors or batch_size < 1:
        raise ValueError(f"need at least one tensor and batch_size >= 1; got {len(tensors)}, {batch_size}")
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"tensors must be equally long; got lengths {[len(t) for t in tensors]}")
    if not shuffle:
        for i in range(0, n, batch_size):
            yield tuple(t[i:i + batch_size] for t in tensors)
        return
    device = generator.device if generator is not None else tensors[0].device
    order = torch.randperm(n, generator=generator, device=device)
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        yield tuple(t[idx] for t in tensors)


# ---------------------------------------------------------------- shapes (integer-exact drawing)
# Each image is drawn on a 128x128 grid (4x4 supersampling) in integer coordinates of 1/8 pixel,
# rotated with a fixed-point matrix (x 4096), so the bytes are the same on every machine.

_K = 4096
_Q = 2 * np.arange(128, dtype=np.int64) + 1  # sub-pixel centres, in 1/8-pixel units


def _max_abs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(x), np.abs(y))


_SHAPES = {  # (x, y, r) -> inside mask; y points down, r is the size scaled like x and y
    "circle": lambda x, y, r: x * x + y * y <= r * r,
    "square": lambda x, y, r: 4 * _max_abs(x, y) <= 3 * r,
    "triangle": lambda x, y, r: (2 * y <= r) & (1000 * y >= 1732 * np.abs(x) - 1000 * r),
    "plus": lambda x, y, r: ((4 * np.abs(x) <= r) & (np.abs(y) <= r)) | ((4 * np.abs(y) <= r) & (np.abs(x) <= r)),
    "cross": lambda x, y, r: ((20 * np.abs(x - y) <= 7 * r) & (10 * np.abs(x + y) <= 14 * r))
    | ((20 * np.abs(x + y) <= 7 * r) & (10 * np.abs(x - y) <= 14 * r)),
    "ring": lambda x, y, r: (x * x + y * y <= r * r) & (25 * (x * x + y * y) >= 9 * r * r),
    "hbar": lambda x, y, r: (np.abs(x) <= r) & (5 * np.abs(y) <= r),
    "vbar": lambda x, y, r: (np.abs(y) <= r) & (5 * np.abs(x) <= r),
    "diamond": lambda x, y, r: np.abs(x) + np.abs(y) <= r,
    "half_disc": lambda x, y, r: (25 * x * x + (5 * y - 2 * r) ** 2 <= 25 * r * r) & (5 * y <= 2 * r),
    "ellipse": lambda x, y, r: x * x + 4 * y * y <= r * r,
    "hollow_square": lambda x, y, r: (20 * _max_abs(x, y) >= 9 * r) & (5 * _max_abs(x, y) <= 4 * r),
}
SHAPES_CLASSES: tuple[str, ...] = tuple(_SHAPES)


def _coverage(name: str, cx: int, cy: int, radius: int, deg: int) -> np.ndarray:
    """Sub-pixels (0..16) of each of the 32x32 pixels that the shape covers."""
    cos, sin = round(math.cos(math.radians(deg)) * _K), round(math.sin(math.radians(deg)) * _K)
    dx, dy = _Q[None, :] - cx, _Q[:, None] - cy  # (1, 128), (128, 1)
    inside = _SHAPES[name](cos * dx + sin * dy, cos * dy - sin * dx, radius * _K)  # (128, 128)
    return inside.reshape(32, 4, 32, 4).sum(axis=(1, 3))  # (32, 32)


def _draw_shape(rng: np.random.Generator, name: str) -> np.ndarray:
    """One (32,32,3) uint8 image: random size, position, rotation, colours and noise."""
    radius = int(rng.integers(48, 97))  # 6..12 px
    reach = radius * 115 // 100 + 4  # furthest a shape reaches from its centre, plus half a pixel
    cx, cy = (int(v) for v in rng.integers(reach, 257 - reach, size=2))
    deg = int(rng.integers(-15, 16))  # small, so square/diamond and plus/cross stay distinct
    cover = _coverage(name, cx, cy, radius, deg)[..., None]  # (32, 32, 1)
    dark, light = rng.integers(0, 96, size=3), rng.integers(150, 256, size=3)
    fg, bg = (light, dark) if rng.integers(2) else (dark, light)
    img = (fg * cover + bg * (16 - cover) + 8) // 16 + rng.integers(-24, 25, size=(32, 32, 1))  # grey noise
    return np.clip(img, 0, 255).astype(np.uint8)


def generate_shapes(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,32,32,3) uint8 images and int64 labels, classes interleaved. Taught in 01_cnn_image_classification."""
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    rng = np.random.default_rng(seed)
    y = np.tile(np.arange(len(SHAPES_CLASSES), dtype=np.int64), n_per_class)
    return np.stack([_draw_shape(rng, SHAPES_CLASSES[c]) for c in y]), y


def load_shapes_split(seed: int = 0, val_frac: float = 0.15, test_frac: float = 0.15,
                      limit: int | None = None) -> Split:
    """Shipped shapes as (N,3,32,32) floats in [0,1]; limit caps the total. Taught in 01_cnn_image_classification."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    with np.load(_verified("shapes.npz")) as npz:
        X, y = npz["X"], npz["y"]
    if limit is not None and limit < len(y):
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(np.arange(len(y)), train_size=limit, stratify=y, random_state=seed)
        X, y = X[np.sort(keep)], y[np.sort(keep)]
    X = X.transpose(0, 3, 1, 2).astype(np.float32) / 255  # (N, 3, 32, 32)
    return _make_split(X, y, SHAPES_CLASSES, seed, val_frac, test_frac)


# ---------------------------------------------------------------- negation corpus
# The label is the polarity of the LAST clause: "not" flips it, and after "but" the first clause
# no longer counts. A "but" sentence and its twin (predicates swapped) share a bag of words but not
# a label, so a bag-of-words model is stuck near chance on them; an RNN reading in order is not.

SUBJECTS = ("the food", "the service", "the plot", "the acting", "the music",
            "the staff", "the room", "the view", "the price", "the ending")
POSITIVE = ("good", "great", "nice", "fine", "excellent", "wonderful", "pleasant", "superb")
NEGATIVE = ("bad", "awful", "poor", "terrible", "boring", "dull", "horrible", "weak")
VERBS = ("was", "is")
INTENSIFIERS = ("", "", "very", "really")  # half the predicates are not intensified
P_NOT = 0.3  # chance a predicate is negated


def _predicate(rng: random.Random) -> tuple[str, bool]:
    """A predicate such as "not very good" and whether it is positive."""
    positive, negated = rng.random() < 0.5, rng.random() < P_NOT
    words = ["not"] * negated + [rng.choice(INTENSIFIERS), rng.choice(POSITIVE if positive else NEGATIVE)]
    return " ".join(w for w in words if w), positive != negated


def _sentences(rng: random.Random) -> list[tuple[str, int]]:
    """One single-clause, "and" or "but" sentence; a "but" sentence may come with its twin."""
    kind = rng.choices(("single", "and", "but"), weights=(0.45, 0.3, 0.25))[0]
    pred2, pos2 = _predicate(rng)
    if kind == "single":
        return [(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {pred2}", int(pos2))]
    pred1, pos1 = _predicate(rng)
    while (pos1 == pos2) != (kind == "and"):  # "and" joins agreeing clauses, "but" contrasting ones
        pred1, pos1 = _predicate(rng)
    subj1, subj2 = rng.sample(SUBJECTS, 2)
    verb1, verb2 = rng.choice(VERBS), rng.choice(VERBS)
    out = [(f"{subj1} {verb1} {pred1} {kind} {subj2} {verb2} {pred2}", int(pos2))]
    if kind == "but" and rng.random() < 0.5:  # twin: same words, opposite label
        out.append((f"{subj1} {verb1} {pred2} but {subj2} {verb2} {pred1}", int(pos1)))
    return out


def generate_negation_corpus(n: int, seed: int) -> list[tuple[str, int]]:
    """n shuffled (sentence, label) pairs, label 1 = positive. Taught in 02_rnn_sequence_classification."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng, out = random.Random(seed), []
    while len(out) < n:
        out.extend(_sentences(rng))
    out = out[:n]
    rng.shuffle(out)
    return out


@dataclass(frozen=True, eq=False)
class TextSplit:
    """Sentences and int64 labels split three ways. Taught in 02_rnn_sequence_classification."""

    train: list[str]
    y_train: torch.Tensor
    val: list[str]
    y_val: torch.Tensor
    test: list[str]
    y_test: torch.Tensor
    classes: tuple[str, ...] = ("negative", "positive")


def load_negation_corpus(limit: int | None = None) -> TextSplit:
    """The shipped corpus (6000/1000/1000); limit caps the training set. Taught in 02_rnn_sequence_classification."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    rows = _verified("negation.tsv").read_text(encoding="utf-8").splitlines()[1:]
    parts: dict[str, tuple[list[str], list[int]]] = {name: ([], []) for name in CORPUS_SIZES}
    for row in rows:
        split, label, text = row.split("\t")
        parts[split][0].append(text)
        parts[split][1].append(int(label))
    (train, y_train), (val, y_val), (test, y_test) = (parts[name] for name in CORPUS_SIZES)
    labels = [torch.tensor(y, dtype=torch.int64) for y in (y_train[:limit], y_val, y_test)]
    return TextSplit(train[:limit], labels[0], val, labels[1], test, labels[2])


# ---------------------------------------------------------------- files and checksums


def make_reversal_task(n: int, length: int = 6, vocab_size: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Toy encoder-decoder task: src ids in [2, vocab_size) of shape (n, length), tgt = src reversed.

    Ids 0 and 1 stay free for padding and BOS. Taught in 02_rnn_sequence_classification.
    """
    if n < 1 or length < 1 or vocab_size < 3:
        raise ValueError(f"need n >= 1, length >= 1, vocab_size >= 3; got n={n}, length={length}, vocab_size={vocab_size}")
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(2, vocab_size, (n, length), generator=g)  # (n, length)
    return src, src.flip(1)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read_checksums(directory: Path) -> dict[str, str]:
    """{filename: sha256} from CHECKSUMS.sha256 (sha256sum format)."""
    path = directory / CHECKSUM_FILE
    if not path.is_file():
        raise DataError(f"{path} is missing; {REGENERATE_HINT}")
    pairs = (line.split(maxsplit=1) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return {name.lstrip("*"): digest for digest, name in pairs}


def _verify_file(directory: Path, name: str, sums: dict[str, str]) -> Path:
    path = directory / name
    if name not in sums:
        raise DataError(f"{path} has no entry in {directory / CHECKSUM_FILE}; {REGENERATE_HINT}")
    if not path.is_file():
        raise DataError(f"{path} is missing; {REGENERATE_HINT}")
    if _sha256(path) != sums[name]:
        raise DataError(f"{path} is corrupt (its SHA-256 does not match {CHECKSUM_FILE}); {REGENERATE_HINT}")
    return path


def _verified(name: str) -> Path:
    """Path of a shipped data file, after checking its SHA-256."""
    directory = data_dir()
    return _verify_file(directory, name, _read_checksums(directory))


def verify_checksums(directory: Path | None = None) -> None:
    """Raise DataError unless every data file matches CHECKSUMS.sha256."""
    directory = Path(directory) if directory is not None else data_dir()
    sums = _read_checksums(directory)
    for name in sorted(set(DATA_FILES) | set(sums)):
        _verify_file(directory, name, sums)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """np.savez_compressed with fixed zip timestamps, so the bytes do not depend on the clock."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as f:
                np.lib.format.write_array(f, np.asarray(array), allow_pickle=False)


def _write_corpus(path: Path, rows: list[tuple[str, int]]) -> None:
    splits = [name for name, size in CORPUS_SIZES.items() for _ in range(size)]
    lines = ["split\tlabel\ttext"] + [f"{s}\t{label}\t{text}" for s, (text, label) in zip(splits, rows)]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))


def regenerate(directory: Path | None = None) -> dict[str, str]:
    """Write shapes.npz, negation.tsv and CHECKSUMS.sha256; return {filename: sha256}."""
    directory = Path(directory) if directory is not None else data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    X, y = generate_shapes(SHAPES_PER_CLASS, SHAPES_SEED)
    _save_npz(directory / "shapes.npz", X=X, y=y, classes=np.array(SHAPES_CLASSES))
    _write_corpus(directory / "negation.tsv", generate_negation_corpus(sum(CORPUS_SIZES.values()), CORPUS_SEED))
    sums = {name: _sha256(directory / name) for name in DATA_FILES}
    lines = "".join(f"{sums[name]}  {name}\n" for name in sorted(sums))
    (directory / CHECKSUM_FILE).write_text(lines, encoding="utf-8", newline="\n")
    return sums
