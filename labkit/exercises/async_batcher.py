"""Exercise: an asyncio micro-batcher, graded for correctness under concurrency."""
import asyncio
import time

from labkit.grading.exercise import Exercise

TASK = """
A model is much faster per item on a batch than one item at a time (the GRU of notebook 09: ~6x at batch 64).
Write the piece of a server that turns many concurrent requests into batches: `MicroBatcher(fn, max_batch_size,
max_wait_s)` with

- `await batcher.submit(x)` → the result for `x`. `fn` is an **async** function that takes a list of inputs and
  returns the list of their results (same length, same order). Concurrent `submit` calls must be answered by
  as few `fn` calls as possible: a batch is sent when it holds `max_batch_size` items, or when its oldest
  item has waited `max_wait_s` (so a lone request is not kept waiting for company);
- `await batcher.close()`: answer what is queued, then stop the background task.

It must stay correct when things go wrong, as in a real server:
- a caller that is **cancelled** (its client went away) must not break anyone else: never `set_result` on a
  future that is already done (`InvalidStateError` would kill your loop and every later request would hang);
- if `fn` raises on a batch, call `fn` again on each of that batch's items **alone**: only the item that
  fails gets the exception (`future.set_exception`), the others get their results.

Start the background task lazily (the first `submit` runs inside the event loop: `asyncio.create_task`).
The grader runs 50 concurrent callers, a lone caller, cancelled callers and a poisoned item, each with a time
limit (a hang fails the test). Worked example: `labkit/serve/batcher.py`; taught in 09_async_serving.
"""

STUB = '''
import asyncio


class MicroBatcher:
    """Collects concurrent submit() calls into batches for one call of the async function `fn`."""

    def __init__(self, fn, max_batch_size: int = 8, max_wait_s: float = 0.01):
        self.fn = fn  # async: list of inputs -> list of results, same length and order
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s

    async def submit(self, x):
        """The result of fn for x, computed in a batch with other concurrent submissions."""
        raise NotImplementedError("submit")

    async def close(self):
        """Answer what is queued, then stop the background task."""
        raise NotImplementedError("close")
'''


class Recorder:
    """An async batch function: doubles each input, records batch sizes, fails on negative inputs."""

    def __init__(self, delay_s: float = 0.002):
        self.batches: list[list] = []
        self.delay_s = delay_s

    async def __call__(self, xs: list) -> list:
        self.batches.append(list(xs))
        await asyncio.sleep(self.delay_s)
        if any(x < 0 for x in xs):
            raise ValueError(f"negative input in {xs}")
        return [2 * x for x in xs]


def _run(coro, timeout_s: float = 10.0):
    async def guarded():
        try:
            return await asyncio.wait_for(coro, timeout_s)
        except asyncio.TimeoutError:
            raise AssertionError(f"no answer within {timeout_s:g} s: a request hangs (is the loop still running? "
                                 f"is a partial batch ever sent?)") from None
    return asyncio.run(guarded())


def _submit_all(sub, n: int, max_batch_size: int, max_wait_s: float) -> tuple[list, Recorder]:
    """n concurrent submits of 0..n-1 to a fresh batcher, closed afterwards: (results, the recorded fn)."""
    async def main():
        fn = Recorder()
        b = sub.MicroBatcher(fn, max_batch_size=max_batch_size, max_wait_s=max_wait_s)
        results = await asyncio.gather(*(b.submit(i) for i in range(n)))
        await b.close()
        return results, fn
    return _run(main())


def test_each_caller_gets_its_own_result(sub):
    """50 concurrent submits get 2*x each, in fewer than 50 calls of fn"""
    results, fn = _submit_all(sub, 50, max_batch_size=16, max_wait_s=0.01)
    assert results == [2 * i for i in range(50)], f"callers got other callers' results: {results[:10]}..."
    assert len(fn.batches) < 50, "fn was called once per item: nothing was batched"
    assert sorted(x for batch in fn.batches for x in batch) == list(range(50)), "every item exactly once"


def test_batches_never_exceed_max_size(sub):
    """with max_batch_size=4 and 30 concurrent callers, every batch has at most 4 items"""
    _, fn = _submit_all(sub, 30, max_batch_size=4, max_wait_s=0.05)
    sizes = [len(batch) for batch in fn.batches]
    assert max(sizes) <= 4, f"batch sizes {sizes}: the largest exceeds max_batch_size=4"


def test_lone_request_answered_after_max_wait(sub):
    """a single caller (max_batch_size=100) is answered after ~max_wait_s, not kept waiting for company"""
    async def main():
        b = sub.MicroBatcher(Recorder(), max_batch_size=100, max_wait_s=0.05)
        start = time.perf_counter()
        result = await b.submit(21)
        elapsed = time.perf_counter() - start
        await b.close()
        return result, elapsed
    result, elapsed = _run(main(), timeout_s=5)
    assert result == 42, f"submit(21) returned {result!r}, expected 42"
    assert elapsed < 3.0, f"a lone request took {elapsed:.2f} s with max_wait_s=0.05"


def test_cancelled_caller_does_not_break_others(sub):
    """callers cancelled while queued or while their batch runs do not stop the others or later requests"""
    async def main():
        b = sub.MicroBatcher(Recorder(delay_s=0.05), max_batch_size=8, max_wait_s=0.02)
        tasks = [asyncio.create_task(b.submit(i)) for i in range(6)]
        await asyncio.sleep(0.005)   # queued, batch not formed yet
        tasks[1].cancel()
        await asyncio.sleep(0.04)    # now the batch is running
        tasks[4].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        later = await asyncio.gather(*(b.submit(i) for i in (100, 101)))
        await b.close()
        return done, later
    done, later = _run(main())
    for i in (0, 2, 3, 5):
        assert done[i] == 2 * i, f"caller {i} got {done[i]!r} after another caller was cancelled"
    assert later == [200, 202], f"requests after a cancellation got {later!r}: did the batching loop die?"


def test_error_fails_only_its_item(sub):
    """fn raises on a batch holding -1: only submit(-1) raises, the others get their results"""
    async def main():
        b = sub.MicroBatcher(Recorder(), max_batch_size=8, max_wait_s=0.02)
        results = await asyncio.gather(*(b.submit(x) for x in (1, -1, 2, 3)), return_exceptions=True)
        after = await b.submit(5)
        await b.close()
        return results, after
    results, after = _run(main())
    assert isinstance(results[1], ValueError), f"submit(-1) returned {results[1]!r}; expected it to raise ValueError"
    assert [results[0], results[2], results[3]] == [2, 4, 6], (
        f"good items got {[results[0], results[2], results[3]]!r}: one bad item must not fail its whole batch")
    assert after == 10, "the batcher stopped working after an error"


def test_close_answers_what_is_queued(sub):
    """close() while requests are queued: every one of them is answered, then close returns"""
    async def main():
        b = sub.MicroBatcher(Recorder(), max_batch_size=2, max_wait_s=0.01)
        tasks = [asyncio.create_task(b.submit(i)) for i in range(5)]
        await asyncio.sleep(0)  # let every submit enqueue
        await b.close()
        return await asyncio.gather(*tasks)
    assert _run(main()) == [0, 2, 4, 6, 8]


EXERCISE = Exercise(
    name="async_batcher", title="Exercise · An asyncio micro-batcher", task=TASK, stub=STUB,
    tests=(test_each_caller_gets_its_own_result, test_batches_never_exceed_max_size,
           test_lone_request_answered_after_max_wait, test_cancelled_caller_does_not_break_others,
           test_error_fails_only_its_item, test_close_answers_what_is_queued),
    protected_modules=('labkit.serve',),
)
