"""The runner's Ctrl-C: the run stops at its next step, whatever frame the signal lands in."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from similar_images.db.checkpoint import Checkpoint, ChunkResult
from similar_images.runner import run_chunks


def ctrl_c_inside_a_finaliser() -> None:
    """Ctrl-C while code that drops exceptions runs (as a ``__del__`` or a closing generator does)."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the default handler raises KeyboardInterrupt here ...
    except KeyboardInterrupt:
        pass  # ... and it is lost, as Python loses one raised in a finaliser


def mapper(chunks, bar):
    for number, chunk in enumerate(chunks):
        if number == 1:
            ctrl_c_inside_a_finaliser()
        for _ in chunk:
            bar.update(1)  # one step
        yield ChunkResult(np.ones((len(chunk), 2), np.float32), list(chunk), [])


def test_ctrl_c_stops_at_the_next_step_and_keeps_the_finished_chunks(tmp_path):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    checkpoint = Checkpoint(tmp_path / "v.npy")
    checkpoint.start({"test": True})
    chunks = [["a", "b"], ["c", "d"], ["e", "f"]]
    with pytest.raises(KeyboardInterrupt):
        run_chunks(checkpoint, chunks, mapper, show_progress=False)
    assert checkpoint.finished(3) == [0]  # chunk 0 kept; chunk 1 stopped at its first step
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_ctrl_c_every_chunk_is_saved(tmp_path):
    checkpoint = Checkpoint(tmp_path / "v.npy")
    checkpoint.start({"test": True})
    chunks = [["a"], ["b"]]
    assert run_chunks(checkpoint, chunks, lambda c, bar: (ChunkResult(np.ones((1, 2), np.float32), x, [])
                                                          for x in c), show_progress=False) == []
    assert checkpoint.finished(2) == [0, 1]
