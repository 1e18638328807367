"""The runner's Ctrl-C: the run stops at its next step, whatever frame the signal lands in.

The signal is sent in a fresh process: in the test process, libraries loaded by other tests
(Ray, TensorFlow, OpenVINO) have threads and signal handlers of their own.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
from _waiting import patience

from similar_images.db.checkpoint import Checkpoint, ChunkResult
from similar_images.runner import run_chunks

RUN = textwrap.dedent('''
    import os, signal, sys, time
    import numpy as np
    from similar_images.db.checkpoint import Checkpoint, ChunkResult
    from similar_images.runner import run_chunks

    signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal (a background job ignores it)

    def ctrl_c_inside_a_finaliser():
        """Ctrl-C while code that drops exceptions runs (as a __del__ or a closing generator does)."""
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

    checkpoint = Checkpoint(sys.argv[1])
    checkpoint.start({"test": True})
    try:
        run_chunks(checkpoint, [["a", "b"], ["c", "d"], ["e", "f"]], mapper, show_progress=False)
        print("finished")
    except KeyboardInterrupt:
        print("interrupted", checkpoint.finished(3), signal.getsignal(signal.SIGINT) is signal.default_int_handler)
''')


def test_ctrl_c_stops_at_the_next_step_and_keeps_the_finished_chunks(tmp_path):
    done = subprocess.run([sys.executable, "-c", RUN, str(tmp_path / "v.npy")], capture_output=True, text=True,
                          timeout=patience(300))
    assert done.returncode == 0, done.stderr
    # chunk 0 kept; chunk 1 stopped at its first step; the default handler is back
    assert done.stdout.split("\n")[0] == "interrupted [0] True"


def test_without_ctrl_c_every_chunk_is_saved(tmp_path):
    checkpoint = Checkpoint(tmp_path / "v.npy")
    checkpoint.start({"test": True})
    chunks = [["a"], ["b"]]
    assert run_chunks(checkpoint, chunks, lambda c, bar: (ChunkResult(np.ones((1, 2), np.float32), x, [])
                                                          for x in c), show_progress=False) == []
    assert checkpoint.finished(2) == [0, 1]
