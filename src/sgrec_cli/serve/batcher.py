"""Request batching for `sgrec serve`: concurrent requests wait a few milliseconds to join one
call of a batch function, which runs in a worker thread so that the event loop keeps
accepting requests. A bounded number of requests is held at once; one more is refused
(``QueueFull``, answered 503) instead of waiting without bound.

The batch function takes a list of jobs and returns one result per job, in order. It knows
nothing of HTTP; the batcher knows nothing of models.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["Batcher", "QueueFull"]


class QueueFull(Exception):  # noqa: N818 - a signal to shed load, answered 503
    """The batcher already holds ``max_queue`` requests."""


class Batcher:
    """``await submit(job)`` -> the batch function's result for ``job``.

    A batch opens when a job arrives and nothing is being gathered; it closes when
    ``max_batch`` jobs joined or ``wait_ms`` passed since it opened. Jobs that arrive while a
    batch runs are gathered into the next one, so under load batches fill without waiting.
    ``max_batch`` 1 turns batching off (one job per call). Only one batch runs at a time.
    """

    def __init__(self, fn: Callable[[Sequence[Any]], Sequence[Any]], *, max_batch: int = 64,
                 wait_ms: float = 5.0, max_queue: int = 256):
        if max_batch < 1 or max_queue < 1 or wait_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and wait_ms >= 0")
        self.fn = fn
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000.0
        self.max_queue = max_queue
        self.held = 0  # jobs accepted and not yet answered (queued or in the running batch)
        self.batches = 0
        self.jobs = 0
        self._queue: deque[tuple[Any, asyncio.Future]] = deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sgrec-batch")
        self._worker = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop gathering; jobs still queued are cancelled (their callers see CancelledError)."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        while self._queue:
            _, fut = self._queue.popleft()
            fut.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    async def submit(self, job: Any) -> Any:
        if not self.running or self._arrived is None:
            raise RuntimeError("the batcher is not running")
        if self.held >= self.max_queue:
            raise QueueFull(f"{self.held} requests are waiting (--max-queue {self.max_queue})")
        self.held += 1
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((job, fut))
        self._arrived.set()
        try:
            return await fut
        finally:
            self.held -= 1

    async def _wait(self, timeout: float | None) -> bool:
        """Wait until a job is queued (True) or ``timeout`` seconds pass (False). An event,
        not the queue itself, is waited on: a timed-out wait can then never lose a job."""
        assert self._arrived is not None
        while not self._queue:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except asyncio.TimeoutError:  # noqa: UP041 - not builtin TimeoutError on 3.10
                return bool(self._queue)
        return True

    async def _gather(self) -> list[tuple[Any, asyncio.Future]]:
        await self._wait(None)
        batch = [self._queue.popleft()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while len(batch) < self.max_batch:
            if self._queue:  # already waiting: no reason to wait for it
                batch.append(self._queue.popleft())
                continue
            left = deadline - loop.time()
            if left <= 0 or not await self._wait(left):
                break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            live = [(job, fut) for job, fut in batch if not fut.done()]  # callers that left
            if not live:
                continue
            try:
                results = await loop.run_in_executor(self._pool, self.fn,
                                                     [job for job, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"batch function returned {len(results)} results for "
                                       f"{len(live)} jobs")
            except Exception as e:  # noqa: BLE001 - every caller of the batch gets the error
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self.batches += 1
            self.jobs += len(live)
            for (_, fut), result in zip(live, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
