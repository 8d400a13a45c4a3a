import torch
from torch import nn

from labkit.models import RNNClassifier
from labkit.preprocess import Vocab
from labkit.train import load_checkpoint

MAX_LEN = 16


def load_model(checkpoint_path: str, vocab_size: int) -> nn.Module:
    """The GRU classifier with its trained weights, in evaluation mode."""
    model = RNNClassifier(vocab_size, num_classes=2, embed_dim=16, hidden_dim=32, cell="gru")
    load_checkpoint(checkpoint_path, model)
    return model.eval()


class Handler:
    """What the web framework calls: created once at start-up, then health() and predict() per request."""

    def __init__(self, checkpoint_path: str, vocab: Vocab):
        self.vocab = vocab
        # start-up pays for the load once; requests reuse the model in memory (the file may change later)
        self.model = load_model(checkpoint_path, len(vocab))

    def health(self) -> dict:
        return {"status": "ok"}

    def predict(self, texts: list[str]) -> dict:
        ids = self.vocab.encode_batch(texts, MAX_LEN)  # (B, MAX_LEN)
        with torch.inference_mode():
            probs = self.model(ids).softmax(dim=1)  # (B, 2)
        return {"labels": probs.argmax(dim=1).tolist(), "probabilities": probs.tolist()}
