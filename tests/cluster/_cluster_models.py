"""Feature models for the cluster tests, importable by Ray workers (tests/cluster is on their path)."""

from __future__ import annotations

import os
import signal

from _extract_data import PixelExtractor


class KilledOncePixelExtractor(PixelExtractor):
    """Pixels; the first actor to embed is killed by SIGKILL mid-run (``marker`` records it)."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    def embed(self, batch):
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return super().embed(batch)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 of this worker process
        raise AssertionError("unreachable")


class FailingPixelExtractor(PixelExtractor):
    """Pixels for the first ``good_calls`` batches of each actor, then an error (the job stops)."""

    def __init__(self, good_calls: int):
        super().__init__()
        self.good_calls = good_calls

    def embed(self, batch):
        if self.calls >= self.good_calls:
            raise RuntimeError("model failed (test)")
        return super().embed(batch)
