"""Turn a collection of images into feature vectors.

* :func:`extract_vectors`: a list of images to vectors in memory (for small sets, a
  query, the ``add`` command).
* :func:`run_extraction`: the checkpointed job behind ``similar-images extract``: a
  file list and an image folder to a vectors file with its manifest, resumable after
  Ctrl-C or kill -9 (see :mod:`similar_images.db.checkpoint`).

Bad files are skipped with their reason recorded; they never stop a run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from similar_images.jobs import commit_job, finished_run, open_job
from similar_images.pipeline import Timer, default_workers, embed_chunks, progress_bar
from similar_images.runner import image_mapper, run_chunks

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
CHUNK_BATCHES = 16  # batches per checkpoint chunk


def extract_vectors(
    paths: Sequence[str],
    image_root: str | os.PathLike | None,
    extractor,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    show_progress: bool = True,
) -> tuple[np.ndarray, list[str], list[dict[str, str]]]:
    """Embed images in memory.

    Args:
        paths: names relative to ``image_root`` (or absolute paths, or URLs).
        image_root: folder the names are relative to, or None.
        extractor: a :class:`~similar_images.features.FeatureExtractor`.
        batch_size: images per model call.
        workers: decoding threads (default: :func:`~similar_images.pipeline.default_workers`).
        show_progress: show a tqdm progress bar.

    Returns:
        ``(vectors, names, skipped)``: vectors ``(len(names), extractor.dim)`` float32,
        row ``i`` belongs to ``names[i]``; ``skipped`` holds ``{"path", "reason",
        "message"}`` for each image that could not be loaded.
    """
    paths = list(paths)
    with progress_bar(total=len(paths), show=show_progress) as bar:
        (result,) = embed_chunks([paths], image_root=image_root, extractor=extractor,
                                 batch_size=batch_size, workers=workers or default_workers(),
                                 progress=bar)
    return result.vectors, result.names, result.skipped


def run_extraction(
    file_list: str | os.PathLike,
    image_dir: str | os.PathLike,
    output: str | os.PathLike,
    extractor,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    resume: bool = False,
    force: bool = False,
    show_progress: bool = True,
    chunk_batches: int = CHUNK_BATCHES,
    allow_urls: bool = False,
) -> dict[str, Any]:
    """Extract the vectors of every image in ``file_list`` into ``output`` (+ manifest).

    Finished chunks (``chunk_batches`` batches of names each) are saved in
    ``<output>.partial/`` as they complete. With ``resume``, a run continues from
    them, refusing if they came from another file list or model; the result equals an
    uninterrupted run's. The vectors and manifest are written atomically, then the
    partial folder is removed.

    Args:
        file_list: text file, one image path a line, relative to ``image_dir``.
        image_dir: folder holding the images.
        output: the ``.npy`` vectors file to write.
        extractor: a :class:`~similar_images.features.FeatureExtractor`.
        batch_size: images per model call (a resumed run keeps the saved one).
        workers: decoding threads (default: :func:`~similar_images.pipeline.default_workers`).
        resume: continue an interrupted run (starts fresh if there is none).
        force: overwrite an existing output; without ``resume``, discard a partial run.
        show_progress: show a tqdm progress bar.
        chunk_batches: batches per checkpoint chunk.
        allow_urls: fetch ``http(s)://`` lines of the file list (default: skip them, see ``db/inputs.py``).

    Returns:
        The manifest written beside ``output``.

    Raises:
        SimilarImagesError: bad arguments (see :func:`validate_job`) or a partial run
            that does not match.
    """
    if batch_size < 1 or chunk_batches < 1 or (workers is not None and workers < 1):
        raise ValueError(f"batch_size, chunk_batches and workers must be at least 1, "
                         f"got {batch_size}, {chunk_batches} and {workers}")
    if resume and not force and (finished := finished_run(file_list, output)) is not None:
        logger.info("%s is already complete; nothing to resume", output)
        return finished
    job = open_job(file_list, image_dir, output, extractor, batch_size=batch_size, chunk_batches=chunk_batches,
                   resume=resume, force=force, allow_urls=allow_urls)
    timer, started = Timer(), time.perf_counter()
    mapper = image_mapper(extractor, image_dir, batch_size=job.state["batch_size"],
                          workers=workers or default_workers(), timer=timer)
    done = run_chunks(job.checkpoint, job.chunks, mapper, show_progress=show_progress)
    if done:
        logger.info("resumed: %d of %d chunks were already done", len(done), len(job.chunks))
    return commit_job(job, extractor, timer, time.perf_counter() - started, resumed=len(done))


