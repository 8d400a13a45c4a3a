"""Find the bug: a load-and-predict script called model serving (the model is loaded inside the request path)."""
import tempfile
from pathlib import Path

import torch

from labkit.grading.exercise import Exercise

TASK = """
A team wrapped their notebook code in a class and called it a model server: the web framework creates one
`Handler(checkpoint_path, vocab)` at start-up, calls `health()` for the load balancer and `predict(texts)` for
every request. It gives the right answers in a demo, yet under load each request costs several times what the
forward pass costs, and one day, while a new checkpoint was being copied over the old file, requests
started failing.

**Find the bug and fix it.** A server pays for start-up once: after `Handler(...)` returns, `health()` must
say the model is ready, and `predict` must neither read the checkpoint again nor depend on the file still
being there; answers must stay exactly the same. The grader counts how often a checkpoint is read across
many requests and deletes the file after start-up. Taught in 09_async_serving (what happens once at start-up
versus on every request).
"""

STUB = '''
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
        self.checkpoint_path, self.vocab = checkpoint_path, vocab

    def health(self) -> dict:
        return {"status": "ok"}

    def predict(self, texts: list[str]) -> dict:
        model = load_model(self.checkpoint_path, len(self.vocab))
        ids = self.vocab.encode_batch(texts, MAX_LEN)  # (B, MAX_LEN)
        with torch.inference_mode():
            probs = model(ids).softmax(dim=1)  # (B, 2)
        return {"labels": probs.argmax(dim=1).tolist(), "probabilities": probs.tolist()}
'''

TEXTS = ["the food was good", "the view was not nice", "the plot was dull but the acting was great"]


def _setup(sub):
    """(a Handler for a freshly saved checkpoint, the reference probabilities, the checkpoint path)."""
    from labkit.models import RNNClassifier
    from labkit.preprocess import Vocab, tokenize
    from labkit.train import save_checkpoint

    vocab = Vocab.build([tokenize(t) for t in TEXTS])
    path = Path(tempfile.mkdtemp(prefix="bug_load_and_predict-")) / "gru.pt"
    torch.manual_seed(3)
    model = RNNClassifier(len(vocab), num_classes=2, embed_dim=16, hidden_dim=32, cell="gru").eval()
    save_checkpoint(path, model)
    with torch.no_grad():
        want = model(vocab.encode_batch(TEXTS, 16)).softmax(dim=1)
    return sub.Handler(str(path), vocab), want, path


class _CountLoads:
    """Context manager counting torch.load calls (every checkpoint read goes through it)."""

    def __enter__(self):
        self.count, self._real = 0, torch.load

        def counting(*args, **kwargs):
            self.count += 1
            return self._real(*args, **kwargs)
        torch.load = counting
        return self

    def __exit__(self, *exc):
        torch.load = self._real


def test_model_loaded_once_across_requests(sub):
    """20 predict calls read the checkpoint 0 more times than start-up did"""
    with _CountLoads() as loads:
        handler, _, _ = _setup(sub)
        at_start = loads.count
        for _ in range(20):
            handler.predict(TEXTS[:1])
    extra = loads.count - at_start
    assert extra == 0, (f"20 requests read the checkpoint {extra} more times: each request re-builds the model "
                        f"and re-reads its weights from disk; load once in __init__ and keep the model")


def test_survives_checkpoint_replaced_after_start(sub):
    """after start-up the checkpoint file is deleted: predict still answers, health says ready"""
    handler, want, path = _setup(sub)
    path.unlink()  # a deploy copying a new checkpoint over the old one
    try:
        out = handler.predict(TEXTS)
    except FileNotFoundError as err:
        raise AssertionError(f"predict needs the checkpoint file after start-up: {err}") from None
    assert handler.health().get("status") == "ok", f"health() = {handler.health()!r} after start-up"
    assert torch.allclose(torch.tensor(out["probabilities"]), want, atol=1e-5), "answers changed"


def test_answers_are_right(sub):
    """labels and probabilities equal the saved model's (eval mode, softmax), rows sum to 1"""
    handler, want, _ = _setup(sub)
    out = handler.predict(TEXTS)
    probs = torch.tensor(out["probabilities"])
    assert probs.shape == (3, 2) and torch.allclose(probs, want, atol=1e-5), f"probabilities {out['probabilities']}"
    assert out["labels"] == want.argmax(dim=1).tolist(), f"labels {out['labels']}"


def test_start_up_pays_the_load(sub):
    """Handler(...) reads the checkpoint (health() can then honestly say ready); the first request does not"""
    with _CountLoads() as loads:
        handler, _, _ = _setup(sub)
        at_start = loads.count
        handler.predict(TEXTS[:1])
    assert at_start >= 1, "Handler(...) did not load the model: health() reports a model it does not have yet"
    assert loads.count == at_start, "the first request loaded the model: start-up should have"


EXERCISE = Exercise(
    name="bug_load_and_predict", title="Find the bug · A load-and-predict script called model serving",
    task=TASK, stub=STUB,
    tests=(test_model_loaded_once_across_requests, test_survives_checkpoint_replaced_after_start,
           test_answers_are_right, test_start_up_pays_the_load),
    kind="bug", bug_tests=("test_model_loaded_once_across_requests", "test_survives_checkpoint_replaced_after_start",
                           "test_start_up_pays_the_load"),
    protected_modules=('labkit.serve',),
)
