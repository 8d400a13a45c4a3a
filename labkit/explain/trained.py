"""The models the explanations explain: the digits CNN, the serving shapes CNN, the serving GRU and a
bag-of-words twin of the GRU, each trained once per process (seeded) and cached in memory.

Taught in 13_explainability.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from labkit.data import load_digits_split, load_negation_corpus
from labkit.models import BagOfWords, SmallCNN
from labkit.serve.lifecycle import LoadedModel, load_model
from labkit.serve.preprocessing import TextPreprocessor, make_preprocessor
from labkit.train import fit_tensors, model_accuracy, set_seed

SEED = 0


def _fit(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, batch_size: int) -> nn.Module:
    """Adam over seeded shuffled minibatches; returns the model in eval mode."""
    return fit_tensors(model, X, y, epochs, lr=lr, batch_size=batch_size, seed=SEED)


@functools.lru_cache(maxsize=2)
def digits_cnn(epochs: int = 15) -> tuple[SmallCNN, float]:
    """(SmallCNN on sklearn's 8x8 digits, test accuracy): ~97% after 15 epochs, ~2 s on one core."""
    set_seed(SEED)
    s = load_digits_split(seed=SEED)
    model = _fit(SmallCNN(in_channels=1, num_classes=10, image_size=8), s.X_train, s.y_train, epochs, 3e-3, 64)
    return model, model_accuracy(model, s.X_test, s.y_test)


@functools.lru_cache(maxsize=1)
def digits_test() -> tuple[torch.Tensor, torch.Tensor]:
    """The digits test split (N, 1, 8, 8) in [0, 1] and its labels."""
    s = load_digits_split(seed=SEED)
    return s.X_test, s.y_test


@functools.lru_cache(maxsize=2)
def serving_model(name: str) -> LoadedModel:
    """The server's own model ("text" GRU or "image" shapes CNN), from labkit's weight cache."""
    return load_model(name, evaluate=True)


@functools.lru_cache(maxsize=1)
def text_preprocessor() -> TextPreprocessor:
    """Sentences -> (k, 32) token ids with the course vocabulary."""
    return make_preprocessor("text")


@functools.lru_cache(maxsize=2)
def bag_of_words(epochs: int = 5) -> tuple[BagOfWords, float]:
    """(BagOfWords on the negation corpus, test accuracy): blind to word order, so stuck on "but" twins."""
    set_seed(SEED)
    corpus, prep = load_negation_corpus(), text_preprocessor()
    X, X_test = torch.from_numpy(prep(corpus.train)), torch.from_numpy(prep(corpus.test))
    model = _fit(BagOfWords(len(prep.vocab), num_classes=2, embed_dim=32), X, corpus.y_train, epochs, 1e-2, 64)
    return model, model_accuracy(model, X_test, corpus.y_test)


class PerTokenBagOfWords(nn.Module):
    """The same bag-of-words model with a per-token nn.Embedding, so token-level attributions can hook it."""

    def __init__(self, bow: BagOfWords):
        super().__init__()
        self.pad_id, self.vocab_size = bow.pad_id, bow.vocab_size
        self.embedding = nn.Embedding.from_pretrained(bow.embedding.weight.detach(), freeze=True)
        self.head = bow.head

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != self.pad_id).unsqueeze(-1).float()                  # (B, T, 1)
        mean = (self.embedding(ids) * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, D)
        return self.head(mean)                                             # (B, 2)
