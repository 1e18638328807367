"""URL queries for the service: a bounded number of fetches, each ended with its request.

The fetch itself (address checks before any connection, redirects checked hop by hop,
one deadline over connect, headers and body) is :func:`similar_images.images.fetch.fetch`.
What the service adds:

* at most ``max_fetches`` fetches run at once; further requests wait for a slot without
  holding a thread (and get the request time limit's 503 if none frees in time);
* each fetch runs in a thread of its own that ends with the fetch, not in anyio's shared
  worker pool, whose threads stay alive after the work is done;
* a request that ends first (its time limit, a dropped client) cancels its fetch: the
  sockets are shut down and the thread ends within moments, not at the deadline.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from similar_images.images.fetch import Deadline, FetchPolicy, fetch

log = logging.getLogger(__name__)


class UrlFetcher:
    """Runs :func:`fetch` under ``policy``, at most ``max_fetches`` at a time."""

    def __init__(self, policy: FetchPolicy, max_fetches: int):
        if max_fetches < 1:
            raise ValueError(f"max_fetches must be at least 1, got {max_fetches}")
        self.policy, self.max_fetches = policy, max_fetches
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._count_lock = threading.Lock()
        self.running = 0  # fetch threads alive now

    def _slots_here(self) -> asyncio.Semaphore:
        # asyncio primitives belong to one event loop: a new server (or test client) gets its own
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._slots = loop, asyncio.Semaphore(self.max_fetches)
        return self._slots

    async def fetch(self, url: str) -> bytes:
        """The body at ``url``.

        Raises:
            ImageError: as :func:`similar_images.images.fetch.fetch`.
        """
        slots = self._slots_here()
        await slots.acquire()
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        deadline = Deadline(self.policy.deadline, self.policy.timeout)

        def settle(body: bytes | None, error: BaseException | None) -> None:  # in the event loop
            if thread.is_alive():  # the slot is free once the thread is gone, so at most max_fetches exist
                loop.call_later(0.001, settle, body, error)
                return
            slots.release()
            if done.done():  # the request was cancelled
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(body)

        def work() -> None:  # in the fetch's own thread
            body, error = None, None
            try:
                body = fetch(url, self.policy, deadline)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting request as it is
                error = exc
            finally:
                with self._count_lock:
                    self.running -= 1
            try:
                loop.call_soon_threadsafe(settle, body, error)
            except RuntimeError:  # the server's loop is gone (shut down): nothing waits any more
                pass

        with self._count_lock:
            self.running += 1
        try:
            thread = threading.Thread(target=work, name="url-fetch", daemon=True)
            thread.start()
        except BaseException:
            with self._count_lock:
                self.running -= 1
            slots.release()
            raise
        try:
            return await done
        except BaseException:  # cancelled (time limit, client gone) or the fetch's own error
            deadline.cancel()  # a no-op when the fetch is over; otherwise its thread ends now
            raise
