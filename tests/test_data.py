"""Tests for labkit.data: shipped files and checksums, splits, the shapes set, the negation corpus."""
import shutil
from collections import defaultdict

import numpy as np
import pytest
import torch

from labkit import data


@pytest.fixture(scope="module")
def digits() -> data.Split:
    return data.load_digits_split(seed=0)


@pytest.fixture(scope="module")
def corpus() -> data.TextSplit:
    return data.load_negation_corpus()


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    """A copy of the shipped data folder that loaders read through LABKIT_DATA_DIR."""
    copy = tmp_path / "data"
    shutil.copytree(data.DATA_DIR, copy)
    monkeypatch.setenv("LABKIT_DATA_DIR", str(copy))
    return copy


# ---------------------------------------------------------------- files and checksums


def test_shipped_files_match_their_checksums():
    data.verify_checksums(data.DATA_DIR)
    data.verify_checksums()  # default folder


def test_corrupt_file_raises_data_error_naming_file_and_fix(data_copy):
    raw = bytearray((data_copy / "negation.tsv").read_bytes())
    raw[100] ^= 1  # flip one bit
    (data_copy / "negation.tsv").write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match=r"negation\.tsv.*labkit data --regenerate"):
        data.verify_checksums(data_copy)
    with pytest.raises(data.DataError, match="corrupt"):
        data.load_negation_corpus()  # loaders check too


def test_missing_file_raises_data_error(data_copy):
    (data_copy / "shapes.npz").unlink()
    with pytest.raises(data.DataError, match=r"shapes\.npz is missing.*labkit data --regenerate"):
        data.load_shapes_split()
    with pytest.raises(data.DataError, match="shapes.npz"):
        data.verify_checksums(data_copy)


def test_missing_checksum_file_raises_data_error(data_copy):
    (data_copy / data.CHECKSUM_FILE).unlink()
    with pytest.raises(data.DataError, match=r"CHECKSUMS\.sha256 is missing.*labkit data --regenerate"):
        data.verify_checksums(data_copy)


def test_data_error_is_a_runtime_error():
    assert issubclass(data.DataError, RuntimeError)


def test_regenerate_reproduces_shipped_checksums(tmp_path):
    sums = data.regenerate(tmp_path / "fresh")
    shipped = (data.DATA_DIR / data.CHECKSUM_FILE).read_text()
    assert (tmp_path / "fresh" / data.CHECKSUM_FILE).read_text() == shipped
    assert set(sums) == set(data.DATA_FILES)
    data.verify_checksums(tmp_path / "fresh")


# ---------------------------------------------------------------- digits and splits


def test_digits_split_shapes_and_ranges(digits):
    assert digits.classes == tuple(str(c) for c in range(10))
    n = len(digits.X_train) + len(digits.X_val) + len(digits.X_test)
    assert n == 1797
    for X, y in [(digits.X_train, digits.y_train), (digits.X_val, digits.y_val), (digits.X_test, digits.y_test)]:
        assert X.dtype == torch.float32 and y.dtype == torch.int64
        assert X.shape[1:] == (1, 8, 8) and len(X) == len(y)
        assert X.min() >= 0 and X.max() <= 1
    assert abs(len(digits.X_test) / n - 0.15) < 0.01


def test_digits_split_is_stratified_and_disjoint(digits):
    for y in (digits.y_train, digits.y_val, digits.y_test):
        share = torch.bincount(y, minlength=10).float() / len(y)
        assert (share - 0.1).abs().max() < 0.02
    rows = [{tuple(x.flatten().tolist()) for x in X} for X in (digits.X_train, digits.X_val, digits.X_test)]
    assert not rows[0] & rows[2] and not rows[1] & rows[2]  # sklearn digits has no duplicate images


def test_digits_split_is_seeded():
    a, b = data.load_digits_split(seed=1), data.load_digits_split(seed=1)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_train, data.load_digits_split(seed=2).y_train)


@pytest.mark.parametrize("val_frac, test_frac", [(0, 0.15), (0.15, 0), (0.5, 0.5), (-0.1, 0.2), (0.2, 1.2)])
def test_bad_fractions_raise(val_frac, test_frac):
    with pytest.raises(ValueError, match="val_frac"):
        data.load_digits_split(val_frac=val_frac, test_frac=test_frac)


def test_subset_train_is_class_balanced(digits):
    small = digits.subset_train(5, seed=3)
    assert torch.equal(torch.bincount(small.y_train, minlength=10), torch.full((10,), 5))
    assert small.X_train.shape == (50, 1, 8, 8)
    assert small.X_test is digits.X_test
    assert torch.equal(small.y_train, digits.subset_train(5, seed=3).y_train)
    with pytest.raises(ValueError, match="training examples"):
        digits.subset_train(10_000)
    with pytest.raises(ValueError):
        digits.subset_train(0)


# ---------------------------------------------------------------- shapes


def test_generate_shapes_is_balanced_uint8_and_reproducible():
    X, y = data.generate_shapes(3, seed=7)
    assert len(data.SHAPES_CLASSES) >= 10
    assert X.dtype == np.uint8 and X.shape == (3 * len(data.SHAPES_CLASSES), 32, 32, 3)
    assert y.dtype == np.int64 and np.array_equal(np.bincount(y), np.full(len(data.SHAPES_CLASSES), 3))
    X2, _ = data.generate_shapes(3, seed=7)
    assert np.array_equal(X, X2)
    with pytest.raises(ValueError):
        data.generate_shapes(0, seed=0)


def test_shapes_split_balanced_in_unit_range():
    split = data.load_shapes_split(limit=600)
    n_classes = len(split.classes)
    assert split.classes == data.SHAPES_CLASSES and n_classes >= 10
    assert len(split.X_train) + len(split.X_val) + len(split.X_test) == 600
    assert split.X_train.dtype == torch.float32 and split.X_train.shape[1:] == (3, 32, 32)
    assert split.X_train.min() >= 0 and split.X_train.max() <= 1
    counts = torch.bincount(split.y_train, minlength=n_classes)
    assert counts.max() - counts.min() <= 1
    with pytest.raises(ValueError, match="limit"):
        data.load_shapes_split(limit=0)


def test_shipped_shapes_are_full_size():
    split = data.load_shapes_split()
    assert len(split.X_train) + len(split.X_val) + len(split.X_test) == 400 * len(data.SHAPES_CLASSES)


# ---------------------------------------------------------------- negation corpus


def test_corpus_sizes_lengths_and_balance(corpus):
    assert (len(corpus.train), len(corpus.val), len(corpus.test)) == (6000, 1000, 1000)
    assert corpus.classes == ("negative", "positive")
    for y in (corpus.y_train, corpus.y_val, corpus.y_test):
        assert y.dtype == torch.int64 and abs(y.float().mean().item() - 0.5) < 0.05
    assert max(len(s.split()) for s in corpus.train + corpus.val + corpus.test) <= 16


def test_corpus_has_identical_bags_with_different_labels(corpus):
    labels_by_bag = defaultdict(set)
    for text, label in zip(corpus.train + corpus.test, corpus.y_train.tolist() + corpus.y_test.tolist()):
        labels_by_bag[tuple(sorted(text.split()))].add(label)
    clashes = sum(len(labels) == 2 for labels in labels_by_bag.values())
    assert clashes >= 100, "a bag-of-words model must be unable to be perfect"


def test_not_flips_and_but_defers_to_last_clause():
    rows = dict(data.generate_negation_corpus(4000, seed=1))
    for text, label in rows.items():
        last = text.split(" but ")[-1].split(" and ")[-1].split()
        positive = last[-1] in data.POSITIVE
        assert label == int(positive != ("not" in last)), text


def test_corpus_generation_is_reproducible():
    assert data.generate_negation_corpus(50, seed=3) == data.generate_negation_corpus(50, seed=3)
    assert data.generate_negation_corpus(50, seed=3) != data.generate_negation_corpus(50, seed=4)


def test_limit_caps_only_train(corpus):
    small = data.load_negation_corpus(limit=100)
    assert len(small.train) == len(small.y_train) == 100
    assert small.test == corpus.test
    with pytest.raises(ValueError):
        data.load_negation_corpus(limit=0)


def test_bag_of_words_is_above_chance_but_far_from_perfect(corpus):
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = CountVectorizer()
    model = LogisticRegression(max_iter=1000).fit(vectorizer.fit_transform(corpus.train), corpus.y_train.numpy())
    accuracy = model.score(vectorizer.transform(corpus.test), corpus.y_test.numpy())
    assert 0.55 < accuracy < 0.85


# ---------------------------------------------------------------- loaders


def test_make_loader_batches_and_seeded_shuffle(digits):
    loader = data.make_loader(digits.X_train, digits.y_train, batch_size=32, shuffle=True, seed=5)
    X, y = next(iter(loader))
    assert X.shape == (32, 1, 8, 8) and y.shape == (32,)
    again = next(iter(data.make_loader(digits.X_train, digits.y_train, batch_size=32, shuffle=True, seed=5)))
    assert torch.equal(y, again[1])
    assert sum(len(yb) for _, yb in loader) == len(digits.y_train)


def test_make_loader_rejects_empty_and_mismatched():
    with pytest.raises(ValueError, match="empty"):
        data.make_loader(torch.empty(0, 3), torch.empty(0))
    with pytest.raises(ValueError, match="rows"):
        data.make_loader(torch.zeros(4, 3), torch.zeros(5))


def test_reversal_task():
    src, tgt = data.make_reversal_task(50, length=5, vocab_size=10, seed=1)
    assert src.shape == tgt.shape == (50, 5) and src.dtype == torch.long
    assert int(src.min()) >= 2 and int(src.max()) < 10
    assert torch.equal(tgt, src.flip(1))
    assert torch.equal(src, data.make_reversal_task(50, length=5, vocab_size=10, seed=1)[0])
    with pytest.raises(ValueError):
        data.make_reversal_task(0)


def test_minibatches_in_order_cover_every_row_once_with_a_short_last_batch():
    X, y = torch.arange(10).view(10, 1), torch.arange(10) * 2
    batches = list(data.minibatches(X, y, batch_size=4))
    assert [len(xb) for xb, _ in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([xb for xb, _ in batches]).flatten(), torch.arange(10))
    assert all(torch.equal(yb, xb.flatten() * 2) for xb, yb in batches)  # rows stay paired


def test_minibatches_shuffle_draws_what_a_hand_written_loop_drew():
    X, y = torch.randn(37, 3), torch.arange(37)
    got = [yb for _, yb in data.minibatches(X, y, batch_size=8, shuffle=True,
                                            generator=torch.Generator().manual_seed(5))]
    order = torch.randperm(37, generator=torch.Generator().manual_seed(5))
    assert [b.tolist() for b in got] == [order[i:i + 8].tolist() for i in range(0, 37, 8)]
    torch.manual_seed(3)  # no generator: torch's global one, as torch.randperm(n) alone would use
    first = [yb for _, yb in data.minibatches(X, y, batch_size=8, shuffle=True)]
    torch.manual_seed(3)
    assert torch.equal(torch.cat(first), torch.randperm(37))


def test_minibatches_reshuffles_on_every_pass():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(50)
    one, two = (torch.cat([b for (b,) in data.minibatches(y, batch_size=7, shuffle=True, generator=g)])
                for _ in range(2))
    assert sorted(one.tolist()) == sorted(two.tolist()) == list(range(50)) and not torch.equal(one, two)


@pytest.mark.parametrize("tensors, batch_size", [((), 4), ((torch.zeros(3), torch.zeros(4)), 2),
                                                 ((torch.zeros(3),), 0)])
def test_minibatches_rejects_bad_arguments(tensors, batch_size):
    with pytest.raises(ValueError):
        list(data.minibatches(*tensors, batch_size=batch_size))


def test_paths_name_the_repository_folders():
    from labkit import paths

    assert (paths.REPO_ROOT / "pyproject.toml").is_file() and (paths.PACKAGE_DIR / "paths.py").is_file()
    assert (paths.DATA_DIR / data.CHECKSUM_FILE).is_file() and data.DATA_DIR == paths.DATA_DIR
    assert any(paths.NOTEBOOK_DIR.glob("00_*.ipynb")) and paths.EXERCISE_DIR.parent == paths.NOTEBOOK_DIR
    assert any(paths.QUESTIONS_DIR.glob("*.yaml"))
