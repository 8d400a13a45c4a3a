"""Hidden tests for online_learning: another rotation, seed and drift point; buffer edge cases; a pure predict."""
import torch

from labkit.exercises.online_learning import (check_adapts, check_learns_new, check_remembers, deployed,
                                              run_stream)


def test_hidden_other_drift_adapts_and_remembers(sub):
    """270-degree rotation after 400 samples, seed 1: beats static by 0.25, old >= 0.80, new >= 0.60"""
    run = run_stream(sub, "hidden")
    check_adapts(run)
    check_remembers(run)
    check_learns_new(run)
    assert run["untouched"], "update() changed the deployed model it was given"


def test_hidden_buffer_edges(sub):
    """capacity >= rows offered keeps every row; capacity 1 keeps one; capacity 0 is refused"""
    buf = sub.ReplayBuffer(10, seed=3)
    buf.add(torch.arange(6).float().reshape(6, 1, 1, 1).expand(6, 1, 8, 8), torch.arange(6))
    assert len(buf) == 6, f"6 rows offered to a buffer of 10: all must be kept, len = {len(buf)}"
    _, y = buf.sample(200)
    assert set(y.tolist()) == set(range(6)), f"sampling 200 rows from 6 kept rows drew only {sorted(set(y.tolist()))}"
    one = sub.ReplayBuffer(1)
    one.add(torch.zeros(5, 1, 8, 8), torch.arange(5))
    assert len(one) == 1
    try:
        sub.ReplayBuffer(0)
    except ValueError:
        pass
    else:
        raise AssertionError("ReplayBuffer(0) must raise ValueError")


def test_hidden_predict_is_pure_and_single_rows_update(sub):
    """predict twice gives the same labels and changes no weight; update works on a batch of one"""
    learner = sub.OnlineLearner(deployed("visible"), seed=0)
    X = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    first = torch.as_tensor(learner.predict(X)).reshape(-1)
    again = torch.as_tensor(learner.predict(X)).reshape(-1)
    assert torch.equal(first, again), "predict must not change the model"
    assert first.dtype == torch.int64, f"predict returns int64 labels, got {first.dtype}"
    learner.update(X[:1], torch.tensor([3]))
    learner.update(X[1:2], torch.tensor([4]))
    assert torch.as_tensor(learner.predict(X[:3])).reshape(-1).shape == (3,)


TESTS = (test_hidden_other_drift_adapts_and_remembers, test_hidden_buffer_edges,
         test_hidden_predict_is_pure_and_single_rows_update)
