"""The text database: build it from a CSV, search it by text or by id, add texts.

A text database is the image database with another name rule: its names are exact texts
(``manifest["name_rule"] == "text"``), not paths. It is made of the same files, written and
checked by the same code (:mod:`similar_images.db`), built by the same checkpointed runner
(:func:`similar_images.runner.run_chunks`, see :mod:`similar_images.text.build`):

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
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from similar_images.db.changes import AddResult, add_rows, find_present, remove_rows
from similar_images.errors import DatabaseError
from similar_images.models import minilm

log = logging.getLogger(__name__)


DEFAULT_VECTORS = "tweets.csv.saved_predictions.npy"
DEFAULT_INDEX = "tweets.csv.faiss.index"
class TextResult(NamedTuple):
    """One search result: the text's id (its row), the text, and its cosine similarity."""

    id: int
    text: str
    score: float


class TextDatabase:
    """An opened text database: search by text or by id, add and remove texts.

    Open one with :meth:`open`; it wraps the image side's
    :class:`~similar_images.search.SimilarImages` (same checks, index and re-ranking).
    """

    def __init__(self, db, encoder: minilm.TextEncoder | None = None):
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
        encoder: minilm.TextEncoder | None = None,
        trust: bool = False,
    ) -> TextDatabase:
        """Open and verify a text database.

        Args:
            vectors: the vectors file (with its manifest).
            index: the index file (with its manifest); None for exact search.
            encoder: the text model for queries; default: the manifest's model,
                loaded on the first text query.
            trust: skip the content checksums on open (see ``SimilarImages.open``).

        Raises:
            DatabaseError: missing files, parts that do not belong together, or an
                image database.
        """
        from similar_images.search import SimilarImages

        return cls(SimilarImages.open(vectors=vectors, index=index, trust=trust), encoder)

    def __len__(self) -> int:
        return len(self._db)

    @property
    def texts(self) -> Sequence[str]:
        """Texts by id: ``texts[id]``."""
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
    def database(self):
        """The opened files (:class:`similar_images.db.database.Database`): vectors, index, manifests."""
        return self._db.database

    @property
    def model(self) -> dict[str, Any]:
        """The text model recorded in the manifest."""
        return self._db.model

    @property
    def encoder(self) -> minilm.TextEncoder:
        """The query model: the database's own, checked against the manifest."""
        if self._encoder is None:
            self._encoder = minilm.TextEncoder(self.model["name"])
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
            if isinstance(q, str) and not minilm.clean_text(q):
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
            :class:`similar_images.db.changes.AddResult` (``added``, ``already_present``).
        """
        cleaned = [minilm.clean_text(t) for t in texts]
        present = set(find_present(self._db.database, cleaned))
        new = list(dict.fromkeys(t for t in cleaned if t and t not in present))
        already = [t for t in cleaned if t in present]
        if not new:
            return AddResult([], already)
        array = self.encoder.encode(new)  # (m, dim)
        db = self._db.database
        result = add_rows(db.vectors_path, db.index_path, array, new)
        self._db = type(self._db).open(db.vectors_path, db.index_path)
        return AddResult(result.added, already + result.already_present)

    def remove(self, texts: Sequence[str]) -> list[str]:
        """Remove texts (as stored, or as typed: they are cleaned), atomically.

        Texts are matched exactly (the database's ``"text"`` name rule), never as paths.

        Returns:
            The texts removed. Other texts keep their ids until the next compaction.

        Raises:
            ValueError: a text is not in the database; nothing is removed then.
        """
        db = self._db.database
        removed = remove_rows(db.vectors_path, db.index_path, [minilm.clean_text(t) for t in texts])
        self._db = type(self._db).open(db.vectors_path, db.index_path)
        return removed
