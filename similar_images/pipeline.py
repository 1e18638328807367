"""Extraction stages: decode ahead in a thread pool (reader), embed in batches (mapper).

The runner that wires them to files on disk is :mod:`similar_images.extract`.

Order is deterministic: results come back in the order of the input names whatever
the number of threads. Batches never cross a chunk boundary, so a chunk's vectors do
not depend on what came before it (a resumed run computes exactly the same batches as
an uninterrupted one).
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from similar_images.db.checkpoint import ChunkResult
from similar_images.errors import ImageError
from similar_images.images import load_for_model

logger = logging.getLogger(__name__)


def default_workers() -> int:
    """Decoding threads: one per core, at most 4 (decoding is cheap next to the model)."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class Timer:
    """Seconds spent waiting for decoded images and running the model."""

    decode_wait_s: float = 0.0
    model_s: float = 0.0
    images: int = 0


def resolve(name: str, image_root: str | os.PathLike | None) -> str:
    """Where to read ``name`` from: URLs and absolute paths as they are, else under ``image_root``."""
    if image_root is None or "://" in name or os.path.isabs(name):
        return name
    return str(Path(image_root) / name)


def decode_one(name: str, image_root, size: tuple[int, int]) -> np.ndarray | ImageError:
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
    """Embed each chunk of names; decoding runs ahead continuously across chunks.

    Args:
        chunks: lists of names (relative to ``image_root``, or URLs, or absolute paths).
        image_root: folder the names are relative to, or None.
        extractor: a :class:`~similar_images.features.FeatureExtractor`.
        batch_size: images per model call (the last batch of a chunk may be smaller).
        workers: decoding threads.
        progress: a tqdm bar to advance by one per name, or None.
        timer: accumulates decode-wait and model time, or None.

    Yields:
        One :class:`ChunkResult` per chunk, in order.
    """
    if batch_size < 1 or workers < 1:
        raise ValueError(f"batch_size and workers must be at least 1, got {batch_size} and {workers}")
    timer = timer if timer is not None else Timer()
    size = tuple(extractor.input_size)
    names = itertools.chain.from_iterable(chunks)
    decoded = ordered_map(
        lambda name: (name, decode_one(name, image_root, size)),
        names,
        workers=workers,
        depth=2 * batch_size + 2 * workers,
    )
    try:
        for chunk in chunks:
            yield embed_decoded(itertools.islice(decoded, len(chunk)), extractor, batch_size=batch_size,
                                progress=progress, timer=timer)
    finally:
        decoded.close()


def embed_decoded(decoded: Iterator, extractor, *, batch_size: int, progress=None, timer: Timer | None = None) -> ChunkResult:
    """Embed one chunk of ``(name, image or ImageError)`` pairs, in batches of ``batch_size`` good images.

    The mapper stage, shared by the local engine and the Ray actors (so both make the
    same batches, hence the same vectors).
    """
    timer = timer if timer is not None else Timer()
    parts, names, skipped, batch, batch_names = [], [], [], [], []

    def flush() -> None:
        start = time.perf_counter()
        parts.append(extractor.embed(np.stack(batch)))  # (b, dim) float32
        timer.model_s += time.perf_counter() - start
        timer.images += len(batch)
        names.extend(batch_names)
        if progress is not None:
            progress.update(len(batch))
        batch.clear()
        batch_names.clear()

    while True:
        start = time.perf_counter()
        item = next(decoded, None)
        timer.decode_wait_s += time.perf_counter() - start
        if item is None:
            break
        name, result = item
        if isinstance(result, ImageError):
            logger.warning("skipped %s", result)
            skipped.append({"path": name, "reason": result.reason, "message": str(result)})
            if progress is not None:
                progress.update(1)
            continue
        batch.append(result)
        batch_names.append(name)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    dim = int(extractor.dim)
    vectors = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
    return ChunkResult(np.asarray(vectors, dtype=np.float32), names, skipped)


def progress_bar(*, total: int, initial: int = 0, show: bool = True, desc: str = "extract", unit: str = "img"):
    """A tqdm.auto bar with rate and ETA (works in terminals and notebooks)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not show, desc=desc, unit=unit,
                dynamic_ncols=True, smoothing=0.1)
