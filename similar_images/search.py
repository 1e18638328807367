"""The search API: open a database, search it with images, ids or vectors.

Example::

    from similar_images.search import SimilarImages

    db = SimilarImages.open()                  # the COCO files in the current folder
    for hit in db.search("my_photo.jpg", k=8):
        print(f"{hit.score:.3f}  {db.image_path(hit)}")

Scores are cosine similarities. With an index, the index proposes ``pool_factor * k``
candidates and they are re-scored exactly against the stored float32 vectors, so the
scores are exact and an image of the collection finds itself first with 1.0.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from similar_images.collection import add_images
from similar_images.db import index as ix
from similar_images.db.changes import find_present, remove_rows
from similar_images.db.database import COCO_VECTORS, Database, find_default_index
from similar_images.db.importing import NO_MODEL
from similar_images.db.searching import search_database
from similar_images.db.vectors import resolve_image_dir
from similar_images.errors import ModelError
from similar_images.features import check_extractor, extractor_for, for_database, text_queries
from similar_images.images import fit_of, load_for_model

log = logging.getLogger(__name__)

# `index=` default: the index beside the vectors (``X.faiss.index`` for
# ``X.txt.saved_predictions.npy``) when it exists, else exact search over the vectors.
AUTO_INDEX = "auto"


class SearchResult(NamedTuple):
    """One hit: row ``id``, ``path`` as written in the manifest, cosine ``score``."""

    id: int
    path: str
    score: float


class SimilarImages:
    """An opened image database. Build one with :meth:`open`."""

    def __init__(self, db: Database, *, image_dir: str | os.PathLike | None = None,
                 extractor=None, pool_factor: int | None = None, device: str = "auto"):
        self._db = db
        self._device = device
        self.image_dir = resolve_image_dir(image_dir or db.manifest.get("image_dir"), db.vectors_path,
                                           given=image_dir is not None)
        self._extractor = extractor if extractor is None else for_database(extractor, db.model, db.vectors_path.parent)
        recorded = (db.index_manifest or {}).get("pool_factor", ix.DEFAULT_POOL_FACTOR)
        self.pool_factor = int(pool_factor or recorded)
        if extractor is not None:
            check_extractor(self._extractor, db.model)

    @classmethod
    def open(
        cls,
        vectors: str | os.PathLike = COCO_VECTORS,
        index: str | os.PathLike | None = AUTO_INDEX,
        image_dir: str | os.PathLike | None = None,
        extractor=None,
        *, pool_factor: int | None = None, trust: bool = False, device: str = "auto",
    ) -> SimilarImages:
        """Open and verify a database.

        Args:
            vectors: the vectors file (``.npy`` with its ``.manifest.json``).
            index: the Faiss index file (with its manifest); None for exact search
                over the vectors; default: the index beside the vectors (for the
                default vectors, ``ms_coco_file_list.faiss.index``) if it exists, else
                exact search.
            image_dir: folder the names are relative to; default: the manifest's.
            extractor: the feature model for image queries; default: built on first
                use from the model recorded in the manifest.
            pool_factor: an indexed search re-ranks ``pool_factor * k`` candidates;
                default: the factor the build chose (recorded in the index manifest).
            trust: skip the content checksums on open (the structural checks still run);
                by default they run unless a verification stamp shows the files unchanged.
            device: where the default query model runs: ``"auto"`` (cuda when present),
                ``"cpu"`` or ``"cuda"``; any device answers a database made on any other.

        Raises:
            DatabaseError: missing files, or parts that do not belong together.
            ModelError: ``extractor`` is not the model the vectors were made with.
        """
        if isinstance(index, str) and index == AUTO_INDEX:
            index = find_default_index(vectors)
        return cls(Database.open(vectors, index, trust=trust), image_dir=image_dir, extractor=extractor,
                   pool_factor=pool_factor, device=device)

    # --- what is in it -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._db)

    @property
    def names(self) -> Sequence[str]:
        """Names by id: ``names[id]`` (a removed item keeps its id's name until compaction)."""
        return self._db.names

    @property
    def model(self) -> dict[str, Any]:
        """The model description recorded in the vectors manifest."""
        return self._db.model

    @property
    def database(self) -> Database:
        return self._db

    @property
    def has_index(self) -> bool:
        return self._db.index is not None

    def vector(self, image_id: int) -> np.ndarray:
        """The stored raw vector of row ``image_id``: ``(d,)`` float32."""
        return np.array(self._db.vectors[self._check_id(image_id)], dtype=np.float32)

    def image_path(self, item: int | SearchResult) -> Path:
        """Where the image of a result (or id) is on disk: ``image_dir / name``."""
        image_id = item.id if isinstance(item, SearchResult) else item
        return Path(self.image_dir) / self.names[self._check_id(image_id)]

    @property
    def extractor(self):
        """The feature model, built on first use from the manifest's model."""
        if self._extractor is None:
            self._extractor = extractor_for(self.model, model_folder=self._db.model_folder, device=self._device,
                                            database_folder=self._db.vectors_path.parent)
        return self._extractor

    # --- searching -----------------------------------------------------------------

    def search(self, query, k: int = 8, *, rerank: bool = True):
        """Find the ``k`` images most similar to ``query``.

        Args:
            query: an image (path, ``http(s)`` URL, bytes of a file, ``PIL.Image``,
                ``(h, w, 3)`` uint8 array), the ``int`` id of an image in the database
                (no model run), or a ``(d,)`` vector; or a list of those, searched in
                one model call.
            k: results per query.
            rerank: re-score the index's candidates exactly (default); False returns
                the index's approximate scores.

        Returns:
            ``list[SearchResult]`` ranked best first, or one such list per query when
            ``query`` is a list.

        Raises:
            ImageError: an image query could not be loaded.
            ValueError: a bad id, vector shape or ``k``.
        """
        many = isinstance(query, (list, tuple)) or (isinstance(query, np.ndarray) and query.ndim == 2
                                                     and query.dtype.kind == "f")
        queries = list(query) if many else [query]
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not queries:
            return []
        scores, ids = self.search_vectors(self.embed(queries), k, rerank=rerank)
        results = [self._results(s, i) for s, i in zip(scores, ids)]
        return results if many else results[0]

    def search_text(self, text: str | Sequence[str], k: int = 8, *, rerank: bool = True):
        """The ``k`` images that best match ``text`` (or each text of a list), found with the text
        tower of the database's model (CLIP); ModelError naming the model for one without (VGG16)."""
        texts = text_queries(self.model, [text] if isinstance(text, str) else list(text), k)
        scores, ids = self.search_vectors(self.extractor.encode_text(texts), k, rerank=rerank)
        results = [self._results(s, i) for s, i in zip(scores, ids)]
        return results[0] if isinstance(text, str) else results

    def search_vectors(self, vectors, k: int, *, rerank: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Search with raw query vectors ``(m, d)``: ``(scores, ids)``, ``-1`` for none."""
        q = np.asarray(vectors, dtype=np.float32).reshape(-1, self._db.dimension)  # (m, d)
        return search_database(self._db, q, k, pool_factor=self.pool_factor, rerank=rerank)

    def warm(self, *, model: bool = True) -> None:
        """Get ready for many queries (a service or a notebook calls it once): build the model and
        run it once (``model``; none for an imported database without one); compute the row norms
        (a re-ranking then reads its candidates' rows once, not twice: 0.2-0.25 ms a query at COCO
        scale) up to :data:`WARM_NORMS_BYTES` of stored rows (a start-up never reads a large store
        whole: 15 s at 2,000,000 x 1280 float32); read refine codes into memory in the background."""
        if model and self.model.get("name") != NO_MODEL:
            self.extractor.embed(np.zeros((1, *self.extractor.input_size, 3), dtype=np.uint8))
        if self.has_index and stored_bytes(self._db) <= WARM_NORMS_BYTES:
            self._db.norms()
        if self._db.refine is not None:
            self._db.refine.warm()

    def embed(self, queries: Sequence) -> np.ndarray:
        """Query vectors ``(m, d)`` float32 (raw): ids and vectors looked up, images embedded once."""
        out = np.empty((len(queries), self._db.dimension), dtype=np.float32)  # (m, d)
        pending, images = [], []
        for row, q in enumerate(queries):
            vec = self._as_vector(q)
            if vec is not None:
                out[row] = vec
                continue
            pending.append(row)
            images.append(self.load_query(q))
        if pending:
            embedded = self.extractor.embed(np.stack(images))  # (p, d)
            if embedded.shape[1] != self._db.dimension:
                raise ModelError(f"the model makes {embedded.shape[1]}-d vectors, the database holds "
                                 f"{self._db.dimension}-d ones")
            out[pending] = embedded
        return out

    def load_query(self, source) -> np.ndarray:
        """Decode an image query exactly as extraction decodes the collection's images.

        The same function (:func:`similar_images.images.load_for_model`: EXIF rotation,
        RGB, the JPEG decoder's reduced scale for the model's input size, then the
        resize) serves extraction and every query source, so an image of the collection
        searched from a path, URL, upload or the notebook finds itself with score 1.0.

        Returns:
            ``(h, w, 3)`` uint8 RGB at the model's input size.

        Raises:
            ImageError: the image cannot be loaded.
        """
        return load_for_model(_as_source(source), fit_of(self.extractor))

    def _as_vector(self, q) -> np.ndarray | None:
        if isinstance(q, (bool, np.bool_)):
            raise ValueError(f"not a query: {q!r}")
        if isinstance(q, (int, np.integer)):
            return self._db.vectors[self._check_id(q)]
        if isinstance(q, np.ndarray) and q.dtype.kind == "f" and q.ndim == 1:
            if q.shape != (self._db.dimension,):
                raise ValueError(f"query vector of shape {q.shape}, expected ({self._db.dimension},)")
            return q
        return None

    def _check_id(self, image_id) -> int:
        if isinstance(image_id, (bool, np.bool_)) or not isinstance(image_id, (int, np.integer)):
            raise ValueError(f"an image id is an int, got {image_id!r}")
        if not 0 <= int(image_id) < self._db.id_count:
            raise ValueError(f"image id {image_id} out of range: the database holds ids 0..{self._db.id_count - 1}")
        if not self._db.is_live(int(image_id)):
            raise ValueError(f"image id {image_id} was removed from the database")
        return int(image_id)

    def _results(self, scores: np.ndarray, ids: np.ndarray) -> list[SearchResult]:
        names = self.names
        return [SearchResult(int(i), names[int(i)], float(s)) for s, i in zip(scores, ids) if i >= 0]

    # --- changing it -----------------------------------------------------------------

    def add(self, paths, *, batch_size: int = 32, show_progress: bool = True):
        """Add images (a list of files, or a folder) without retraining; atomic.

        Images already in the database are skipped, as are files that cannot be loaded
        (listed in the result with their reason).

        Returns:
            :class:`similar_images.update.AddReport`.
        """
        report = add_images(self._db, self.extractor, paths, image_dir=self.image_dir, batch_size=batch_size,
                            show_progress=show_progress)
        self._reopen()
        return report

    def remove(self, paths, *, missing_ok: bool = False) -> list[str]:
        """Remove images by path (or name as in the manifest); atomic.

        Returns:
            The names removed. Other images keep their ids until the next compaction
            (``similar-images compact``), which numbers them ``0..n-1`` again.
        """
        removed = remove_rows(self._db.vectors_path, self._db.index_path, paths,
                              image_dir=self.image_dir, missing_ok=missing_ok)
        self._reopen()
        return removed

    def ids_of(self, names) -> dict[str, int]:
        """``name -> id`` for those of ``names`` (paths or names as stored) in the database,
        looked up through the catalog's index."""
        return find_present(self._db, list(names), self.image_dir)

    def adopt_norms(self, earlier: SimilarImages) -> None:
        """Reuse the row norms ``earlier`` computed for the same generation (see :meth:`warm`)."""
        self._db.reuse_norms(earlier._db)

    def _reopen(self) -> None:  # the writer stamped what it wrote: no re-hash here
        earlier = self._db
        self._db = Database.open(self._db.vectors_path, self._db.index_path)
        if earlier.known_norms is not None:  # stay as warm as before the change: norms of new rows only
            self._db.reuse_norms(earlier)
            self._db.norms()


WARM_NORMS_BYTES = 1 << 30  # warm() reads the whole store for its norms only up to this size
stored_bytes = lambda db: int(db.base_rows.size) * int(db.base_rows.dtype.itemsize)  # noqa: E731  rows as kept


def _as_source(q):
    from PIL import Image

    if isinstance(q, np.ndarray):
        if q.ndim == 3 and q.shape[2] == 3 and q.dtype == np.uint8:
            return Image.fromarray(q)
        raise ValueError(f"an array query is a (d,) vector or an (h, w, 3) uint8 image, got {q.dtype} {q.shape}")
    if isinstance(q, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)):
        return q
    raise ValueError(f"cannot search for a {type(q).__name__}: give a path, URL, bytes, PIL image, id or vector")
