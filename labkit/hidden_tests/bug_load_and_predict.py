"""Hidden tests for bug_load_and_predict: many requests of varying size after start-up."""
import torch

from labkit.exercises.bug_load_and_predict import TEXTS, _CountLoads, _setup


def test_hidden_many_requests_of_varying_size(sub):
    """30 requests of 1 to 3 texts: no checkpoint read after start-up, and the same answers each time"""
    with _CountLoads() as loads:
        handler, want, _ = _setup(sub)
        at_start = loads.count
        for i in range(30):
            n = 1 + i % 3
            out = handler.predict(TEXTS[:n])
            assert torch.allclose(torch.tensor(out["probabilities"]), want[:n], atol=1e-5), f"request {i} differs"
    assert loads.count == at_start, f"30 requests read the checkpoint {loads.count - at_start} more times"


TESTS = (test_hidden_many_requests_of_varying_size,)
