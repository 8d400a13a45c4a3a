import numpy as np
import pytest

from labkit import bench


def test_percentiles_match_numpy():
    samples = np.arange(1, 101, dtype=float)
    row = bench.percentiles(samples)
    assert row["p50_ms"] == np.percentile(samples, 50) and row["p99_ms"] == np.percentile(samples, 99)
    assert row["max_over_min"] == 100.0


def test_time_calls_counts_and_warmup():
    calls = []
    samples = bench.time_calls(lambda: calls.append(1), repeats=7, warmup=3)
    assert len(samples) == 7 and len(calls) == 10 and (samples >= 0).all()


def test_bad_arguments():
    with pytest.raises(ValueError):
        bench.time_calls(lambda: None, repeats=0)
    with pytest.raises(ValueError):
        bench.percentiles(np.array([]))
