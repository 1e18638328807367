"""Extraction stages: decode ahead in a thread pool (reader), prepare batches on a thread,
embed with the model's requests in flight across batches (mapper).

The runner that wires them to files on disk is :mod:`similar_images.extract`. Order is
deterministic whatever the number of threads. Batches never cross a chunk boundary, so a
resumed run computes exactly the same batches as an uninterrupted one.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from similar_images.db.checkpoint import ChunkResult
from similar_images.errors import ImageError
from similar_images.images import Size, fit_of, load_for_model

logger = logging.getLogger(__name__)


def default_workers() -> int:
    """Decoding threads: one per usable core (2 to 32), so decoding never starves the model (Pillow's
    decode and resize release the GIL; a 640x480 JPEG costs about 1.5 ms a core); ``input wait`` checks it."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(2, min(32, cores))


@dataclass
class Timer:
    """Where an extraction's time went, in seconds: ``decode_s`` and ``decode_cpu_s`` (wall and
    CPU, summed over the decode threads: wall > CPU when they wait for a core); ``decode_wait_s``
    and ``preprocess_s`` (stacking + ``prepare``) on the preparation thread; ``input_wait_s``
    (short of input), ``model_s`` (waiting for results), ``write_s`` (saving chunks) on the model thread."""

    decode_s: float = 0.0
    decode_cpu_s: float = 0.0
    decode_wait_s: float = 0.0
    preprocess_s: float = 0.0
    input_wait_s: float = 0.0
    model_s: float = 0.0
    write_s: float = 0.0
    images: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_decode(self, seconds: float, cpu_seconds: float) -> None:
        with self.lock:  # from every decode thread
            self.decode_s += seconds
            self.decode_cpu_s += cpu_seconds


def resolve(name: str, image_root: str | os.PathLike | None) -> str:
    """Where to read ``name`` from: URLs and absolute paths as they are, else under ``image_root``."""
    if image_root is None or "://" in name or os.path.isabs(name):
        return name
    return str(Path(image_root) / name)


def decode_one(name: str, image_root, size: Size) -> np.ndarray | ImageError:
    """Load one image for the model; a failure is returned, never raised."""
    try:
        return load_for_model(resolve(name, image_root), size)
    except ImageError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop a 40,000-image run
        logger.debug("unexpected error decoding %s", name, exc_info=True)
        return ImageError(f"{name}: cannot decode ({type(exc).__name__}: {exc})", "corrupt")


def ordered_map(fn: Callable, items: Iterable, *, workers: int, depth: int) -> Iterator:
    """``map(fn, items)`` on a thread pool, at most ``depth`` items ahead, in input order."""
    from concurrent.futures import ThreadPoolExecutor

    items = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending = collections.deque(pool.submit(fn, item) for item in itertools.islice(items, depth))
        try:
            while pending:
                result = pending.popleft().result()
                for item in itertools.islice(items, 1):
                    pending.append(pool.submit(fn, item))
                yield result
        finally:  # stopped early (Ctrl-C, error): drop what has not started
            for future in pending:
                future.cancel()


def embed_chunks(
    chunks: Sequence[Sequence[str]],
    *,
    image_root: str | os.PathLike | None,
    extractor,
    batch_size: int,
    workers: int,
    progress=None,
    timer: Timer | None = None,
) -> Iterator[ChunkResult]:
    """Embed each chunk of names (relative to ``image_root``, or URLs, or absolute paths) in
    batches of ``batch_size`` (the last of a chunk may be smaller), decoded by ``workers``
    threads running ahead across chunks; the model's requests stay in flight across batches
    and chunks (:func:`embed_stream`). ``progress``: a tqdm bar advanced per name, or None;
    ``timer``: a :class:`Timer` to add to, or None. Yields one :class:`ChunkResult` per chunk.
    """
    if batch_size < 1 or workers < 1:
        raise ValueError(f"batch_size and workers must be at least 1, got {batch_size} and {workers}")
    timer = timer if timer is not None else Timer()
    size = fit_of(extractor)  # a plain resize, or a CLIP model's resize and crop

    def decode(name: str):
        start, cpu = time.perf_counter(), time.thread_time()
        result = decode_one(name, image_root, size)
        timer.add_decode(time.perf_counter() - start, time.thread_time() - cpu)
        return name, result

    decoded = ordered_map(decode, itertools.chain.from_iterable(chunks), workers=workers,
                          depth=2 * batch_size + 2 * workers)
    try:
        yield from embed_stream((itertools.islice(decoded, len(chunk)) for chunk in chunks), extractor,
                                batch_size=batch_size, progress=progress, timer=timer)
    finally:
        decoded.close()


def embed_decoded(decoded: Iterator, extractor, *, batch_size: int, progress=None, timer: Timer | None = None) -> ChunkResult:
    """Embed one chunk of ``(name, image or ImageError)`` pairs (:func:`embed_stream`): the mapper
    stage, shared by the local engine and the Ray actors (the same batches, the same vectors)."""
    (result,) = embed_stream([decoded], extractor, batch_size=batch_size, progress=progress, timer=timer)
    return result


def embed_stream(chunks: Iterable[Iterator], extractor, *, batch_size: int, progress=None,
                 timer: Timer | None = None) -> Iterator[ChunkResult]:
    """Embed chunks of ``(name, image or ImageError)`` pairs; one :class:`ChunkResult` per chunk.

    Three stages run at once: a preparation thread groups each chunk's good images into
    batches (never across a chunk's end; ``batch_size`` rounded up to whole requests for a
    streaming extractor, :func:`request_multiple`) and checks them (``extractor.prepare``);
    the calling thread keeps ``stream().depth`` batches submitted (OpenVINO's requests in
    flight) before it collects the oldest, or calls ``embed`` on one batch while the next
    is prepared. An error in any stage stops the others and is raised here.
    """
    timer = timer if timer is not None else Timer()
    streaming = hasattr(extractor, "stream")
    model = extractor.stream() if streaming else _EmbedStream(extractor)
    prepare = extractor.prepare if streaming else None
    depth = max(2, getattr(model, "depth", 2))  # batches in flight
    size = request_multiple(batch_size, getattr(extractor, "batch_size", None) if streaming else None)
    dim = int(extractor.dim)
    pending: collections.deque = collections.deque()  # per submitted batch its names; _ChunkEnd per chunk
    parts: list[np.ndarray] = []
    kept: list[str] = []

    def collect_one() -> None:
        names = pending.popleft()
        start = time.perf_counter()
        parts.append(model.collect().reshape(len(names), dim))  # (b, dim) float32
        timer.model_s += time.perf_counter() - start
        timer.images += len(names)
        kept.extend(names)
        if progress is not None:
            progress.update(len(names))

    def finished() -> Iterator[ChunkResult]:
        while pending and isinstance(pending[0], _ChunkEnd):
            end = pending.popleft()
            if progress is not None and end.skipped:
                progress.update(len(end.skipped))
            vectors = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
            start = time.perf_counter()
            yield ChunkResult(np.asarray(vectors, dtype=np.float32), list(kept), end.skipped)
            timer.write_s += time.perf_counter() - start  # the consumer saving the chunk
            parts.clear()
            kept.clear()

    prepared = _Prefetch(_prepared_batches(chunks, prepare, size, timer), depth=2)
    try:
        for item in prepared.timed(timer):
            if isinstance(item, _ChunkEnd):
                pending.append(item)
            else:
                names, batch = item
                if model.pending >= depth:  # batch k+1 is in flight before batch k is collected
                    collect_one()
                start = time.perf_counter()
                model.submit(batch)  # waits when every request is busy
                timer.model_s += time.perf_counter() - start
                pending.append(names)
            yield from finished()
        while pending:
            if not isinstance(pending[0], _ChunkEnd):
                collect_one()
            yield from finished()
    finally:
        prepared.close()
        if hasattr(model, "drain"):
            model.drain()  # leave no request running (after an error or an early stop)


def request_multiple(batch_size: int, request_size: int | None) -> int:
    """Images per prepared batch: ``batch_size`` rounded up to whole requests of the model's
    tuned ``request_size``, so a ``-b`` below it still runs full requests (batches still
    never cross a chunk's end, so a resumed run computes the same)."""
    if not request_size or request_size <= 1:
        return batch_size
    return -(-batch_size // request_size) * request_size


@dataclass
class _ChunkEnd:  # a chunk's last batch went before it
    skipped: list[dict[str, str]]


def _prepared_batches(chunks: Iterable[Iterator], prepare, batch_size: int, timer: Timer) -> Iterator:
    """On the preparation thread: ``(names, prepared batch)`` per batch, a :class:`_ChunkEnd` per chunk."""
    for decoded in chunks:
        skipped, batch, names = [], [], []
        while True:
            start = time.perf_counter()
            item = next(decoded, None)
            timer.decode_wait_s += time.perf_counter() - start
            if item is not None:
                name, result = item
                if isinstance(result, ImageError):
                    logger.warning("skipped %s", result)
                    skipped.append({"path": name, "reason": result.reason, "message": str(result)})
                    continue
                batch.append(result)
                names.append(name)
            if batch and (len(batch) == batch_size or item is None):
                start = time.perf_counter()
                stacked = np.stack(batch)  # (b, h, w, 3) uint8
                ready = prepare(stacked) if prepare is not None else stacked
                timer.preprocess_s += time.perf_counter() - start
                yield names, ready
                batch, names = [], []
            if item is None:
                break
        yield _ChunkEnd(skipped)


class _EmbedStream:
    """``submit``/``collect`` over a plain ``embed`` (TensorFlow, torch): the model runs on
    the calling thread, while the preparation thread prepares the next batches."""

    def __init__(self, extractor):
        self._extractor = extractor
        self._batches: collections.deque = collections.deque()

    pending = property(lambda self: len(self._batches))

    def submit(self, batch: np.ndarray) -> None:
        self._batches.append(batch)

    def collect(self) -> np.ndarray:
        return np.asarray(self._extractor.embed(self._batches.popleft()), dtype=np.float32)


class _Prefetch:
    """Iterate ``items`` on a thread, at most ``depth`` ahead; its error is raised in the consumer."""

    def __init__(self, items: Iterator, *, depth: int):
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,), name="prepare", daemon=True)
        self._thread.start()

    def _run(self, items: Iterator) -> None:
        try:
            for item in items:
                if not self._put(("item", item)):
                    return
            self._put(("done", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(("error", exc))
        finally:
            items.close()

    def _put(self, entry) -> bool:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(entry, timeout=0.05)
                return True
        return False

    def timed(self, timer: Timer) -> Iterator:
        """The items in order; the time spent waiting for each goes to ``timer.input_wait_s``."""
        while True:
            start = time.perf_counter()
            kind, value = self._queue.get()
            timer.input_wait_s += time.perf_counter() - start
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value

    def close(self) -> None:  # stop the thread and wait for it (it finishes the item it is on)
        self._stop.set()
        self._thread.join()


def progress_bar(*, total: int, initial: int = 0, show: bool = True, desc: str = "extract", unit: str = "img"):
    """A tqdm.auto bar with rate and ETA (works in terminals and notebooks)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not show, desc=desc, unit=unit,
                dynamic_ncols=True, smoothing=0.1)
