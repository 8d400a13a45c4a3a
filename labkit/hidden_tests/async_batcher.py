"""Hidden tests for async_batcher: batches of one, and full batches under load."""
from labkit.exercises.async_batcher import _submit_all


def test_hidden_batch_size_one(sub):
    """max_batch_size=1: every item is its own batch and every caller gets its own result"""
    results, fn = _submit_all(sub, 12, max_batch_size=1, max_wait_s=0.01)
    assert results == [2 * i for i in range(12)], f"results {results}"
    assert all(len(batch) == 1 for batch in fn.batches), f"batches {fn.batches} exceed max_batch_size=1"


def test_hidden_full_batches_under_load(sub):
    """100 concurrent callers with max_batch_size=10 and a long wait: full batches, every item once"""
    results, fn = _submit_all(sub, 100, max_batch_size=10, max_wait_s=0.5)
    assert results == [2 * i for i in range(100)]
    sizes = [len(batch) for batch in fn.batches]
    assert max(sizes) <= 10 and len(sizes) <= 12, f"batch sizes {sizes}: send a batch as soon as it is full"


TESTS = (test_hidden_batch_size_one, test_hidden_full_batches_under_load)
