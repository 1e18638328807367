"""Running a compiled OpenVINO model: configuration, requests in flight, timing."""

from __future__ import annotations

import os
import time
from collections import deque

import numpy as np

# f32: on CPUs with AVX-512 BF16 OpenVINO otherwise runs "fp32" models in bfloat16.
COMPILE_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
COMPILED_CACHE = "openvino-compiled"  # under the cache root: OpenVINO's own compile cache (CACHE_DIR)
MIN_REQUESTS = 2  # one queued while the other runs, even with LATENCY (which asks for 1)


def compile_model(model, *, cache_dir: str | os.PathLike | None = None, **config: str):
    """Compile an ``openvino.Model`` for the CPU with :data:`COMPILE_CONFIG` (``config`` overrides).

    Compiled blobs are kept in ``<cache>/openvino-compiled`` (OpenVINO's ``CACHE_DIR``,
    keyed by the model and the configuration), so a later process compiles the same
    model and hint from the cache instead of again.
    """
    import openvino as ov

    from similar_images.models.speeds import cache_root

    folder = cache_root(cache_dir) / COMPILED_CACHE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        cache = {"CACHE_DIR": str(folder)}
    except OSError:  # an unwritable cache only costs the compile
        cache = {}
    return ov.Core().compile_model(model, "CPU", {**COMPILE_CONFIG, **cache, **config})


def requests_for(compiled) -> list:
    """Inference requests for ``compiled``: its optimal number, at least :data:`MIN_REQUESTS`."""
    count = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    return [compiled.create_infer_request() for _ in range(max(MIN_REQUESTS, count))]


class RequestStream:
    """Batches in, vectors out, oldest first, with requests kept in flight across batches.

    :meth:`submit` cuts a preprocessed batch into pieces of ``batch_size`` and starts
    each on a free request (waiting for the oldest one when none is free); :meth:`collect`
    returns the oldest submitted batch's vectors. So the next batch is already queued
    while the previous one runs, whatever the caller's batch size. No Python callbacks
    run on OpenVINO's threads (``AsyncInferQueue`` callbacks need the GIL from a foreign
    thread, a source of deadlocks): the caller waits for each request itself.
    """

    def __init__(self, requests: list, batch_size: int):
        self._free = list(requests)
        self._batch_size = batch_size
        self._running: deque = deque()  # (request, piece list) oldest first
        self._batches: deque = deque()  # per submitted batch: its list of piece outputs (None until done)

    @property
    def pending(self) -> int:
        """Batches submitted and not yet collected."""
        return len(self._batches)

    @property
    def depth(self) -> int:
        """How many batches to keep submitted: one per request, and one more. The extra batch
        waits in :meth:`submit` for the oldest request and starts the moment it finishes,
        instead of after the caller has collected and handed over its results (measured:
        VGG16 INT8 at ``-b 8`` with 2 requests lost several percent to that gap)."""
        return len(self._free) + len(self._running) + 1

    def submit(self, prepared: np.ndarray) -> None:
        """Start one preprocessed batch (the network's float input); returns without waiting
        unless every request is busy."""
        pieces: list = []
        self._batches.append(pieces)
        for start in range(0, len(prepared), self._batch_size):
            if not self._free:
                self._finish_oldest()
            request = self._free.pop()
            pieces.append(None)
            request.start_async([prepared[start : start + self._batch_size]])  # inputs are copied
            self._running.append((request, pieces, len(pieces) - 1))

    def collect(self) -> np.ndarray:
        """The oldest submitted batch's ``(n, dim)`` float32 vectors (waits for them)."""
        pieces = self._batches[0]
        while any(p is None for p in pieces):
            self._finish_oldest()
        self._batches.popleft()
        if not pieces:
            return np.zeros((0, 0), np.float32)
        return np.concatenate([p.reshape(len(p), -1) for p in pieces]).astype(np.float32, copy=False)

    def drain(self) -> None:
        """Wait for every running request (after an error: leave none running)."""
        while self._running:
            request, _, _ = self._running.popleft()
            request.wait()
            self._free.append(request)
        self._batches.clear()

    def _finish_oldest(self) -> None:
        request, pieces, index = self._running.popleft()
        request.wait()
        pieces[index] = request.get_output_tensor(0).data.copy()  # the request's buffer is reused
        self._free.append(request)


def run_requests(requests: list, preprocess, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Embed ``images`` in chunks of ``batch_size``, round-robin over ``requests``; wait for all.

    Returns:
        ``(n, dim)`` float32, in the order of ``images``.
    """
    stream = RequestStream(requests, batch_size)
    stream.submit(preprocess(images))
    return stream.collect().reshape(len(images), -1)


def time_setting(compiled, preprocess, input_size: tuple[int, int], batch_size: int, *, min_seconds: float = 1.0,
                 warm_up: bool = True) -> float:
    """Images per second of ``compiled`` embedding chunks of ``batch_size`` (model only: inputs
    are preprocessed once, outside the timing, as the pipeline does it off the model's path).

    Each round feeds one chunk to every request; one warm-up round (unless ``warm_up`` is
    False), then rounds until ``min_seconds`` have passed (at least one: a chunk of 16
    through fp32 VGG16 takes seconds on 2 cores).
    """
    requests = requests_for(compiled)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size * len(requests), *input_size, 3), dtype=np.uint8)
    prepared = preprocess(images)
    stream = RequestStream(requests, batch_size)
    if warm_up:
        stream.submit(prepared)
        stream.collect()
    rounds, t0 = 0, time.perf_counter()
    while rounds < 1 or time.perf_counter() - t0 < min_seconds:
        stream.submit(prepared)
        stream.collect()
        rounds += 1
    return rounds * len(images) / (time.perf_counter() - t0)
