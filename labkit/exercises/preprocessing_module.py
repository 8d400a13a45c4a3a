"""Exercise: image scaling, resizing and augmentation; tokenizer, vocabulary and embeddings; graded against oracles."""
import inspect
import random
from collections import Counter

import torch
from torchvision.transforms.v2 import functional as TF

from labkit import preprocess as reference  # the oracle: imported before the submission, which may not import it
from labkit.grading.exercise import Exercise

TASK = """
Write the preprocessing a model server runs before every request. Do not import `labkit`.

Images are float tensors `(N, C, H, W)`:
- `standardize(X, mean, std)`: `(X - mean) / std` per channel, with the **given** statistics (a list or tensor of
  length C: the training split's, reused on validation and test data).
- `normalize_to_range(X, low=0.0, high=1.0)`: map the global min of X to **exactly** `low` and its max to
  **exactly** `high` (linear in between; careful: `low + w * (high - low)` can miss `high` by one rounding
  step); constant X maps to `low`; `low >= high` raises `ValueError`.
- `augment(X, seed)`: with `torchvision.transforms.v2`, rotate each image by at most 10 degrees and take a
  random crop of its size after padding 2 pixels; each image gets its own random draw, the same seed gives the
  same batch, and the caller's global random state is left as it was (`torch.random.fork_rng`).
- `resize(X, size)`: to `size x size` (an int) or `(h, w)`, bilinear with antialiasing (torchvision's int
  means "shorter edge": not here). `center_crop(X, size)`: the central window of that size.
  `rotate(X, degrees)`: counter-clockwise about the centre, same size, uncovered corners 0 (nearest pixel).

Text:
- `tokenize(text)`: lowercase; tokens are words (letters, digits, `_`, keeping inner apostrophes: `"isn't"`) or
  single punctuation marks; a curly apostrophe counts as `'`. `tokenize("Isn't it GREAT?!")` is
  `["isn't", "it", "great", "?", "!"]`.
- `word_frequencies(token_lists)` → `collections.Counter` of tokens over all lists.
- `build_vocab(token_lists, min_freq=1)` → `dict` token → id: `"<pad>"` is 0, `"<unk>"` is 1, then every token
  seen at least `min_freq` times, most frequent first, ties in alphabetical order.
- `encode(tokens, vocab)` → list of ids; a token not in the vocabulary gets the `<unk>` id.
- `make_embedding(vocab, dim, seed=0)` → a trainable `nn.Embedding` of `len(vocab)` rows of `dim` numbers,
  drawn N(0, 1) from `torch.Generator().manual_seed(seed)`; the `<pad>` row is zero and never gets a gradient
  (`padding_idx`). Looking up ids `(B, T)` gives `(B, T, dim)`: row `ids[b, t]` of the table.

Graded against `labkit.preprocess`, `torchvision.transforms.v2` and `collections.Counter` on random cases and edge
cases: statistics given vs the batch's own, the exact ends of `normalize_to_range`, sizes up and down and
non-square, unknown tokens, the `min_freq` cut, ties, the padding row. Taught in notebook 01 §1 "Data and
preprocessing" (images) and notebook 02 §1 "The preprocessing pipeline" (text).
"""

STUB = '''
from collections import Counter

import torch
from torch import nn
from torchvision.transforms import v2


def standardize(X: torch.Tensor, mean, std) -> torch.Tensor:
    """(X - mean) / std per channel, with the given (training-split) statistics."""
    raise NotImplementedError("standardize")


def normalize_to_range(X: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Map X's global min to exactly low and its max to exactly high."""
    raise NotImplementedError("normalize_to_range")


def augment(X: torch.Tensor, seed: int) -> torch.Tensor:
    """Each image rotated (<= 10 degrees) and randomly cropped after padding 2; seeded, per-image draws."""
    raise NotImplementedError("augment")


def resize(X: torch.Tensor, size) -> torch.Tensor:
    """To size x size (an int) or (h, w): bilinear with antialiasing."""
    raise NotImplementedError("resize")


def center_crop(X: torch.Tensor, size) -> torch.Tensor:
    """The central size x size (or (h, w)) window of each image."""
    raise NotImplementedError("center_crop")


def rotate(X: torch.Tensor, degrees: float) -> torch.Tensor:
    """Each image rotated counter-clockwise about its centre; same size, uncovered corners 0."""
    raise NotImplementedError("rotate")


def tokenize(text: str) -> list[str]:
    """Lowercase words (keeping inner apostrophes) and single punctuation marks."""
    raise NotImplementedError("tokenize")


def word_frequencies(token_lists: list[list[str]]) -> Counter:
    """How often each token occurs across all lists."""
    raise NotImplementedError("word_frequencies")


def build_vocab(token_lists: list[list[str]], min_freq: int = 1) -> dict[str, int]:
    """<pad> = 0, <unk> = 1, then tokens seen >= min_freq times, most frequent first, ties alphabetical."""
    raise NotImplementedError("build_vocab")


def encode(tokens: list[str], vocab: dict[str, int]) -> list[int]:
    """Ids of tokens; unknown tokens get the <unk> id."""
    raise NotImplementedError("encode")


def make_embedding(vocab: dict[str, int], dim: int, seed: int = 0) -> nn.Embedding:
    """A trainable N(0, 1) table of len(vocab) rows; the <pad> row is zero and gets no gradient."""
    raise NotImplementedError("make_embedding")
'''

SENTENCES = ["Isn't it GREAT?!", "the food was not very good , but the view was superb.", "  spaces\tand\nlines  ",
             "O'Neil's dog-house cost $5.50 (too much)", "It\u2019s fine", "", "...", "snake_case and CAPS 42x",
             "rock 'n' roll", "don't stop'"]


def _images(seed: int, shape=(6, 3, 5, 7), scale: float = 4.0, shift: float = 2.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale + shift


def _digits32(n: int = 16) -> torch.Tensor:
    """n test digits as (n, 3, 32, 32); bilinear upsampling equals labkit.preprocess.resize_images here."""
    from labkit.data import load_digits_split

    X = load_digits_split().X_test[:n]  # (n, 1, 8, 8)
    return torch.nn.functional.interpolate(X, size=(32, 32), mode="bilinear").repeat(1, 3, 1, 1)


def _corpus(seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    words = ["good", "bad", "not", "the", "food", "was", "is", "but", "very", "view", "a", "b"]
    return [[rng.choice(words[: rng.randint(3, len(words))]) for _ in range(rng.randint(0, 9))] for _ in range(30)]


def test_standardize(sub):
    """(X - mean) / std per channel with the statistics given, not the batch's own"""
    train, val = _images(0), _images(1, scale=2.0, shift=-1.0)
    mean, std = reference.channel_stats(train)
    for m, s in [(mean, std), (mean.tolist(), std.tolist())]:
        got = sub.standardize(val, m, s)
        assert got.shape == val.shape, f"standardize changed the shape {tuple(val.shape)} to {tuple(got.shape)}"
        assert torch.allclose(got, reference.standardize(val, mean, std), atol=1e-4), (
            "standardize(X_val, train_mean, train_std) is wrong: subtract the given per-channel mean and divide by "
            "the given std (shape (C,) -> (1, C, 1, 1)); do not recompute them from X")


def test_normalize_to_range(sub):
    """min maps to exactly low, max to exactly high; constant input gives low; low >= high raises"""
    for k, (low, high) in enumerate([(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0), (-3.7, 12.1), (-0.5, 0.7)] * 4):
        X = _images(k)
        got = sub.normalize_to_range(X, low, high)
        assert torch.allclose(got, reference.minmax_normalize(X, low, high), atol=1e-5), (
            f"normalize_to_range(X, {low}, {high}) is wrong: w = (X - min) / (max - min), then low..high")
        lo, hi = torch.tensor(low, dtype=X.dtype), torch.tensor(high, dtype=X.dtype)
        assert got.min() == lo and got.max() == hi, (
            f"normalize_to_range(X, {low}, {high}) spans [{got.min().item():.9g}, {got.max().item():.9g}]: the ends "
            f"must be exactly {low} and {high} (low * (1 - w) + high * w hits both)")
    constant = sub.normalize_to_range(torch.full((2, 1, 3, 3), 0.4), -1.0, 1.0)
    assert torch.equal(constant, torch.full((2, 1, 3, 3), -1.0)), (
        "a constant image must map to low (there is no range to stretch; do not divide by zero)")
    try:
        sub.normalize_to_range(X, 1.0, 1.0)
    except ValueError:
        return
    raise AssertionError("normalize_to_range(X, low=1.0, high=1.0) must raise ValueError")


def _correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1) - a.flatten(1).mean(1, keepdim=True), b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))  # (N,)


def test_augment_is_seeded_and_per_image(sub):
    """same shape; same seed same batch, other seed other batch; each image its own draw"""
    X = _digits32()
    out = sub.augment(X, seed=0)
    assert out.shape == X.shape and out.dtype == X.dtype, f"augment returned {tuple(out.shape)} {out.dtype}"
    assert torch.equal(out, sub.augment(X, seed=0)), "the same seed must give the same batch (seed torch inside)"
    assert not torch.equal(out, sub.augment(X, seed=1)), "another seed should give another batch"
    same = sub.augment(X[:1].repeat(8, 1, 1, 1), seed=0)
    assert len({tuple(img.flatten().tolist()) for img in same}) > 1, (
        "8 copies of one image came out identical: draw the rotation and crop per image, not once per batch")


def test_augment_small_and_leaves_global_rng(sub):
    """augmented digits stay close to the originals, and the caller's random state is untouched"""
    X = _digits32()
    torch.manual_seed(123)
    out = sub.augment(X, seed=5)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3)), ("augment changed the global random state: seed inside "
                                               "torch.random.fork_rng(devices=[]) so the caller's stream is unaffected")
    corr = _correlation(out, X)
    assert not torch.allclose(out, X), "augment returned the images unchanged"
    assert corr.mean() >= 0.7, (f"augmented digits correlate {corr.mean():.2f} with the originals (labkit's recipe: "
                                "0.85): rotate by at most 10 degrees and pad the crop by 2, no flips")


def test_resize(sub):
    """int and (h, w) sizes, up and down, equal to torchvision's antialiased bilinear resize"""
    X = _images(3, shape=(2, 3, 12, 9))
    for size, hw in ((32, [32, 32]), (5, [5, 5]), ((7, 20), [7, 20])):
        got, want = sub.resize(X, size), TF.resize(X, hw, antialias=True)
        assert tuple(got.shape) == tuple(want.shape), (f"resize(X of {tuple(X.shape)}, {size}) has shape "
                                                       f"{tuple(got.shape)}, expected {tuple(want.shape)}")
        assert torch.allclose(got, want, atol=1e-4), f"resize(X, {size}) differs from bilinear with antialias=True"


def test_center_crop(sub):
    """the central window, for int and (h, w) sizes, equal to torchvision's center_crop"""
    X = _images(4, shape=(2, 3, 12, 9))
    for size, hw in ((4, [4, 4]), ((6, 3), [6, 3]), (9, [9, 9])):
        got, want = sub.center_crop(X, size), TF.center_crop(X, hw)
        assert tuple(got.shape) == tuple(want.shape) and torch.equal(got, want), (
            f"center_crop(X of {tuple(X.shape)}, {size}) is not the central {hw[0]}x{hw[1]} window")


def test_rotate(sub):
    """counter-clockwise about the centre, same size, corners 0: equal to torchvision's rotate"""
    for shape in ((2, 3, 11, 11), (1, 1, 8, 14)):
        X = _images(5, shape=shape)
        for degrees in (90.0, -30.0, 7.5):
            got, want = sub.rotate(X, degrees), TF.rotate(X, degrees)
            assert tuple(got.shape) == shape, f"rotate changed the shape {shape} to {tuple(got.shape)}"
            assert torch.allclose(got, want, atol=1e-5), (
                f"rotate(X, {degrees}) differs from torchvision's (counter-clockwise, nearest pixel, fill 0)")


def test_embedding(sub):
    """(V, dim) table, seeded N(0, 1); lookup gives the table's rows; the <pad> row is zero, gets no gradient"""
    vocab = {"<pad>": 0, "<unk>": 1, "good": 2, "not": 3, "food": 4}
    emb = sub.make_embedding(vocab, 6, seed=3)
    assert isinstance(emb, torch.nn.Embedding), f"make_embedding must return an nn.Embedding, got {type(emb).__name__}"
    assert tuple(emb.weight.shape) == (5, 6), f"table shape {tuple(emb.weight.shape)}, expected (5, 6)"
    again = sub.make_embedding(vocab, 6, seed=3)
    assert torch.equal(emb.weight, again.weight), "the same seed must give the same table"
    want = torch.randn(5, 6, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(emb.weight[1:], want[1:]), "rows must be drawn N(0, 1) from a Generator seeded with seed"
    assert emb.weight.requires_grad, "the table must be trainable"
    ids = torch.tensor([[2, 3, 0], [4, 1, 0]])
    out = emb(ids)
    assert tuple(out.shape) == (2, 3, 6), f"looking up (2, 3) ids gave {tuple(out.shape)}, expected (2, 3, 6)"
    assert torch.equal(out, emb.weight[ids]), "a lookup must return the table's rows"
    assert not out[:, 2].any(), "the <pad> row must be zero"
    out.sum().backward()
    assert not emb.weight.grad[0].any() and emb.weight.grad[2].abs().sum() > 0, (
        "the <pad> row must get no gradient (padding_idx) while the other rows do")


def test_tokenize(sub):
    """lowercase words with inner apostrophes, single punctuation marks"""
    for text in SENTENCES:
        got = sub.tokenize(text)
        want = reference.tokenize(text)
        assert got == want, f"tokenize({text!r}) = {got}, expected {want}"


def test_word_frequencies(sub):
    """counts every token over all lists, like collections.Counter"""
    for seed in range(5):
        lists = _corpus(seed)
        got = sub.word_frequencies(lists)
        want = Counter(tok for tokens in lists for tok in tokens)
        assert dict(got) == dict(want), (f"word_frequencies wrong for {lists[:3]}...: got {dict(got)}, "
                                         f"expected {dict(want)}")


def test_build_vocab(sub):
    """<pad> 0, <unk> 1, then by frequency (ties alphabetical), dropping tokens under min_freq"""
    for seed in range(5):
        for min_freq in (1, 2, 5, 1000):
            lists = _corpus(seed)
            got = sub.build_vocab(lists, min_freq=min_freq)
            want = reference.Vocab.build(lists, min_freq=min_freq).stoi
            if got != want:
                by_id = [tok for tok, _ in sorted(dict(got).items(), key=lambda kv: kv[1])]
                raise AssertionError(f"build_vocab(min_freq={min_freq}) gives tokens by id {by_id}, expected "
                                     f"{list(want)} (counts: {dict(Counter(t for l in lists for t in l))})")


def test_encode(sub):
    """ids of known tokens; unknown tokens get the <unk> id 1"""
    vocab = {"<pad>": 0, "<unk>": 1, "good": 2, "not": 3}
    cases = [(["not", "good"], [3, 2]), (["very", "good", "!"], [1, 2, 1]), ([], []),
             (["bad", "bad", "good"], [1, 1, 2])]
    for tokens, want in cases:
        got = sub.encode(tokens, vocab)
        assert list(got) == want, f"encode({tokens}, {vocab}) = {got}, expected {want}"


def test_written_by_hand(sub):
    """the module is your own code, not labkit.preprocess"""
    sub.encode(["hi"], {"<pad>": 0, "<unk>": 1})
    assert "labkit" not in inspect.getsource(sub), "write the module yourself: labkit.preprocess is the grader's oracle"


EXERCISE = Exercise(
    name="preprocessing_module", title="Exercise · A preprocessing module", task=TASK, stub=STUB,
    tests=(test_standardize, test_normalize_to_range, test_augment_is_seeded_and_per_image,
           test_augment_small_and_leaves_global_rng, test_resize, test_center_crop, test_rotate, test_tokenize,
           test_word_frequencies, test_build_vocab, test_encode, test_embedding, test_written_by_hand),
    protected_modules=('labkit.preprocess',),
)
