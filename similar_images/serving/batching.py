"""The ingress's micro-batching on Ray Serve's ``@serve.batch`` (``--batcher serve``), measured
against the one-process service's :class:`~similar_images.service.batcher.MicroBatcher`.

It has the micro-batcher's interface (``start``, ``stop``, ``expect``, ``submit``,
``batch_sizes``), so the routes and ``/api/stats`` are the same. What differs:
``@serve.batch`` waits ``max_wait_s`` for a batch to fill even when no other query is on
its way (the micro-batcher waits only for queries it was told are being decoded), and it
only runs inside a Ray Serve replica (it reads the replica's ``max_ongoing_requests``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor


class ServeBatcher:
    """Group items into batches for ``run_batch(items) -> results`` with ``@serve.batch``;
    the model runs in one worker thread, never on the event loop."""

    def __init__(self, run_batch: Callable[[Sequence], Sequence], *, max_batch: int, max_wait_s: float):
        from ray import serve

        self.run_batch = run_batch
        self.batch_sizes: list[int] = []  # recent batch sizes, for /api/stats
        self._executor: ThreadPoolExecutor | None = None
        self._batched = serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=max_wait_s)(self._run)

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    async def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = None

    @contextlib.contextmanager
    def expect(self):
        """Nothing to announce: ``@serve.batch`` always waits its time for a batch."""
        yield

    async def submit(self, item):
        """Queue ``item`` and wait for its result (raises what the batch raised for it)."""
        if self._executor is None:
            raise RuntimeError("the batcher is not started")
        result = await self._batched(item)
        if isinstance(result, BaseException):
            raise result
        return result

    async def _run(self, items: list) -> list:
        self.batch_sizes = (self.batch_sizes + [len(items)])[-1000:]
        try:
            return list(await asyncio.get_running_loop().run_in_executor(self._executor, self.run_batch, items))
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
            return [exc] * len(items)
