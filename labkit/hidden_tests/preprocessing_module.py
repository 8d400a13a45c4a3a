"""Hidden tests for preprocessing_module: other sentences and corpora, identity resizes, odd crops, other tables."""
import torch
from torchvision.transforms.v2 import functional as TF

from labkit import preprocess as reference
from labkit.exercises.preprocessing_module import _images

MORE_SENTENCES = ["Rock'n'roll ISN'T dead!!", "naïve café — déjà vu", "a--b", "''quoted''", "x' y'z '",
                  "\u2019tis", "e-mail me@example.com #42"]


def test_hidden_text_edge_cases(sub):
    """more sentences tokenized like labkit.preprocess; an empty corpus gives only <pad> and <unk>"""
    for text in MORE_SENTENCES:
        want = reference.tokenize(text)
        assert sub.tokenize(text) == want, f"tokenize({text!r}) = {sub.tokenize(text)}, expected {want}"
    assert sub.build_vocab([]) == {"<pad>": 0, "<unk>": 1}, "an empty corpus has only <pad> and <unk>"
    assert sub.encode(["never", "seen"], sub.build_vocab([])) == [1, 1]


def test_hidden_image_edge_cases(sub):
    """resize to the same size, a 1x1 crop, a full turn; a 1-dimensional table"""
    X = _images(8, shape=(3, 2, 10, 6))
    assert torch.allclose(sub.resize(X, (10, 6)), TF.resize(X, [10, 6], antialias=True), atol=1e-5)
    assert torch.equal(sub.center_crop(X, 1), TF.center_crop(X, [1, 1])), "a 1x1 centre crop is the central pixel"
    assert torch.allclose(sub.rotate(X, 360.0), TF.rotate(X, 360.0), atol=1e-5)
    emb = sub.make_embedding({"<unk>": 0, "<pad>": 1, "a": 2}, 1, seed=0)
    assert tuple(emb.weight.shape) == (3, 1) and not emb.weight[1].any() and emb.padding_idx == 1, (
        "the <pad> row is wherever the vocabulary puts <pad> (here id 1)")


TESTS = (test_hidden_text_edge_cases, test_hidden_image_edge_cases)
