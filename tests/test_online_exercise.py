"""Exercise 10 tells forgetting apart: a learner without replay passes everything but the old-distribution floor."""
import types

import pytest

from labkit.exercises import online_learning as ex
from labkit.grading.exercise import SOLUTIONS_DIR


def _module(source: str) -> types.ModuleType:
    module = types.ModuleType("submission")
    exec(compile(source, "submission.py", "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def naive():
    source = (SOLUTIONS_DIR / "online_learning.py").read_text()
    assert "        if len(self.buffer):" in source
    return _module(source.replace("        if len(self.buffer):", "        if False:"))  # never rehearse


def test_a_learner_without_replay_fails_only_the_forgetting_floor(naive):
    run = ex.run_stream(naive)
    ex.check_adapts(run)           # it adapts to the drift ...
    ex.check_learns_new(run)
    with pytest.raises(AssertionError, match="forgot the old distribution"):
        ex.check_remembers(run)    # ... and forgets the upright digits
    assert run["old"] < ex.OLD_FLOOR - 0.1 and run["untouched"]
