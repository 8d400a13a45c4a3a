"""The course's small models: CNN, MLP, LSTM/GRU classifiers, bag-of-words baseline, encoder-decoder."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with requires_grad). Taught in 01_cnn_image_classification."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def size_mb(model: nn.Module) -> float:
    """Memory held by parameters and buffers, in MB. Taught in 01_cnn_image_classification."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 1e6


def check_images(x: torch.Tensor, channels: int, image_size: int) -> None:
    """Raise a clear ValueError unless x is a float batch (N, channels, image_size, image_size)."""
    expected = f"(N, {channels}, {image_size}, {image_size})"
    if x.dim() != 4 or tuple(x.shape[1:]) != (channels, image_size, image_size):
        raise ValueError(f"expected images of shape {expected}; got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"expected floating-point images; got dtype {x.dtype}")


class SmallCNN(nn.Module):
    """Two conv blocks and a linear head; the flatten size is computed, never assumed.

    A 32x32 image after two 2x2 poolings is 8x8 (not 28x28): `flat_features` is found by pushing a
    dummy image through `features`. Taught in 01_cnn_image_classification.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 8,
                 channels: tuple[int, ...] = (16, 32), hidden: int = 64,
                 dropout: float = 0.0, batch_norm: bool = False):
        super().__init__()
        self.in_channels, self.image_size = in_channels, image_size
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out in channels:
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            self.flat_features = self.features(torch.zeros(1, in_channels, image_size, image_size)).numel()
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.flat_features, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, self.in_channels, self.image_size)
        return self.head(self.features(x))  # (N, num_classes)


class MLP(nn.Module):
    """Fully connected classifier with a choice of activation, dropout and batch norm. Taught in 03_regularization_and_optimization."""

    def __init__(self, in_features: int, hidden: tuple[int, ...] = (128, 64), num_classes: int = 10,
                 activation: type[nn.Module] = nn.ReLU, dropout: float = 0.0, batch_norm: bool = False,
                 linear: type[nn.Linear] = nn.Linear):
        super().__init__()
        self.in_features = in_features
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers.append(linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers += [activation(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x[0].numel() != self.in_features:
            raise ValueError(f"expected {self.in_features} features per sample; got shape {tuple(x.shape)}")
        return self.net(x)


class DropConnectLinear(nn.Linear):
    """Linear layer that drops individual weights (not activations) while training. Taught in 03_regularization_and_optimization."""

    def __init__(self, in_features: int, out_features: int, p: float = 0.3, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop probability must be in [0, 1); got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return super().forward(x)
        mask = torch.rand_like(self.weight) >= self.p
        return F.linear(x, self.weight * mask / (1 - self.p), self.bias)  # inverted scaling keeps E[w]


def check_token_ids(ids: torch.Tensor, vocab_size: int) -> None:
    """Raise a clear error unless ids is an int64 (B, T) batch of ids in [0, vocab_size)."""
    if ids.dim() != 2 or ids.dtype != torch.long:
        raise ValueError(f"expected token ids of shape (B, T) and dtype int64; got {tuple(ids.shape)} {ids.dtype}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        raise IndexError(f"token id {int(ids.max())} outside the vocabulary of size {vocab_size}")


class RNNClassifier(nn.Module):
    """Embedding, LSTM or GRU, and a linear head on the last real (non-padding) step. Taught in 02_rnn_sequence_classification."""

    def __init__(self, vocab_size: int, num_classes: int = 2, embed_dim: int = 32, hidden_dim: int = 64,
                 cell: str = "lstm", pad_id: int = 0, dropout: float = 0.0):
        super().__init__()
        rnn_types = {"lstm": nn.LSTM, "gru": nn.GRU}
        if cell not in rnn_types:
            raise ValueError(f"cell must be one of {sorted(rnn_types)}; got {cell!r}")
        self.vocab_size, self.pad_id = vocab_size, pad_id
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.rnn = rnn_types[cell](embed_dim, hidden_dim, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_dim, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        check_token_ids(ids, self.vocab_size)
        lengths = (ids != self.pad_id).sum(dim=1).clamp(min=1).cpu()  # (B,)
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(ids), lengths, batch_first=True,
                                                   enforce_sorted=False)
        _, state = self.rnn(packed)
        h_last = state[0] if isinstance(state, tuple) else state  # (1, B, H) for LSTM and GRU
        return self.head(self.dropout(h_last[-1]))  # (B, num_classes)


class BagOfWords(nn.Module):
    """Mean of word embeddings and a linear head: word order is invisible to it. Taught in 02_rnn_sequence_classification."""

    def __init__(self, vocab_size: int, num_classes: int = 2, embed_dim: int = 32, pad_id: int = 0):
        super().__init__()
        self.vocab_size, self.pad_id = vocab_size, pad_id
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", padding_idx=pad_id)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        check_token_ids(ids, self.vocab_size)
        return self.head(self.embedding(ids))  # (B, num_classes)


class Seq2Seq(nn.Module):
    """GRU encoder-decoder: the encoder's final state starts the decoder. Taught in 02_rnn_sequence_classification."""

    def __init__(self, vocab_size: int, embed_dim: int = 32, hidden_dim: int = 64, bos_id: int = 1):
        super().__init__()
        self.vocab_size, self.bos_id = vocab_size, bos_id
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.encoder = nn.GRU(embed_dim, hidden_dim, batch_first=True)
        self.decoder = nn.GRU(embed_dim, hidden_dim, batch_first=True)
        self.out = nn.Linear(hidden_dim, vocab_size)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits (B, T_tgt, V) for tgt given the previous target tokens."""
        check_token_ids(src, self.vocab_size)
        check_token_ids(tgt, self.vocab_size)
        _, h = self.encoder(self.embedding(src))  # (1, B, H)
        bos = torch.full_like(tgt[:, :1], self.bos_id)
        dec_in = torch.cat([bos, tgt[:, :-1]], dim=1)  # shift right: (B, T_tgt)
        out, _ = self.decoder(self.embedding(dec_in), h)  # (B, T_tgt, H)
        return self.out(out)

    @torch.no_grad()
    def generate(self, src: torch.Tensor, max_len: int) -> torch.Tensor:
        """Greedy decoding: (B, max_len) token ids, each step fed the previous prediction."""
        check_token_ids(src, self.vocab_size)
        _, h = self.encoder(self.embedding(src))
        token = torch.full((src.shape[0], 1), self.bos_id, dtype=torch.long, device=src.device)
        steps = []
        for _ in range(max_len):
            out, h = self.decoder(self.embedding(token), h)
            token = self.out(out).argmax(dim=-1)  # (B, 1)
            steps.append(token)
        return torch.cat(steps, dim=1)
