"""Building a text database: CSV -> checkpointed encoding -> vectors file -> index.

The encoding runs through the image side's runner (:func:`similar_images.runner.run_chunks`)
with the text encoder as the mapper, so it has the same checkpoint (``<vectors>.partial/``,
one ``chunk-NNNNNN.npz`` per finished chunk), the same progress bar and the same commit.
An interrupted build resumes on the next call when the CSV, column, model and chunk size
match; otherwise it starts over.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from similar_images.db import index as ix
from similar_images.db.build import build_index_files
from similar_images.db.checkpoint import Checkpoint, ChunkResult
from similar_images.db.database import default_index_path
from similar_images.db.vectors import load_vectors_manifest, save_vectors
from similar_images.errors import DatabaseError
from similar_images.fileio.files import sha256_file, sha256_lines
from similar_images.models import minilm
from similar_images.runner import run_chunks
from similar_images.text.texts import read_texts

log = logging.getLogger(__name__)

# On 20,000 texts (384-d) HNSW finds the exact top 10 (recall@10 1.000) in 0.4 ms and
# builds in seconds; ivfpq needs a re-ranking pool of 100 x k to reach 0.96, because
# 16-byte codes of 384-d text vectors rank poorly. 36 MB is small at this size.
DEFAULT_TEXT_INDEX_TYPE = "hnsw"


def default_paths(csv_path: str | os.PathLike) -> tuple[Path, Path]:
    """The vectors and index files built from ``csv_path``.

    ``tweets.csv`` gives ``tweets.csv.saved_predictions.npy`` and ``tweets.csv.faiss.index``
    (the image side's naming, :func:`similar_images.db.database.default_index_path`).
    """
    vectors = Path(str(csv_path) + ".saved_predictions.npy")
    return vectors, default_index_path(vectors)


def text_mapper(encoder, timings: dict[str, float]):
    """The text side's mapper for :func:`~similar_images.runner.run_chunks`: the encoder."""
    def mapper(chunks, bar):
        for chunk in chunks:
            started = time.perf_counter()
            vectors = encoder.encode(chunk)  # (len(chunk), dim) float32
            timings["encode_seconds"] += time.perf_counter() - started
            timings["encoded"] += len(chunk)
            bar.update(len(chunk))
            yield ChunkResult(vectors, list(chunk), [])
    return mapper


def encode_checkpointed(vectors_path: Path, texts: list[str], encoder, source: dict[str, Any], *,
                        chunk_size: int, show_progress: bool):
    """Encode ``texts`` through the shared runner: ``(vectors, timings, checkpoint)``."""
    checkpoint = Checkpoint(vectors_path)
    state = {**source, "texts_sha256": sha256_lines(texts), "count": len(texts), "model": encoder.describe(),
             "chunk_size": int(chunk_size)}
    if not (checkpoint.exists() and _same_state(checkpoint, state)):
        checkpoint.start(state)
    chunks = [texts[i : i + chunk_size] for i in range(0, len(texts), chunk_size)]
    timings = {"encode_seconds": 0.0, "encoded": 0}
    done = run_chunks(checkpoint, chunks, text_mapper(encoder, timings), show_progress=show_progress,
                      unit="text", desc="encoding")
    resumed = sum(len(chunks[i]) for i in done)
    if resumed:
        log.warning("resumed: %d of %d texts were already encoded in %s", resumed, len(texts), checkpoint.dir)
    vectors, kept, _, _ = checkpoint.assemble(len(chunks), int(encoder.dim))
    if kept != texts:  # the chunks hold their texts: a mismatch means the folder was meddled with
        raise DatabaseError(f"{checkpoint.dir}: the saved chunks hold other texts; delete it and build again")
    seconds = timings["encode_seconds"]
    return vectors, {
        "encode_seconds": round(seconds, 3),
        "texts_per_s": round(timings["encoded"] / seconds, 1) if seconds > 0 else 0.0,
        "encoded": timings["encoded"],
        "resumed": resumed,
    }, checkpoint


def _same_state(checkpoint: Checkpoint, state: dict[str, Any]) -> bool:
    try:
        saved = checkpoint.load_state()
    except DatabaseError:
        return False
    return {k: v for k, v in saved.items() if k != "format"} == state


def build_text_database(
    csv_path: str | os.PathLike,
    *,
    column: str = "text",
    vectors: str | os.PathLike | None = None,
    index: str | os.PathLike | None = None,
    model: str = minilm.DEFAULT_TEXT_MODEL,
    index_type: str = DEFAULT_TEXT_INDEX_TYPE,
    batch_size: int = 64,
    device: str = "cpu",
    chunk_size: int = 512,
    force: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Encode one column of a CSV file and build its index: a text database.

    An interrupted build resumes: finished chunks of the encoding are kept in
    ``<vectors>.partial/``, and vectors already built from the same CSV, column and
    model are reused when only the index is missing.

    Args:
        csv_path: UTF-8 CSV with a header row.
        column: the column holding the texts.
        vectors: the vectors file to write; default: see :func:`default_paths`.
        index: the index file to write; default: beside the vectors.
        model: a sentence-transformers model (see :class:`~similar_images.models.minilm.TextEncoder`).
        index_type: one of :data:`similar_images.db.index.INDEX_TYPES`.
        batch_size: texts per forward pass.
        device: torch device.
        chunk_size: texts per checkpointed chunk of the encoding.
        force: replace existing vectors and index.
        show_progress: progress bars.

    Returns:
        A summary: ``vectors``, ``index``, ``count``, ``skipped``, ``encode_seconds``,
        ``texts_per_s``, ``resumed``, ``reused_vectors``, ``index_type`` and
        ``index_manifest`` (see :func:`similar_images.db.build.build_index_files`).

    Raises:
        FileExistsError: the database exists (use ``force``).
        DatabaseError: the CSV is missing, unreadable or has no such column.
        ModelError: the model cannot be loaded.
        ValueError: a bad ``index_type``, ``batch_size`` or ``chunk_size``.
    """
    ix.check_index_type(index_type)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    vectors_path = Path(vectors) if vectors is not None else default_paths(csv_path)[0]
    index_path = Path(index) if index is not None else default_index_path(vectors_path)
    if index_path.exists() and not force:
        raise FileExistsError(f"{index_path} already exists; use --force to replace it")
    texts, skipped = read_texts(csv_path, column)
    # What the texts came from: the CSV file's bytes (for images, file_list_sha256 is the names').
    source = {"source": str(csv_path), "source_sha256": sha256_file(csv_path), "column": column}
    encoder = minilm.TextEncoder(model, device=device, batch_size=batch_size)
    reuse = vectors_path.exists() and not force and _reusable(vectors_path, source, encoder)
    timings = {"encode_seconds": 0.0, "texts_per_s": 0.0, "encoded": 0, "resumed": 0}
    if reuse:
        log.warning("%s already holds these texts' vectors: building the index only", vectors_path)
        manifest = load_vectors_manifest(vectors_path)
    else:
        array, timings, checkpoint = encode_checkpointed(vectors_path, texts, encoder, source,
                                                         chunk_size=chunk_size, show_progress=show_progress)
        manifest = save_vectors(vectors_path, array, {  # (n, dim) float32, raw
            "model": encoder.describe(), "name_rule": "text", "names": texts, "image_dir": None, **source,
            "skipped": skipped, "timings": timings,
        })
        checkpoint.remove()
    index_manifest = build_index_files(vectors_path, index_path, index_type=index_type, force=True,
                                       show_progress=show_progress)
    return {
        "vectors": str(vectors_path), "index": str(index_path), "count": manifest["count"],
        "skipped": len(skipped), "skipped_rows": skipped, "reused_vectors": reuse, **timings,
        "index_type": index_manifest["index_type"], "index_manifest": index_manifest,
    }


def _reusable(vectors_path: Path, source: dict[str, Any], encoder) -> bool:
    """Vectors of the same CSV, column and model are reused; any others are in the way."""
    try:
        manifest = load_vectors_manifest(vectors_path)
    except DatabaseError:
        manifest = None
    same = manifest is not None and all(manifest.get(key) == v for key, v in source.items())
    if not (same and manifest["model"] == encoder.describe()):
        raise FileExistsError(f"{vectors_path} already exists; use --force to replace it")
    return True
