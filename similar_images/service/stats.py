"""Latency percentiles since start, per kind of request."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

KEEP = 10_000  # latencies kept per kind (the most recent)


class LatencyStats:
    """Record request latencies; report count and p50/p95/p99 in milliseconds."""

    def __init__(self):
        self.started = time.time()
        self._lock = threading.Lock()
        self._latencies: dict[str, deque] = {}
        self._counts: dict[str, int] = {}
        self.errors = 0

    def record(self, kind: str, seconds: float) -> None:
        with self._lock:
            self._latencies.setdefault(kind, deque(maxlen=KEEP)).append(seconds)
            self._counts[kind] = self._counts.get(kind, 0) + 1

    def record_error(self) -> None:
        with self._lock:
            self.errors += 1

    def report(self) -> dict:
        """``{"uptime_s", "errors", "requests": {kind: {"count", "p50_ms", "p95_ms", "p99_ms"}}}``."""
        with self._lock:
            copies = {kind: np.array(values) for kind, values in self._latencies.items()}
            counts = dict(self._counts)
            errors = self.errors
        requests = {}
        for kind, values in copies.items():
            p50, p95, p99 = (np.percentile(values, [50, 95, 99]) * 1000).tolist()
            requests[kind] = {"count": counts[kind], "p50_ms": round(p50, 2), "p95_ms": round(p95, 2),
                              "p99_ms": round(p99, 2)}
        return {"uptime_s": round(time.time() - self.started, 1), "errors": errors, "requests": requests}
