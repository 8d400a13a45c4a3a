"""DynamicBatcher, tested by its failure modes, with a fake forward (no model, no timing asserts)."""
import asyncio

import numpy as np
import pytest

from labkit.serve.batcher import DeadlineExceeded, DynamicBatcher


class FakeForward:
    """Async forward: probs row i = [x_i, -x_i]; records batch sizes; can fail or be held back."""

    def __init__(self, fail_on: float | None = None, wrong_rows: bool = False, hold: asyncio.Event | None = None):
        self.batches: list[int] = []
        self.fail_on, self.wrong_rows, self.hold = fail_on, wrong_rows, hold
        self.running = self.max_running = 0

    async def __call__(self, x: np.ndarray) -> np.ndarray:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            self.batches.append(len(x))
            if self.hold is not None:
                await self.hold.wait()
            await asyncio.sleep(0)
            if self.fail_on is not None and self.fail_on in x:
                raise RuntimeError("model exploded")
            out = np.stack([x[:, 0], -x[:, 0]], axis=1)
            return out[:-1] if self.wrong_rows else out
        finally:
            self.running -= 1


def rows(*values: float) -> np.ndarray:
    return np.array([[v] for v in values], dtype=np.float32)  # (k, 1)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def test_full_batch_sent_without_waiting_for_timeout():
    async def main():
        fwd = FakeForward()
        b = DynamicBatcher(fwd, max_batch=4, max_wait_ms=10_000)  # the timeout never fires: only "full" can
        b.start()
        futures = [b.submit(rows(i)) for i in range(8)]
        results = await asyncio.gather(*futures)
        await b.stop()
        return fwd, results

    fwd, results = run(main())
    assert fwd.batches == [4, 4]
    for i, (probs, batch_rows) in enumerate(results):
        assert probs.tolist() == [[i, -i]] and batch_rows == 4  # each caller gets its own row back


def test_partial_batch_sent_at_timeout():
    async def main():
        fwd = FakeForward()
        b = DynamicBatcher(fwd, max_batch=64, max_wait_ms=5)
        b.start()
        results = await asyncio.gather(b.submit(rows(1)), b.submit(rows(2, 3)))
        await b.stop()
        return fwd, results

    fwd, results = run(main())
    assert fwd.batches == [3]
    assert results[1][0].tolist() == [[2, -2], [3, -3]] and results[1][1] == 3


def test_lone_request_answered_after_max_wait():
    async def main():
        b = DynamicBatcher(FakeForward(), max_batch=64, max_wait_ms=1)
        b.start()
        probs, batch_rows = await b.submit(rows(7))
        await b.stop()
        return probs, batch_rows

    probs, batch_rows = run(main())
    assert probs.tolist() == [[7, -7]] and batch_rows == 1


def test_cancelled_caller_does_not_hurt_others():
    async def main():
        fwd = FakeForward()
        b = DynamicBatcher(fwd, max_batch=64, max_wait_ms=5)
        b.start()
        futures = [b.submit(rows(i)) for i in range(5)]
        futures[2].cancel()  # a client that went away before its batch formed
        results = await asyncio.gather(*(f for i, f in enumerate(futures) if i != 2))
        later = await b.submit(rows(9))  # and the loop is still alive
        await b.stop()
        return fwd, results, later

    fwd, results, later = run(main())
    assert fwd.batches[0] == 4  # the cancelled one was skipped, not computed
    assert [p.tolist()[0][0] for p, _ in results] == [0, 1, 3, 4]
    assert later[0].tolist() == [[9, -9]]


def test_caller_cancelled_during_forward_does_not_break_the_batch():
    async def main():
        hold = asyncio.Event()
        fwd = FakeForward(hold=hold)
        b = DynamicBatcher(fwd, max_batch=64, max_wait_ms=1)
        b.start()
        futures = [b.submit(rows(i)) for i in range(3)]
        while not fwd.batches:
            await asyncio.sleep(0.001)
        futures[0].cancel()  # cancelled while its batch computes: set_result must skip it
        hold.set()
        results = await asyncio.gather(*futures[1:])
        await b.stop()
        return results

    results = run(main())
    assert [p.tolist()[0][0] for p, _ in results] == [1, 2]


def test_model_error_reaches_only_its_batch():
    async def main():
        fwd = FakeForward(fail_on=13.0)
        b = DynamicBatcher(fwd, max_batch=2, max_wait_ms=1)
        b.start()
        futures = [b.submit(rows(v)) for v in (1, 13, 2, 3)]  # batches [1, 13] and [2, 3]
        results = await asyncio.gather(*futures, return_exceptions=True)
        after = await b.submit(rows(4))
        await b.stop()
        return results, after

    results, after = run(main())
    assert isinstance(results[0], RuntimeError) and isinstance(results[1], RuntimeError)
    assert results[2][0].tolist() == [[2, -2]] and results[3][0].tolist() == [[3, -3]]
    assert after[0].tolist() == [[4, -4]]  # the loop survived the failure


def test_wrong_length_output_raises():
    async def main():
        b = DynamicBatcher(FakeForward(wrong_rows=True), max_batch=8, max_wait_ms=1)
        b.start()
        result = await asyncio.gather(b.submit(rows(1, 2)), return_exceptions=True)
        await b.stop()
        return result[0]

    err = run(main())
    assert isinstance(err, RuntimeError) and "1 rows for a batch of 2" in str(err)


def test_stop_drains_queued_requests():
    async def main():
        fwd = FakeForward()
        b = DynamicBatcher(fwd, max_batch=2, max_wait_ms=10_000)
        b.start()
        futures = [b.submit(rows(i)) for i in range(5)]  # the last one would wait 10 s for company
        await b.stop()
        with pytest.raises(RuntimeError, match="stopped"):
            b.submit(rows(0))
        return [f.result()[0].tolist() for f in futures]

    assert run(main()) == [[[i, -i]] for i in range(5)]


def test_request_larger_than_max_batch_runs_alone_and_order_is_kept():
    async def main():
        fwd = FakeForward()
        b = DynamicBatcher(fwd, max_batch=4, max_wait_ms=5)
        b.start()
        futures = [b.submit(rows(1, 2, 3)), b.submit(rows(4, 5)), b.submit(rows(*range(6)))]
        results = await asyncio.gather(*futures)
        await b.stop()
        return fwd.batches, results

    batches, results = run(main())
    assert batches == [3, 2, 6]  # never split a request, never exceed max_batch by combining
    assert results[2][0][:, 0].tolist() == list(range(6))


def test_expired_deadline_is_failed_without_computing():
    async def main():
        hold = asyncio.Event()
        fwd = FakeForward(hold=hold)
        b = DynamicBatcher(fwd, max_batch=1, max_wait_ms=0)
        b.start()
        first = b.submit(rows(1))
        loop = asyncio.get_running_loop()
        late = b.submit(rows(2), deadline_s=loop.time() + 0.01)
        await asyncio.sleep(0.05)
        hold.set()
        return await asyncio.gather(first, late, return_exceptions=True), fwd.batches

    (first, late), batches = run(main())
    assert first[0].tolist() == [[1, -1]]
    assert isinstance(late, DeadlineExceeded) and batches == [1]


def test_concurrency_bounds_forwards_in_flight_and_estimates_wait():
    async def main():
        fwd = FakeForward()
        b = DynamicBatcher(fwd, max_batch=1, max_wait_ms=0, concurrency=2)
        b.start()
        assert b.estimated_wait_s() == 0.0  # nothing measured yet: no early rejections
        await asyncio.gather(*(b.submit(rows(i)) for i in range(10)))
        await b.stop()
        return fwd, b

    fwd, b = run(main())
    assert fwd.max_running == 2 and b.per_row_s > 0 and b.queued_rows == 0 and b.in_flight_rows == 0


def test_invalid_arguments_named():
    with pytest.raises(ValueError, match="max_batch"):
        DynamicBatcher(FakeForward(), max_batch=0)
