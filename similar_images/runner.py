"""The one runner of checkpointed work: chunks of inputs -> a mapper -> saved chunks.

Images and texts share it (clip-retrieval's runner/mapper split): the image side's
mapper decodes and embeds (:func:`image_mapper`), the text side's encodes
(:func:`similar_images.text.build.text_mapper`). The checkpoint
(:class:`similar_images.db.checkpoint.Checkpoint`) makes every finished chunk durable, so
a run killed at any moment resumes from the chunks it finished.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time

from similar_images.db.checkpoint import Checkpoint
from similar_images.pipeline import Timer, embed_chunks, progress_bar


def run_chunks(checkpoint: Checkpoint, chunks: list[list[str]], mapper, *, show_progress: bool,
               unit: str = "img", desc: str = "extract") -> list[int]:
    """The one runner of checkpointed work, for images and texts alike.

    Args:
        checkpoint: where finished chunks are saved (already started or resumed).
        chunks: the inputs (names or texts), cut into fixed chunks.
        mapper: ``mapper(pending_chunks, bar) -> iterator of ChunkResult`` in order, advancing
            ``bar`` per input: the image decoder + model, or the text encoder.
        show_progress: show the bar (rate and ETA; it starts at the resumed count).

    Returns:
        The indices of the chunks that were already done (resumed).
    """
    done = checkpoint.finished(len(chunks))
    pending = [i for i in range(len(chunks)) if i not in set(done)]
    initial = sum(len(chunks[i]) for i in done)
    with progress_bar(total=sum(map(len, chunks)), initial=initial, show=show_progress, desc=desc, unit=unit) as bar, \
            ctrl_c_at_steps() as check:
        bar.update = _checked(bar.update, check)  # the mapper advances the bar once per batch
        mark = time.perf_counter()
        for index, result in zip(pending, mapper([chunks[i] for i in pending], bar)):
            now = time.perf_counter()
            checkpoint.save_chunk(index, result, elapsed_s=now - mark)
            mark = now
            check()
    return done


@contextlib.contextmanager
def ctrl_c_at_steps():
    """Ctrl-C stops the run at its next step (a batch), where ``KeyboardInterrupt`` unwinds the
    pipeline's threads and keeps the finished chunks; a second Ctrl-C stops at once.

    Why: Python raises ``KeyboardInterrupt`` in whatever frame runs when the signal lands;
    one raised inside a finaliser (a collected generator, a ``__del__``) is printed and
    dropped, and the run went on to the end. Yields ``check()``, which raises it at a step.
    """
    pressed = threading.Event()
    ours = threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def on_ctrl_c(signum, frame):
        pressed.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the second one stops at once

    def check() -> None:
        if pressed.is_set():
            raise KeyboardInterrupt

    if ours:
        signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield check
    finally:
        if ours:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _checked(update, check):
    def checked_update(n=1):
        check()
        return update(n)
    return checked_update


def image_mapper(extractor, image_dir, *, batch_size: int, workers: int, timer: Timer):
    """The image side's mapper for :func:`run_chunks`: decode threads feeding the model."""
    def mapper(chunks, bar):
        return embed_chunks(chunks, image_root=image_dir, extractor=extractor, batch_size=batch_size,
                            workers=workers, progress=bar, timer=timer)
    return mapper
