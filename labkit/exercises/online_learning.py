"""Exercise 10: an online learner that adapts to drift without forgetting, graded on a drifting digit stream."""
import copy
import inspect

import numpy as np
import torch

from labkit.grading.exercise import Exercise
from labkit.online.learners import pretrain  # the oracle's deployed model: imported before the submission
from labkit.online.stream import StreamConfig, make_drift_stream

TASK = """
A deployed digit classifier meets a stream whose digits, from some point on, all arrive rotated. Labels arrive
with the stream. Write the module that keeps the model useful:

- `ReplayBuffer(capacity, seed=0)`: keeps at most `capacity` past rows, a **uniform sample of every row offered so
  far** (reservoir sampling: row number n, counting from 0, is kept with probability capacity / (n + 1)), with
  `len(buffer)`, `add(X, y)` (X: (N, 1, 8, 8) floats, y: (N,) int64) and `sample(n)` → `(X, y)` of n rows drawn
  from the buffer. `ValueError` for `capacity < 1`.
- `OnlineLearner(model, lr=0.05, capacity=300, replay=32, seed=0)`: wraps the deployed `model` (an MLP mapping
  (N, 1, 8, 8) to 10 logits) **without changing it** (keep your own copy: the deployed model is what you roll
  back to); `predict(X)` → (N,) int64 labels, in eval mode and without gradients; `update(X, y)` → one optimizer
  step on the new batch **plus `replay` rows rehearsed from the buffer**, then offers the batch to the buffer.
- `prequential(learner, X, y, batch_size=16)` → numpy bool array (N,): for each batch in arrival order,
  **predict and score first, then update** on it.

Graded on a stream of 1200 digits (drift after 500): your prequential accuracy after the drift must beat the
static deployed model's by 0.25; after the stream your learner must still score at least **0.80 on held-out
upright digits** (a learner that only follows the stream forgets them: about 0.5 here) and at least 0.60 on
held-out rotated ones. Write it by hand (torch and numpy); do not import labkit or scikit-learn.
Worked version: notebook 14 §2-§3 and `labkit/online/learners.py`.
"""

STUB = '''
import copy

import numpy as np
import torch
from torch import nn


class ReplayBuffer:
    """At most `capacity` past rows: a uniform sample of every row offered (reservoir sampling)."""

    def __init__(self, capacity, seed=0):
        raise NotImplementedError("ReplayBuffer.__init__")

    def __len__(self):
        raise NotImplementedError("ReplayBuffer.__len__")

    def add(self, X, y):
        raise NotImplementedError("ReplayBuffer.add")

    def sample(self, n):
        """(X, y) of n rows drawn from the buffer."""
        raise NotImplementedError("ReplayBuffer.sample")


class OnlineLearner:
    """Adapts a copy of the deployed model to the stream, rehearsing replayed rows so it does not forget."""

    def __init__(self, model, lr=0.05, capacity=300, replay=32, seed=0):
        raise NotImplementedError("OnlineLearner.__init__")

    def predict(self, X):
        """(N,) int64 labels, eval mode, no gradients."""
        raise NotImplementedError("OnlineLearner.predict")

    def update(self, X, y):
        """One step on the batch plus `replay` rows from the buffer; then offer the batch to the buffer."""
        raise NotImplementedError("OnlineLearner.update")


def prequential(learner, X, y, batch_size=16):
    """Test-then-train over the stream: (N,) numpy bool array, True where the prediction was right."""
    raise NotImplementedError("prequential")
'''

# The visible scenario and the one the hidden tests grade (other rotation, other seed, other lengths).
SCENARIOS = {"visible": StreamConfig(n_before=500, n_after=700, rotation_k=1, seed=0),
             "hidden": StreamConfig(n_before=400, n_after=800, rotation_k=3, seed=1)}
MARGIN_OVER_STATIC, OLD_FLOOR, NEW_FLOOR = 0.25, 0.80, 0.60
_PREPARED: dict = {}
_RUNS: dict = {}
# Bound at import, before the submission runs. Predictions are copied into plain int64 NumPy arrays before any
# comparison, so a tensor subclass whose == always says True changes nothing; state dicts are read through the
# class's method, not an attribute the submission could set on its model.
_array, _int64, _equal, _Tensor = np.array, np.int64, torch.equal, torch.Tensor
_state_dict = torch.nn.Module.state_dict


def _static_after(model, stream) -> float:
    with torch.no_grad():
        pred = model(stream.X[stream.drift_at:]).argmax(dim=1)
    return float((pred == stream.y[stream.drift_at:]).float().mean())


def prepare() -> None:
    """Streams, deployed models (8 epochs on upright digits) and the static baseline, before the submission runs."""
    if _PREPARED:
        return
    torch.set_num_threads(1)   # a tiny MLP: one thread is as fast, and steadier on a busy machine
    for name, config in SCENARIOS.items():
        stream = make_drift_stream(config)
        model = pretrain(stream.X_pretrain, stream.y_pretrain, epochs=8, seed=config.seed)
        _PREPARED[name] = {"stream": stream, "state": copy.deepcopy(model.state_dict()), "model": model,
                           "static_after": _static_after(model, stream)}


def deployed(name: str = "visible"):
    """A fresh copy of the scenario's deployed model (the submission gets its own copy each time)."""
    prepare()
    return copy.deepcopy(_PREPARED[name]["model"])


def _labels(learner, X) -> np.ndarray:
    pred = learner.predict(X)
    if isinstance(pred, _Tensor):
        pred = pred.detach().cpu().numpy()
    out = _array(pred, dtype=_int64).reshape(-1)   # a plain ndarray copy, whatever predict returned
    assert out.size == len(X), f"predict returned {out.size} labels for {len(X)} inputs"
    return out


def run_stream(sub, name: str = "visible") -> dict:
    """The grader's own test-then-train loop over the scenario with the submission's learner, once per scenario."""
    key = (id(sub), name)
    if key not in _RUNS:
        prepare()
        stream, model = _PREPARED[name]["stream"], deployed(name)
        learner = sub.OnlineLearner(model, seed=SCENARIOS[name].seed)
        correct = np.zeros(len(stream.y), dtype=bool)
        for start in range(0, len(stream.y), 16):
            xb, yb = stream.X[start:start + 16], stream.y[start:start + 16]
            correct[start:start + len(yb)] = _labels(learner, xb.clone()) == yb.numpy()
            learner.update(xb.clone(), yb.clone())
        state = _PREPARED[name]["state"]
        _RUNS[key] = {"after": float(correct[stream.drift_at:].mean()), "static_after": _PREPARED[name]["static_after"],
                      "old": float((_labels(learner, stream.X_old.clone()) == stream.y_old.numpy()).mean()),
                      "new": float((_labels(learner, stream.X_new.clone()) == stream.y_new.numpy()).mean()),
                      "untouched": all(_equal(v, state[k]) for k, v in _state_dict(model).items())}
    return _RUNS[key]


def check_adapts(run: dict) -> None:
    assert run["after"] >= run["static_after"] + MARGIN_OVER_STATIC, (
        f"prequential accuracy after the drift {run['after']:.3f}; the static model scores {run['static_after']:.3f}"
        f" and yours must beat it by {MARGIN_OVER_STATIC}: does update() take an optimizer step on each batch?")


def check_remembers(run: dict) -> None:
    assert run["old"] >= OLD_FLOOR, (
        f"after the stream your learner scores {run['old']:.3f} on held-out upright digits (floor {OLD_FLOOR}): "
        f"it forgot the old distribution; rehearse rows from the replay buffer in every update")


def check_learns_new(run: dict) -> None:
    assert run["new"] >= NEW_FLOOR, (
        f"after the stream your learner scores {run['new']:.3f} on held-out rotated digits (floor {NEW_FLOOR})")


class _Memorizer:
    """Knows a label only after training on that exact input: test-then-train scores 0 on unseen inputs."""

    def __init__(self):
        self.seen, self.batches = {}, []

    def predict(self, X):
        return torch.tensor([self.seen.get(x.numpy().tobytes(), -1) for x in X])

    def update(self, X, y):
        self.batches.append(len(y))
        self.seen.update({x.numpy().tobytes(): int(t) for x, t in zip(X, y)})


def test_prequential_predicts_before_it_trains(sub):
    """each batch is scored before the learner trains on it; batches of batch_size in arrival order"""
    g = torch.Generator().manual_seed(0)
    X, y = torch.rand(50, 1, 8, 8, generator=g), torch.randint(0, 10, (50,), generator=g)
    learner = _Memorizer()
    once = np.asarray(sub.prequential(learner, X, y, batch_size=8))
    assert once.shape == (50,) and once.dtype == bool, f"prequential must return a (50,) bool array; got {once.shape} {once.dtype}"
    assert not once.any(), "on inputs never seen, a learner that only memorizes scores 0: predict before update"
    assert learner.batches == [8] * 6 + [2], f"updates of {learner.batches}; expected batches of 8 in order"
    twice = np.asarray(sub.prequential(_Memorizer(), torch.cat([X, X]), torch.cat([y, y]), batch_size=10))
    assert not twice[:50].any() and twice[50:].all(), "the second pass over the same inputs must score 1"


def test_buffer_is_a_bounded_uniform_sample(sub):
    """at most capacity rows; every row offered is equally likely to be kept (reservoir sampling)"""
    firsts = []
    for seed in range(5):
        buf = sub.ReplayBuffer(100, seed=seed)
        for start in range(0, 2000, 50):
            buf.add(torch.arange(start, start + 50).float().reshape(50, 1, 1, 1).expand(50, 1, 8, 8),
                    torch.arange(start, start + 50))
        assert len(buf) == 100, f"capacity 100 after 2000 rows offered, len(buffer) = {len(buf)}"
        X, yb = buf.sample(400)
        assert tuple(X.shape) == (400, 1, 8, 8) and tuple(yb.shape) == (400,), "sample(n) returns n rows"
        assert _equal(X[:, 0, 0, 0].long(), yb.long()), "sample(n) must keep each row's x with its y"
        firsts.append(float((yb < 1000).float().mean()))
    share = float(np.mean(firsts))
    assert 0.38 < share < 0.62, (f"{share:.2f} of the sampled rows come from the first half of the stream "
                                 f"(expected ~0.5): keep row n with probability capacity / (n + 1)")


def test_deployed_model_is_left_untouched(sub):
    """the learner trains its own copy: the deployed model is unchanged, the learner's copy improved"""
    run = run_stream(sub)
    assert run["untouched"], "update() changed the deployed model you were given: train a copy (copy.deepcopy)"
    assert run["after"] > run["static_after"], "the learner's copy never got better than the deployed model"


def test_adapts_after_the_drift(sub):
    """prequential accuracy after the drift beats the static model by 0.25"""
    check_adapts(run_stream(sub))


def test_does_not_forget_the_old_distribution(sub):
    """held-out upright digits after the stream: at least 0.80"""
    check_remembers(run_stream(sub))


def test_learns_the_new_distribution(sub):
    """held-out rotated digits (never in the stream) after the stream: at least 0.60"""
    check_learns_new(run_stream(sub))


def test_written_by_hand(sub):
    """a learner that adapts, written with torch and numpy only (no labkit, no scikit-learn)"""
    check_adapts(run_stream(sub))
    source = inspect.getsource(sub)
    for word in ("labkit", "sklearn", "load_digits"):
        assert word not in source, f"write the learner with torch and numpy only; the source mentions {word!r}"


EXERCISE = Exercise(
    name="online_learning", title="Exercise 10 · An online learner that does not forget", task=TASK, stub=STUB,
    tests=(test_prequential_predicts_before_it_trains, test_buffer_is_a_bounded_uniform_sample,
           test_deployed_model_is_left_untouched, test_adapts_after_the_drift,
           test_does_not_forget_the_old_distribution, test_learns_the_new_distribution, test_written_by_hand),
    prepare=prepare,
    protected_modules=("labkit.online.learners", "labkit.online.drift"),
)
