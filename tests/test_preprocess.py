"""labkit.preprocess: image scaling and augmentation, tokenizer, vocabulary, embeddings."""
import pytest
import torch
from torch import nn

from labkit import preprocess as P


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    # 3 channels on very different scales, like raw RGB with a hot red channel
    return torch.randn(16, 3, 12, 12, generator=g) * torch.tensor([1.0, 5.0, 0.1]).view(1, 3, 1, 1) + 3.0


# ---------------------------------------------------------------------------------------------- images

def test_standardize_gives_zero_mean_unit_std_per_channel(images):
    Z = P.standardize(images)
    torch.testing.assert_close(Z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(Z.std(dim=(0, 2, 3), correction=0), torch.ones(3), atol=1e-5, rtol=0)


def test_standardize_reuses_train_stats(images):
    train, val = images[:8], images[8:]
    mean, std = P.channel_stats(train)
    assert mean.shape == std.shape == (3,)
    expected = (val - mean.view(1, 3, 1, 1)) / (std.view(1, 3, 1, 1) + 1e-8)
    torch.testing.assert_close(P.standardize(val, mean, std), expected)
    torch.testing.assert_close(P.standardize(val, mean.tolist(), std.tolist()), expected)


def test_standardize_constant_channel_stays_finite():
    X = torch.ones(2, 1, 4, 4)
    assert torch.isfinite(P.standardize(X)).all()


def test_minmax_hits_exact_bounds(images):
    for low, high in [(0.0, 1.0), (-1.0, 1.0), (0.3, 7.1)]:
        Y = P.minmax_normalize(images, low, high)
        # exact equality, compared in the tensor's own dtype (0.3 is not exactly representable in float32)
        assert Y.min() == torch.tensor(low, dtype=Y.dtype) and Y.max() == torch.tensor(high, dtype=Y.dtype)


def test_minmax_constant_input_maps_to_low():
    assert torch.equal(P.minmax_normalize(torch.full((1, 1, 2, 2), 4.0), -1, 1), torch.full((1, 1, 2, 2), -1.0))


def test_misconception_standardize_then_times_two_minus_one_is_not_minus_one_to_one(images):
    right = P.minmax_normalize(images, -1.0, 1.0)
    assert right.min().item() == -1.0 and right.max().item() == 1.0
    wrong = P.standardize(images) * 2 - 1
    # neither [-1, 1] (values reach past +-3) nor unit variance (std is 2, mean is -1)
    assert wrong.min() < -1.5 and wrong.max() > 1.5
    assert wrong.std().item() == pytest.approx(2.0, rel=1e-3)
    assert wrong.mean().item() == pytest.approx(-1.0, abs=1e-4)


def test_resize_shapes(images):
    assert P.resize_images(images, 8).shape == (16, 3, 8, 8)
    assert P.resize_images(images, (6, 20)).shape == (16, 3, 6, 20)
    with pytest.raises(ValueError, match="size"):
        P.resize_images(images, 0)


def test_augment_shapes_and_reproducibility(images):
    pipe = P.augment_pipeline(size=12, crop_padding=2, degrees=15.0, flip=True)
    a, b = P.augment_batch(images, pipe, seed=3), P.augment_batch(images, pipe, seed=3)
    assert a.shape == images.shape and a.dtype == images.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, P.augment_batch(images, pipe, seed=4))
    same = P.augment_batch(images[:1].expand(4, -1, -1, -1), pipe, seed=3)
    assert not torch.equal(same[0], same[1])  # each image gets its own random draw


def test_augment_leaves_global_rng_alone(images):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    P.augment_batch(images[:2], P.augment_pipeline(12), seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_augment_pipeline_steps():
    names = [type(t).__name__ for t in P.augment_pipeline(28).transforms]
    assert names == ["RandomRotation", "RandomCrop"]
    assert type(P.augment_pipeline(28, flip=True).transforms[-1]).__name__ == "RandomHorizontalFlip"


@pytest.mark.parametrize("X,match", [
    (torch.zeros(8, 8), r"4-D \(N, C, H, W\); got shape \(8, 8\)"),
    (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), "float"),
    (torch.zeros(0, 1, 4, 4), "empty"),
    (torch.tensor([[[[0.0, float("nan")], [float("nan"), float("nan")]]]]), "3 NaN values"),
    (torch.tensor([[[[0.0, float("inf")]]]]), "1 infinite"),
])
def test_bad_images_raise_clear_errors(X, match):
    for fn in (P.standardize, P.minmax_normalize, P.channel_stats, lambda x: P.resize_images(x, 4)):
        with pytest.raises(ValueError, match=match):
            fn(X)


def test_other_bad_arguments(images):
    with pytest.raises(ValueError, match="low must be < high"):
        P.minmax_normalize(images, 1.0, 1.0)
    with pytest.raises(ValueError, match="2 values but images have 3 channels"):
        P.standardize(images, torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError, match="both mean and std"):
        P.standardize(images, mean=torch.zeros(3))


# ------------------------------------------------------------------------------------------------ text

@pytest.mark.parametrize("text,tokens", [
    ("Hello, World!", ["hello", ",", "world", "!"]),
    ("This movie isn't good.", ["this", "movie", "isn't", "good", "."]),
    ("It wasn\u2019t BAD?!", ["it", "wasn't", "bad", "?", "!"]),
    ("  spaces\tand\nnewlines  ", ["spaces", "and", "newlines"]),
    ("'quoted' 3 times", ["'", "quoted", "'", "3", "times"]),
    ("", []),
])
def test_tokenize(text, tokens):
    assert P.tokenize(text) == tokens


def test_word_frequencies():
    counts = P.word_frequencies(iter([["a", "b", "a"], ["b", "a"], []]))
    assert counts == {"a": 3, "b": 2}


CORPUS = [P.tokenize(t) for t in ["the film was good", "the film was not good", "a bad film", "zebra"]]


def test_vocab_order_specials_then_frequency_then_alphabetical():
    v = P.Vocab.build(CORPUS)
    assert v.itos[:2] == ["<pad>", "<unk>"] and (v.pad_id, v.unk_id) == (0, 1)
    # film 3; good/the/was 2 (alphabetical); a/bad/not/zebra 1 (alphabetical)
    assert v.itos[2:] == ["film", "good", "the", "was", "a", "bad", "not", "zebra"]
    assert len(v) == 10 and "film" in v and "cat" not in v
    assert all(v.stoi[t] == i for i, t in enumerate(v.itos))


def test_vocab_min_freq_and_max_size():
    assert P.Vocab.build(CORPUS, min_freq=2).itos[2:] == ["film", "good", "the", "was"]
    v = P.Vocab.build(CORPUS, max_size=4)
    assert len(v) == 4 and v.itos[2:] == ["film", "good"]
    with pytest.raises(ValueError, match="min_freq"):
        P.Vocab.build(CORPUS, min_freq=0)


def test_vocab_unknown_handling():
    v = P.Vocab.build(CORPUS, min_freq=2)
    assert v.encode(["the", "zebra", "film"]) == [v.stoi["the"], v.unk_id, v.stoi["film"]]
    assert v.decode(v.encode(["the", "zebra"])) == ["the", "<unk>"]
    assert v.decode(torch.tensor([2, 0])) == ["film", "<pad>"]
    assert v.unknown_rate(["the zebra", "film film"]) == pytest.approx(0.25)
    with pytest.raises(IndexError, match="id 99"):
        v.decode([2, 99])


def test_encode_batch_pads_and_truncates():
    v = P.Vocab.build(CORPUS)
    batch = v.encode_batch(["the film", "the film was not good at all"], max_len=4)
    assert batch.shape == (2, 4) and batch.dtype == torch.int64
    assert batch[0].tolist() == [v.stoi["the"], v.stoi["film"], v.pad_id, v.pad_id]
    assert batch[1].tolist() == v.encode(["the", "film", "was", "not"])
    with pytest.raises(ValueError, match="empty"):
        v.encode_batch([], max_len=4)
    with pytest.raises(ValueError, match="max_len"):
        v.encode_batch(["the"], max_len=0)
    with pytest.raises(TypeError, match="single str"):
        v.encode_batch("the film", max_len=4)


# ------------------------------------------------------------------------------------------ embeddings

def test_build_embedding_is_seeded_with_zero_padding_row():
    v = P.Vocab.build(CORPUS)
    a, b = P.build_embedding(v, dim=5, seed=1), P.build_embedding(v, dim=5, seed=1)
    assert isinstance(a, nn.Embedding) and a.weight.shape == (len(v), 5)
    assert a.padding_idx == v.pad_id and a.weight.requires_grad
    assert torch.equal(a.weight, b.weight)
    assert torch.equal(a.weight[v.pad_id], torch.zeros(5))


def test_embedding_lookup_equals_nn_embedding():
    v = P.Vocab.build(CORPUS)
    emb = P.build_embedding(v, dim=4)
    ids = v.encode_batch(["the film was good", "zebra"], max_len=5)  # (2, 5)
    out = P.embedding_lookup(ids, emb.weight)
    assert out.shape == (2, 5, 4)
    torch.testing.assert_close(out, emb(ids))


def test_embedding_lookup_rejects_bad_ids():
    weight = torch.randn(10, 3)
    with pytest.raises(IndexError, match="id 12 is out of range"):
        P.embedding_lookup(torch.tensor([1, 12, 3]), weight)
    with pytest.raises(IndexError, match="id -1"):
        P.embedding_lookup(torch.tensor([[-1, 2]]), weight)
    with pytest.raises(ValueError, match="int64"):
        P.embedding_lookup(torch.tensor([1, 2], dtype=torch.int32), weight)
    with pytest.raises(ValueError, match="int64"):
        P.embedding_lookup(torch.tensor([1.0, 2.0]), weight)
