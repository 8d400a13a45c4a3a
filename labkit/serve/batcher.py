"""Dynamic batching: many requests' rows, one forward, each caller gets back its own rows.

Requests enter an asyncio queue. The loop takes the oldest, then keeps taking until the batch holds
max_batch rows or the oldest has waited max_wait_ms, runs one forward, and resolves each caller's
future with its slice. A cancelled caller is skipped (its future is done), a forward that raises fails
only that batch's callers, and the loop keeps going. Taught in 09_async_serving.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import numpy as np

_STOP = object()  # queue sentinel: flush what is queued, then leave the loop


class DeadlineExceeded(RuntimeError):
    """The request's deadline passed while it waited in the queue."""


@dataclass(slots=True)
class _Item:
    x: np.ndarray           # (k, ...) preprocessed rows of one request
    future: asyncio.Future    # -> (probs (k, K), batch rows)
    enqueued_s: float         # loop.time() at submit
    deadline_s: float | None  # loop.time() after which the result is useless


class DynamicBatcher:
    """Micro-batcher over an async forward `run(x (n, ...)) -> probs (n, K)`; up to `concurrency` forwards at once."""

    def __init__(self, run: Callable[[np.ndarray], Awaitable[np.ndarray]], max_batch: int = 64,
                 max_wait_ms: float = 2.0, concurrency: int = 1,
                 on_batch: Callable[[int, float], None] | None = None):
        if max_batch < 1 or max_wait_ms < 0 or concurrency < 1:
            raise ValueError(f"need max_batch >= 1, max_wait_ms >= 0, concurrency >= 1; got "
                             f"{max_batch}, {max_wait_ms}, {concurrency}")
        self.run, self.max_batch, self.max_wait_s = run, max_batch, max_wait_ms / 1e3
        self.on_batch = on_batch            # called with (rows, forward seconds) after each forward
        self.queued_rows = self.in_flight_rows = 0
        self.per_row_s = 0.0                # moving average of forward seconds per row (0 = not measured yet)
        self._queue: asyncio.Queue = asyncio.Queue()
        self._slots = asyncio.Semaphore(concurrency)
        self._carry: _Item | None = None    # an item that did not fit the previous batch
        self._tasks: set[asyncio.Task] = set()
        self._loop_task: asyncio.Task | None = None
        self._concurrency = concurrency
        self._stopping = False              # STOP seen: flush without waiting, then leave
        self._closed = False                # stop() called: no new submissions

    def start(self) -> None:
        """Start the batching loop (call from inside the running event loop)."""
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._loop(), name="labkit-batcher")

    async def stop(self) -> None:
        """Answer everything already queued, then stop the loop."""
        self._closed = True
        if self._loop_task is not None:
            self._queue.put_nowait(_STOP)
            await self._loop_task
            self._loop_task = None

    def submit(self, x: np.ndarray, deadline_s: float | None = None) -> asyncio.Future:
        """Queue rows x (k, ...); the future resolves to (probs (k, K), rows in the forward that served them)."""
        if self._closed:
            raise RuntimeError("the batcher is stopped")
        loop = asyncio.get_running_loop()
        item = _Item(x, loop.create_future(), loop.time(), deadline_s)
        self.queued_rows += len(x)
        self._queue.put_nowait(item)
        return item.future

    def estimated_wait_s(self, rows: int = 0) -> float:
        """Rough time until a new request of `rows` rows is answered: the rows ahead of it and its own, times the
        recent seconds per row."""
        return (self.queued_rows + self.in_flight_rows + rows) * self.per_row_s / self._concurrency

    async def _loop(self) -> None:
        while True:
            await self._slots.acquire()  # form the next batch only when a worker is free: it grows meanwhile
            batch = await self._collect()
            if batch:
                task = asyncio.create_task(self._forward(batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._slots.release()
            if self._stopping and self._carry is None and self._queue.empty():
                break
        await asyncio.gather(*self._tasks)

    async def _next(self, timeout_s: float | None) -> object:
        """The next queued item (the carried-over one first); None when timeout_s passes first."""
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        if not self._queue.empty():
            return self._queue.get_nowait()
        if self._stopping or (timeout_s is not None and timeout_s <= 0):
            return None
        try:
            async with asyncio.timeout(timeout_s):
                return await self._queue.get()
        except TimeoutError:
            return None

    async def _collect(self) -> list[_Item]:
        """One batch: items until it holds max_batch rows or the oldest item has waited max_wait."""
        loop, batch, rows, close_at = asyncio.get_running_loop(), [], 0, None
        while rows < self.max_batch:
            item = await self._next(None if close_at is None else close_at - loop.time())
            if item is None:
                break
            if item is _STOP:
                self._stopping = True
                break
            self.queued_rows -= len(item.x)
            if not self._usable(item, loop.time()):
                continue
            if batch and rows + len(item.x) > self.max_batch:
                self.queued_rows += len(item.x)
                self._carry = item  # keeps its place: first in the next batch
                break
            if close_at is None:
                close_at = item.enqueued_s + self.max_wait_s  # the wait counts from the oldest's arrival
            batch.append(item)
            rows += len(item.x)
        return batch

    @staticmethod
    def _usable(item: _Item, now_s: float) -> bool:
        """False for a cancelled caller (skip it) or one past its deadline (fail it without computing)."""
        if item.future.done():
            return False
        if item.deadline_s is not None and now_s > item.deadline_s:
            item.future.set_exception(DeadlineExceeded("deadline passed while queued"))
            return False
        return True

    async def _forward(self, batch: list[_Item]) -> None:
        """Run one forward for the batch and hand each caller its own rows."""
        x = batch[0].x if len(batch) == 1 else np.concatenate([item.x for item in batch])  # (n, ...)
        n, start = len(x), time.perf_counter()
        self.in_flight_rows += n
        try:
            probs = await self.run(x)
            if len(probs) != n:
                raise RuntimeError(f"the forward returned {len(probs)} rows for a batch of {n}")
        except (Exception, asyncio.CancelledError) as err:  # the whole batch failed: tell its callers
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(err if isinstance(err, Exception) else RuntimeError("cancelled"))
            if isinstance(err, asyncio.CancelledError):
                raise
            return  # and keep serving
        else:
            seconds = time.perf_counter() - start
            self.per_row_s = seconds / n if self.per_row_s == 0 else 0.8 * self.per_row_s + 0.2 * seconds / n
            if self.on_batch is not None:
                self.on_batch(n, seconds)
            offset = 0
            for item in batch:
                k = len(item.x)
                if not item.future.done():  # a caller cancelled meanwhile: nothing to deliver
                    item.future.set_result((probs[offset:offset + k], n))
                offset += k
        finally:
            self.in_flight_rows -= n
            self._slots.release()
