import asyncio

_CLOSE = object()  # queue sentinel


class MicroBatcher:
    """Collects concurrent submit() calls into batches for one call of the async function `fn`."""

    def __init__(self, fn, max_batch_size: int = 8, max_wait_s: float = 0.01):
        self.fn = fn  # async: list of inputs -> list of results, same length and order
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._queue = None
        self._task = None

    async def submit(self, x):
        """The result of fn for x, computed in a batch with other concurrent submissions."""
        if self._task is None:  # lazily: the queue and the task belong to the running loop
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._loop())
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((x, future))
        return await future  # cancelling the caller cancels this future; the loop then skips it

    async def close(self):
        """Answer what is queued, then stop the background task."""
        if self._task is not None:
            self._queue.put_nowait(_CLOSE)
            await self._task
            self._task = None

    async def _loop(self):
        closing = False
        while not closing:
            item = await self._queue.get()
            if item is _CLOSE:
                break
            batch = [item]
            deadline = asyncio.get_running_loop().time() + self.max_wait_s
            while len(batch) < self.max_batch_size:
                timeout = deadline - asyncio.get_running_loop().time()
                if self._queue.empty() and timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), max(timeout, 0))
                except asyncio.TimeoutError:
                    break
                if item is _CLOSE:
                    closing = True  # flush this batch, then leave
                    break
                batch.append(item)
            await self._run([(x, f) for x, f in batch if not f.done()])  # skip cancelled callers

    async def _run(self, batch):
        if not batch:
            return
        try:
            results = await self.fn([x for x, _ in batch])
        except Exception as err:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(err)
                return
            for one in batch:  # isolate the bad item: run each alone
                await self._run([one])
            return
        for (_, future), result in zip(batch, results):
            if not future.done():  # cancelled while fn ran
                future.set_result(result)
