"""Micro-batching: requests that arrive together share one model call.

One worker task takes the first queued item, then keeps collecting for up to
``max_wait_s`` while more requests are known to be on their way (announced by
:meth:`MicroBatcher.expect` while they decode), up to ``max_batch`` items, and runs the
batch function in a single worker thread (one model instance, never on the event
loop). With one client nothing is announced, so a lone query never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


class MicroBatcher:
    """Group items into batches for ``run_batch(items) -> results`` (same length).

    ``run_batch`` may return an ``Exception`` in place of a result to fail one item only.
    """

    def __init__(self, run_batch: Callable[[Sequence], Sequence], *, max_batch: int, max_wait_s: float):
        self.run_batch, self.max_batch, self.max_wait_s = run_batch, max_batch, max_wait_s
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._expected = 0
        self._arrived: asyncio.Event | None = None
        self.batch_sizes: list[int] = []  # recent batch sizes, for /api/stats

    async def start(self) -> None:
        self._queue, self._arrived = asyncio.Queue(), asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._worker = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._queue = self._worker = self._executor = None

    @contextlib.contextmanager
    def expect(self):
        """Announce an item that is being prepared, so a forming batch waits for it."""
        self._expected += 1
        try:
            yield
        finally:
            self._expected -= 1

    async def submit(self, item):
        """Queue ``item`` and wait for its result (raises what the batch raised for it)."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        self._arrived.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            await self._collect(batch, loop)
            live = [(item, future) for item, future in batch if not future.cancelled()]
            if not live:
                continue
            self.batch_sizes = (self.batch_sizes + [len(live)])[-1000:]
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, [item for item, _ in live])
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
                results = [exc] * len(live)
            for (_, future), result in zip(live, results):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _collect(self, batch: list, loop) -> None:
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if self._expected <= 0 or remaining <= 0:
                return
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
