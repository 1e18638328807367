"""Running a compiled OpenVINO model: configuration, requests in flight, timing."""

from __future__ import annotations

import time
from collections import deque

import numpy as np

# f32: on CPUs with AVX-512 BF16 OpenVINO otherwise runs "fp32" models in bfloat16.
COMPILE_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


def compile_model(model, **config: str):
    """Compile an ``openvino.Model`` for the CPU with :data:`COMPILE_CONFIG` (``config`` overrides)."""
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {**COMPILE_CONFIG, **config})


def requests_for(compiled) -> list:
    """The compiled model's optimal number of inference requests (1 with LATENCY)."""
    count = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    return [compiled.create_infer_request() for _ in range(max(1, count))]


def run_requests(requests: list, preprocess, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Embed ``images`` in chunks of ``batch_size``, round-robin over ``requests``.

    Preprocessing the next chunk overlaps the inference of the previous ones; with the
    THROUGHPUT hint several chunks run at once. No Python callbacks run on OpenVINO's
    threads (``AsyncInferQueue`` callbacks need the GIL from a foreign thread, a source
    of deadlocks), the caller waits for each request itself.

    Returns:
        ``(n, dim)`` float32, in the order of ``images``.
    """
    starts = range(0, len(images), batch_size)
    parts: list[np.ndarray | None] = [None] * len(starts)
    pending: deque = deque()  # (request, chunk index), oldest first
    free = list(requests)

    def finish_oldest() -> None:
        request, index = pending.popleft()
        request.wait()
        parts[index] = request.get_output_tensor(0).data.copy()  # the request's buffer is reused
        free.append(request)

    for index, start in enumerate(starts):
        if not free:
            finish_oldest()
        request = free.pop()
        request.start_async([preprocess(images[start : start + batch_size])])  # inputs are copied
        pending.append((request, index))
    while pending:
        finish_oldest()
    return np.concatenate(parts).reshape(len(images), -1).astype(np.float32, copy=False)


def time_setting(compiled, preprocess, input_size: tuple[int, int], batch_size: int, *, min_seconds: float = 1.0) -> float:
    """Images per second of ``compiled`` embedding chunks of ``batch_size``, preprocessing included.

    Each round feeds one chunk to every request; one warm-up round, then
    rounds until ``min_seconds`` have passed (at least one: a chunk of 16 through fp32
    VGG16 takes seconds on 2 cores).
    """
    requests = requests_for(compiled)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size * len(requests), *input_size, 3), dtype=np.uint8)
    run_requests(requests, preprocess, images, batch_size)
    rounds, t0 = 0, time.perf_counter()
    while rounds < 1 or time.perf_counter() - t0 < min_seconds:
        run_requests(requests, preprocess, images, batch_size)
        rounds += 1
    return rounds * len(images) / (time.perf_counter() - t0)
