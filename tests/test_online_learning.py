"""labkit.online learning half: the drifting stream, prequential evaluation, replay, drift detectors."""
import numpy as np
import pytest
import torch

from labkit.online.drift import DetectorTriggeredLearner, detect, make_detector
from labkit.online.learners import (NaiveLearner, PrequentialResult, ReplayLearner, ReservoirBuffer,
                                    StaticLearner, accuracy_of, prequential, pretrain)
from labkit.online.stream import StreamConfig, make_drift_stream, rotate


@pytest.fixture(scope="module")
def stream():
    return make_drift_stream(StreamConfig(n_before=200, n_after=400))


@pytest.fixture(scope="module")
def deployed(stream):
    return pretrain(stream.X_pretrain, stream.y_pretrain, epochs=8)


def test_stream_drifts_at_the_stated_index(stream):
    assert len(stream) == 600 and stream.drift_at == 200
    assert torch.equal(stream.X_new, rotate(stream.X_old, 1))
    assert not torch.equal(rotate(stream.X[:5], 1), stream.X[:5])
    # seeded: the same config gives the same stream
    again = make_drift_stream(StreamConfig(n_before=200, n_after=400))
    assert torch.equal(again.X, stream.X) and torch.equal(again.y, stream.y)


def test_rotate_four_quarter_turns_is_identity():
    X = torch.arange(2 * 64, dtype=torch.float32).reshape(2, 1, 8, 8)
    assert torch.equal(rotate(X, 4), X) and not torch.equal(rotate(X, 1), X)


class Memorizer:
    """Predicts a label only for inputs it has already trained on: test-then-train must score 0 on new inputs."""
    name = "memorizer"

    def __init__(self):
        self.seen = {}

    def predict(self, X):
        return torch.tensor([self.seen.get(x.numpy().tobytes(), -1) for x in X])

    def update(self, X, y):
        self.seen.update({x.numpy().tobytes(): int(t) for x, t in zip(X, y)})


def test_prequential_tests_before_it_trains():
    X = torch.randn(64, 1, 8, 8)
    y = torch.randint(0, 10, (64,))
    assert prequential(Memorizer(), X, y, batch_size=8).accuracy() == 0.0
    twice = prequential(Memorizer(), torch.cat([X, X]), torch.cat([y, y]), batch_size=8)
    assert twice.accuracy(0, 64) == 0.0 and twice.accuracy(64) == 1.0


def test_rolling_accuracy_matches_a_direct_window():
    correct = np.random.default_rng(0).random(50) < 0.6
    r = PrequentialResult("x", correct)
    want = [correct[max(0, i - 9):i + 1].mean() for i in range(50)]
    assert np.allclose(r.rolling(10), want)


def test_reservoir_keeps_capacity_and_a_uniform_sample():
    buf = ReservoirBuffer(100, seed=0)
    buf.add(torch.arange(2000).float()[:, None], torch.arange(2000))
    assert len(buf) == 100 and buf.seen == 2000
    assert 600 < float(buf.y.float().mean()) < 1400       # uniform over 0..1999: mean ~1000
    X, y = buf.sample(7)
    assert X.shape == (7, 1) and torch.equal(X[:, 0].long(), y)
    with pytest.raises(ValueError):
        ReservoirBuffer(0)


def test_static_learner_never_changes(stream, deployed):
    learner = StaticLearner(deployed)
    before = [p.clone() for p in learner.model.parameters()]
    learner.update(stream.X[:32], stream.y[:32])
    assert all(torch.equal(a, b) for a, b in zip(before, learner.model.parameters()))


def test_updating_beats_static_after_drift_and_replay_forgets_less(stream, deployed):
    results, old = {}, {}
    for learner in (StaticLearner(deployed), NaiveLearner(deployed), ReplayLearner(deployed, capacity=200)):
        results[learner.name] = prequential(learner, stream.X, stream.y, batch_size=16).accuracy(stream.drift_at)
        old[learner.name] = accuracy_of(learner, stream.X_old, stream.y_old)
    assert results["static"] < 0.3                                   # rotated digits fool the deployed model
    assert results["naive"] > results["static"] + 0.2 and results["replay"] > results["static"] + 0.2
    assert old["replay"] > old["naive"] + 0.1                        # rehearsal keeps the old distribution
    assert old["static"] > 0.85


def test_detectors_fire_soon_after_a_jump_in_error_rate():
    rng = np.random.default_rng(0)
    errors = np.concatenate([rng.random(500) < 0.05, rng.random(500) < 0.7])
    for kind in ("adwin", "page_hinkley"):
        d = detect(errors, kind, drift_at=500)
        assert d.false_alarms == 0 and d.delay is not None and 0 <= d.delay < 100, (kind, d)
    missed = detect(errors[:500], "adwin", drift_at=500)
    assert missed.delay is None and missed.first_after is None
    with pytest.raises(ValueError):
        make_detector("nope")


def test_triggered_learner_is_frozen_until_its_detector_fires(stream, deployed):
    learner = DetectorTriggeredLearner(deployed, "page_hinkley")
    before = [p.clone() for p in learner.model.parameters()]
    prequential(learner, stream.X[:stream.drift_at], stream.y[:stream.drift_at])
    assert learner.alarm_at is None
    assert all(torch.equal(a, b) for a, b in zip(before, learner.model.parameters()))
    result = prequential(learner, stream.X[stream.drift_at:], stream.y[stream.drift_at:])
    assert learner.alarm_at is not None and learner.steps > 0
    assert result.accuracy() > 0.2   # the static model scores ~0.1 on rotated digits
