"""The ingress replica's engine: the one-process service's engine with the search routed.

The ingress runs the one-process service's application unchanged: its routes, limits,
token, URL rules, page and micro-batcher, and the model (queries are decoded and embedded
where they arrive). What differs is behind :class:`~similar_images.service.engine.Engine`:

* the database it holds is opened without the index (names from the catalog, vectors
  memory-mapped for id queries): :class:`RoutedImages` sends every vector search to the
  shards with the token of its state, and merges their exact top-k;
* writes are forwarded to the one writer; the replica then picks up the new state at once,
  so a client reads its own write;
* :class:`~similar_images.serving.state.Freshness` swaps in each new state within the bound.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from similar_images.db.database import Database
from similar_images.db.index_manifest import read_index_manifest
from similar_images.search import SimilarImages
from similar_images.service.config import ServiceConfig
from similar_images.service.engine import Engine
from similar_images.serving.state import Freshness, State, state_of

log = logging.getLogger(__name__)

# route(queries (m, d) float32, k, state token, rerank) -> (scores, ids) (m, k), merged over the shards
Route = Callable[[np.ndarray, int, State, bool], tuple[np.ndarray, np.ndarray]]
# write("add", uploads) / write("remove", image_id) -> the response body
Write = Callable[..., dict]


class RoutedImages(SimilarImages):
    """A :class:`SimilarImages` whose vector searches are answered by the shards."""

    def __init__(self, db: Database, route: Route, **options):
        super().__init__(db, **options)
        self.route = route
        self.state = state_of(db)

    def search_vectors(self, vectors, k: int, *, rerank: bool = True) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(vectors, dtype=np.float32).reshape(-1, self.database.dimension)  # (m, d)
        return self.route(q, k, self.state, rerank)


def open_routed(vectors: str | Path, image_dir, route: Route, *, extractor=None, device: str = "auto") -> RoutedImages:
    """The database without its index (the shards hold it), answering through ``route``."""
    return RoutedImages(Database.open(vectors, None), route, image_dir=image_dir, extractor=extractor, device=device)


def index_label(index: str | Path | None) -> str:
    """What ``/api/health`` calls the index: the one-process name (``flat``, ``ivfpq``, ...)."""
    if index is None:
        return "exact"
    manifest = read_index_manifest(Path(index)) or {}
    return str(manifest.get("index_type") or manifest.get("type") or "faiss")


class ReplicaEngine(Engine):
    """The service's engine over a :class:`RoutedImages`; writes through ``write``.

    Args:
        db: the routed database, opened.
        config: the service's settings.
        label: the index's name for ``/api/health``.
        write: forwards a write to the writer (None: writes are off).
        max_age_s: the staleness bound (:class:`Freshness`).
    """

    def __init__(self, db: RoutedImages, config: ServiceConfig, *, label: str, write: Write | None = None,
                 max_age_s: float = 1.0):
        super().__init__(db, config)
        self.label, self.write = label, write
        self.freshness = Freshness(db.database.vectors_path, db.state, self._reopen, max_age_s)

    def run_batch(self, items: list) -> list:
        """One batch of prepared queries: embedded together, searched on the shards."""
        return self._search_batch(items)

    def describe(self) -> dict:
        info = super().describe()
        info["index"] = self.label
        return info

    def add(self, uploads: list[bytes]) -> dict:
        for data in uploads:
            self.prepare(data)  # refuse non-images and bombs here, before they travel
        return self._forward("add", uploads)

    def remove(self, image_id: int) -> dict:
        return self._forward("remove", int(image_id))

    def _forward(self, operation: str, argument) -> dict:
        if self.write is None:
            raise RuntimeError("writes are off on this server")
        body = self.write(operation, argument)
        self.freshness.check(force=True)  # read your own write on this replica
        return body

    def _reopen(self) -> State:
        db = self.db
        fresh = open_routed(db.database.vectors_path, db.image_dir, db.route, extractor=db.extractor)
        self.db = fresh  # one reference swap: a search holds the old state or the new one
        return fresh.state
