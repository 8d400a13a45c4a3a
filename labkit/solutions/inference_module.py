import torch
from torch import nn

from labkit.models import RNNClassifier
from labkit.preprocess import Vocab
from labkit.train import load_checkpoint


def build_model(vocab_size: int) -> nn.Module:
    """The architecture the checkpoint was saved from (given): a GRU classifier with dropout before its head."""
    return RNNClassifier(vocab_size, num_classes=2, embed_dim=16, hidden_dim=32, cell="gru", dropout=0.5)


class TextClassifierService:
    """Loads the classifier once; turns batches of raw sentences into labels and probabilities."""

    def __init__(self, checkpoint_path: str, vocab: Vocab, max_len: int = 16):
        self.vocab, self.max_len = vocab, max_len
        self.model = build_model(len(vocab))
        load_checkpoint(checkpoint_path, self.model)  # weights_only=True inside: no code runs from the file
        self.model.eval()  # dropout off: the same input always gets the same answer

    def preprocess(self, texts: list[str]) -> torch.Tensor:
        """(B, max_len) int64 token ids."""
        if len(texts) == 0:
            raise ValueError("no texts to predict")
        return self.vocab.encode_batch(texts, self.max_len)

    def predict(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """labels (B,) int64 and probabilities (B, 2), rows summing to 1."""
        ids = self.preprocess(texts)
        with torch.inference_mode():  # no autograd bookkeeping on the serving path
            probs = self.model(ids).softmax(dim=1)  # (B, 2)
        return probs.argmax(dim=1), probs
