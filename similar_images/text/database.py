"""The text database: build it from a CSV, search it by text or by id, add texts.

A text database is an image database whose names are texts. It is made of the same
files, written and checked by the same code (:mod:`similar_images.store`,
:mod:`similar_images.db.index`, :mod:`similar_images.db.database`):

* ``V`` (for ``tweets.csv``: ``tweets.csv.saved_predictions.npy``): ``(n, 384)`` float32
  vectors; ``V.manifest.json`` holds the texts as ``names`` (row ``i`` is text ``i``),
  the text model's description, the source CSV and column, skipped rows and timings;
* ``tweets.csv.faiss.index`` (+ manifest): the Faiss index, searched by cosine with exact
  re-ranking.

Texts are stored cleaned (one line, single spaces) and once: a text already in the
database is not added again, like an image path.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from similar_images.db import index as ix
from similar_images.db.build import build_index_files
from similar_images.db.database import default_index_path
from similar_images.db.files import sha256_file
from similar_images.db.vectors import load_vectors_manifest, save_vectors
from similar_images.errors import DatabaseError
from similar_images.text import encode as textmod

log = logging.getLogger(__name__)


DEFAULT_VECTORS = "tweets.csv.saved_predictions.npy"
DEFAULT_INDEX = "tweets.csv.faiss.index"
# On 20,000 texts (384-d) HNSW finds the exact top 10 (recall@10 1.000) in 0.4 ms and
# builds in seconds; ivfpq needs a re-ranking pool of 100 x k to reach 0.96, because
# 16-byte codes of 384-d text vectors rank poorly. 36 MB is small at this size. See the README.
DEFAULT_TEXT_INDEX_TYPE = "hnsw"


class TextResult(NamedTuple):
    """One search result: the text's id (its row), the text, and its cosine similarity."""

    id: int
    text: str
    score: float


def default_paths(csv_path: str | os.PathLike) -> tuple[Path, Path]:
    """The vectors and index files built from ``csv_path``.

    ``tweets.csv`` gives ``tweets.csv.saved_predictions.npy`` and ``tweets.csv.faiss.index``
    (the image side's naming, :func:`similar_images.database.default_index_path`).
    """
    vectors = Path(str(csv_path) + ".saved_predictions.npy")
    return vectors, default_index_path(vectors)


def build_text_database(
    csv_path: str | os.PathLike,
    *,
    column: str = "text",
    vectors: str | os.PathLike | None = None,
    index: str | os.PathLike | None = None,
    model: str = textmod.DEFAULT_TEXT_MODEL,
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
        model: a sentence-transformers model (see :class:`~similar_images.text.TextEncoder`).
        index_type: one of :data:`similar_images.index.INDEX_TYPES`.
        batch_size: texts per forward pass.
        device: torch device.
        chunk_size: texts per checkpointed chunk of the encoding.
        force: replace existing vectors and index.
        show_progress: progress bars.

    Returns:
        A summary: ``vectors``, ``index``, ``count``, ``skipped``, ``encode_seconds``,
        ``texts_per_s``, ``resumed``, ``reused_vectors``, ``index_type`` and
        ``index_manifest`` (see :func:`similar_images.build.build_index_files`).

    Raises:
        FileExistsError: the database exists (use ``force``).
        DatabaseError: the CSV is missing, unreadable or has no such column.
        ModelError: the model cannot be loaded.
        ValueError: a bad ``index_type`` or ``batch_size``.
    """
    ix.check_index_type(index_type)
    vectors_path = Path(vectors) if vectors is not None else default_paths(csv_path)[0]
    index_path = Path(index) if index is not None else default_index_path(vectors_path)
    if index_path.exists() and not force:
        raise FileExistsError(f"{index_path} already exists; use --force to replace it")
    texts, skipped = textmod.read_texts(csv_path, column)
    source = {"file_list": str(csv_path), "file_list_sha256": sha256_file(csv_path), "column": column}
    encoder = textmod.TextEncoder(model, device=device, batch_size=batch_size)
    reuse = False
    if vectors_path.exists() and not force:
        # Checked before the model loads: only vectors of the same CSV and column can be reused.
        manifest = _manifest_or_none(vectors_path)
        reuse = manifest is not None and all(manifest.get(key) == v for key, v in source.items())
        reuse = reuse and manifest["model"] == encoder.describe()
        if not reuse:
            raise FileExistsError(f"{vectors_path} already exists; use --force to replace it")
    timings = {"encode_seconds": 0.0, "texts_per_s": 0.0, "encoded": 0, "resumed": 0}
    if reuse:
        log.warning("%s already holds these texts' vectors: building the index only", vectors_path)
    else:
        checkpoint = textmod.partial_dir(vectors_path)
        array, timings = textmod.encode_texts(texts, encoder, checkpoint=checkpoint, chunk_size=chunk_size,
                                             show_progress=show_progress)
        manifest = save_vectors(vectors_path, array, {  # (n, dim) float32, raw
            "model": encoder.describe(), "names": texts, "image_dir": None, **source,
            "skipped": skipped, "timings": timings,
        })
        shutil.rmtree(checkpoint, ignore_errors=True)
    index_manifest = build_index_files(vectors_path, index_path, index_type=index_type, force=True,
                                       show_progress=show_progress)
    return {
        "vectors": str(vectors_path), "index": str(index_path), "count": manifest["count"],
        "skipped": len(skipped), "reused_vectors": reuse, **timings,
        "index_type": index_manifest["index_type"], "index_manifest": index_manifest,
    }


def _manifest_or_none(vectors_path: Path) -> dict[str, Any] | None:
    try:
        return load_vectors_manifest(vectors_path)
    except DatabaseError:
        return None


class TextDatabase:
    """An opened text database: search by text or by id, add and remove texts.

    Open one with :meth:`open`; it wraps the image side's
    :class:`~similar_images.search.SimilarImages` (same checks, index and re-ranking).
    """

    def __init__(self, db, encoder: textmod.TextEncoder | None = None):
        model = db.model
        if model.get("kind") != "text":
            raise DatabaseError(
                f"{db.database.vectors_path} holds image vectors (model {model.get('name')!r}), not texts"
            )
        self._db = db
        self._encoder = encoder
        self._checked = False

    @classmethod
    def open(
        cls,
        vectors: str | os.PathLike = DEFAULT_VECTORS,
        index: str | os.PathLike | None = DEFAULT_INDEX,
        *,
        encoder: textmod.TextEncoder | None = None,
    ) -> TextDatabase:
        """Open and verify a text database.

        Args:
            vectors: the vectors file (with its manifest).
            index: the index file (with its manifest); None for exact search.
            encoder: the text model for queries; default: the manifest's model,
                loaded on the first text query.

        Raises:
            DatabaseError: missing files, parts that do not belong together, or an
                image database.
        """
        from similar_images.search import SimilarImages

        return cls(SimilarImages.open(vectors=vectors, index=index), encoder)

    def __len__(self) -> int:
        return len(self._db)

    @property
    def texts(self) -> list[str]:
        """Row-aligned texts: ``texts[id]``."""
        return self._db.names

    def text(self, text_id: int) -> str:
        """The text with id ``text_id``."""
        if isinstance(text_id, (bool, np.bool_)) or not isinstance(text_id, (int, np.integer)):
            raise ValueError(f"a text id is an int, got {text_id!r}")
        if not 0 <= text_id < len(self):
            raise ValueError(f"text id {text_id} out of range: the database holds ids 0..{len(self) - 1}")
        return self.texts[int(text_id)]

    def vector(self, text_id: int) -> np.ndarray:
        """The stored raw vector of text ``text_id``: ``(dim,)`` float32."""
        self.text(text_id)  # checks the id
        return self._db.vector(int(text_id))

    @property
    def model(self) -> dict[str, Any]:
        """The text model recorded in the manifest."""
        return self._db.model

    @property
    def encoder(self) -> textmod.TextEncoder:
        """The query model: the database's own, checked against the manifest."""
        if self._encoder is None:
            self._encoder = textmod.TextEncoder(self.model["name"])
        if not self._checked:
            from similar_images.features import check_extractor

            check_extractor(self._encoder, self.model)
            self._checked = True
        return self._encoder

    def search(self, query, k: int = 8):
        """Find the ``k`` texts most similar to ``query``.

        Args:
            query: a text, the ``int`` id of a text in the database (its stored vector,
                no model run), or a list of those (encoded in one model call).
            k: results per query.

        Returns:
            ``list[TextResult]`` best first, or one such list per query for a list.

        Raises:
            ValueError: an empty text, a bad id or type, or ``k < 1``.
        """
        many = isinstance(query, (list, tuple))
        queries = list(query) if many else [query]
        for q in queries:
            if isinstance(q, (bool, np.bool_)) or not isinstance(q, (str, int, np.integer)):
                raise ValueError(f"a text query is a str or an int id, got {q!r}")
            if isinstance(q, str) and not textmod.clean_text(q):
                raise ValueError("the query text is empty")
        strings = [i for i, q in enumerate(queries) if isinstance(q, str)]
        if strings:
            encoded = self.encoder.encode([queries[i] for i in strings])  # (s, dim)
            for row, i in enumerate(strings):
                queries[i] = encoded[row]
        hits = self._db.search(queries, k=k) if queries else []
        results = [[TextResult(h.id, h.path, h.score) for h in row] for row in hits]
        return results if many else results[0]

    def add(self, texts: Sequence[str], *, show_progress: bool = False):
        """Add texts, atomically (the image side's add: no retraining).

        Texts are cleaned; empty ones and texts already in the database are not added.

        Returns:
            :class:`similar_images.update.AddResult` (``added``, ``already_present``).
        """
        from similar_images.db.changes import AddResult, add_rows

        cleaned = [textmod.clean_text(t) for t in texts]
        present = set(self.texts)
        new = list(dict.fromkeys(t for t in cleaned if t and t not in present))
        already = [t for t in cleaned if t in present]
        if not new:
            return AddResult([], already)
        array, _ = textmod.encode_texts(new, self.encoder, show_progress=show_progress)  # (m, dim)
        db = self._db.database
        result = add_rows(db.vectors_path, db.index_path, array, new)
        self._db = type(self._db).open(db.vectors_path, db.index_path)
        return AddResult(result.added, already + result.already_present)

    def remove(self, texts: Sequence[str]) -> list[str]:
        """Remove texts (as stored, or as typed: they are cleaned), atomically.

        Returns:
            The texts removed. Ids of later texts shift down.

        Raises:
            ValueError: a text is not in the database; nothing is removed then.
        """
        from similar_images.db.changes import name_key, remove_rows

        wanted = [textmod.clean_text(t) for t in texts]
        # The image side matches names as paths ("a//b" is "a/b"): only exact texts may go.
        stored = set(self.texts)
        missing = [t for t in wanted if t not in stored]
        if missing:
            raise ValueError(f"not in the database: {missing[0]!r}; nothing was removed")
        keys, chosen = {name_key(t, None) for t in wanted}, set(wanted)
        taken = [t for t in self.texts if t not in chosen and name_key(t, None) in keys]
        if taken:
            raise ValueError(f"cannot remove these texts alone: {taken[0]!r} would go too "
                             "(they match as paths); nothing was removed")
        db = self._db.database
        removed = remove_rows(db.vectors_path, db.index_path, wanted)
        self._db = type(self._db).open(db.vectors_path, db.index_path)
        return removed

