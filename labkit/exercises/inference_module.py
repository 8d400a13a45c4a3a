"""Exercise: the inference module a model server calls: load once, preprocess a batch, labels + probabilities."""
import tempfile
from pathlib import Path

import torch

from labkit.grading.exercise import Exercise

MAX_LEN = 16

TASK = """
A model server needs one small class between HTTP and the model. Write `TextClassifierService`:

- `__init__(checkpoint_path, vocab, max_len=16)`: build the model with the given `build_model(len(vocab))`,
  load its weights **once** from `checkpoint_path` (a file written by `labkit.train.save_checkpoint`; use
  `labkit.train.load_checkpoint`), and put it in **evaluation mode** (this model has dropout);
- `preprocess(texts)` → `(B, max_len)` int64 token ids: tokenize, map to ids, truncate and pad with the
  vocabulary's `pad_id` (`vocab.encode_batch` does exactly this); an empty list raises `ValueError`;
- `predict(texts)` → `(labels, probabilities)`: `labels` a `(B,)` int64 tensor, `probabilities` a `(B, 2)`
  float tensor whose rows are the **softmax** of the logits (each row sums to 1) and `labels` their argmax.
  Run the forward under `torch.inference_mode()`: no autograd graph is built, which a server should never pay
  for (the grader checks `torch.is_inference(probabilities)`).

The grader saves a small GRU classifier with random weights, builds a vocabulary, and compares your outputs
with its own reference, calls `predict` several times (the weights file must be read only once), and checks
shapes, dtypes and that rows sum to 1. Worked example: `labkit/serve/lifecycle.py` (`load_model`),
`labkit/serve/preprocessing.py` (`TextPreprocessor`) and `labkit/serve/engines.py` (`predict_probs`); taught in
09_async_serving.
"""

STUB = '''
import torch
from torch import nn

from labkit.models import RNNClassifier
from labkit.preprocess import Vocab


def build_model(vocab_size: int) -> nn.Module:
    """The architecture the checkpoint was saved from (given): a GRU classifier with dropout before its head."""
    return RNNClassifier(vocab_size, num_classes=2, embed_dim=16, hidden_dim=32, cell="gru", dropout=0.5)


class TextClassifierService:
    """Loads the classifier once; turns batches of raw sentences into labels and probabilities."""

    def __init__(self, checkpoint_path: str, vocab: Vocab, max_len: int = 16):
        raise NotImplementedError("__init__")

    def preprocess(self, texts: list[str]) -> torch.Tensor:
        """(B, max_len) int64 token ids."""
        raise NotImplementedError("preprocess")

    def predict(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """labels (B,) int64 and probabilities (B, 2), rows summing to 1."""
        raise NotImplementedError("predict")
'''

TEXTS = ["the food was good", "the service was not very good", "the plot was dull but the music was superb",
         "the room is awful", "zebra quantum the"]  # the last has unknown words


def _setup(sub):
    """(service, reference model in eval mode, vocab, checkpoint path, directory), from one saved checkpoint."""
    from labkit.preprocess import Vocab, tokenize
    from labkit.train import load_checkpoint, save_checkpoint

    vocab = Vocab.build([tokenize(t) for t in TEXTS[:4] + ["the staff was nice and the view was great"]])
    folder = tempfile.mkdtemp(prefix="inference_module-")
    path = Path(folder) / "gru.pt"
    torch.manual_seed(7)
    save_checkpoint(path, sub.build_model(len(vocab)))
    reference = sub.build_model(len(vocab))
    load_checkpoint(path, reference)
    service = sub.TextClassifierService(str(path), vocab, max_len=MAX_LEN)
    return service, reference.eval(), vocab, path


def test_preprocess_pads_truncates_and_maps_unknowns(sub):
    """preprocess(texts) equals vocab.encode_batch(texts, max_len): (B, 16) int64"""
    service, _, vocab, _ = _setup(sub)
    long_text = " ".join(["good"] * 30)
    ids = service.preprocess(TEXTS + [long_text])
    want = vocab.encode_batch(TEXTS + [long_text], MAX_LEN)
    assert isinstance(ids, torch.Tensor) and ids.dtype == torch.int64, f"expected an int64 tensor, got {ids!r:.80}"
    assert tuple(ids.shape) == tuple(want.shape), f"shape {tuple(ids.shape)}, expected {tuple(want.shape)}"
    assert torch.equal(ids, want), "token ids differ from vocab.encode_batch (padding with pad_id at the end?)"


def test_predict_matches_reference_in_eval_mode(sub):
    """labels and probabilities equal the reference (weights loaded, eval mode: dropout off)"""
    service, reference, vocab, _ = _setup(sub)
    labels, probs = service.predict(TEXTS)
    with torch.no_grad():
        want = reference(vocab.encode_batch(TEXTS, MAX_LEN)).softmax(dim=1)  # (B, 2)
    assert tuple(probs.shape) == (len(TEXTS), 2), f"probabilities shape {tuple(probs.shape)}, expected (5, 2)"
    again = service.predict(TEXTS)[1]
    assert torch.allclose(probs, again), ("two predictions of the same texts differ: is the model still in "
                                          "training mode (dropout active)? call model.eval()")
    assert torch.allclose(probs.float(), want, atol=1e-5), (
        "probabilities differ from the reference: load the checkpoint's weights, eval mode, softmax over classes")
    assert torch.equal(labels, want.argmax(dim=1)), "labels must be the argmax of each probability row"


def test_probabilities_are_a_softmax(sub):
    """rows are non-negative, sum to 1; labels are (B,) int64"""
    service, *_ = _setup(sub)
    labels, probs = service.predict(TEXTS[:3])
    assert labels.dtype == torch.int64 and tuple(labels.shape) == (3,), f"labels: {labels!r}"
    assert (probs >= 0).all() and torch.allclose(probs.sum(dim=1), torch.ones(3), atol=1e-5), (
        f"rows must sum to 1 (softmax over the class dimension); got sums {probs.sum(dim=1).tolist()}")


def test_runs_under_inference_mode(sub):
    """the forward runs under torch.inference_mode(): no autograd graph"""
    service, *_ = _setup(sub)
    _, probs = service.predict(TEXTS[:2])
    assert not probs.requires_grad, "probabilities carry an autograd graph: wrap the forward in torch.inference_mode()"
    assert torch.is_inference(probs), ("probabilities were not computed under torch.inference_mode() "
                                       "(torch.no_grad() also skips the graph, but inference_mode is cheaper)")


def test_weights_read_once(sub):
    """the checkpoint is read in __init__ only: predicting works after the file is gone"""
    calls = []
    real_load = torch.load

    def counting_load(*args, **kwargs):
        calls.append(args[0] if args else kwargs.get("f"))
        return real_load(*args, **kwargs)
    torch.load = counting_load
    try:
        service, _, _, path = _setup(sub)
        loads_at_start = len(calls)
        path.unlink()  # a server must not depend on the file after start-up
        for _ in range(3):
            service.predict(TEXTS[:2])
    finally:
        torch.load = real_load
    assert len(calls) == loads_at_start, f"predict read a checkpoint {len(calls) - loads_at_start} times"


def test_empty_batch_is_a_value_error(sub):
    """predict([]) raises ValueError"""
    service, *_ = _setup(sub)
    try:
        service.predict([])
    except ValueError:
        return
    except Exception as err:
        raise AssertionError(f"predict([]) raised {type(err).__name__}, expected ValueError") from None
    raise AssertionError("predict([]) returned instead of raising ValueError")


EXERCISE = Exercise(
    name="inference_module", title="Exercise · An inference module for a model server", task=TASK, stub=STUB,
    tests=(test_preprocess_pads_truncates_and_maps_unknowns, test_predict_matches_reference_in_eval_mode,
           test_probabilities_are_a_softmax, test_runs_under_inference_mode, test_weights_read_once,
           test_empty_batch_is_a_value_error),
    protected_modules=('labkit.serve',),
)
