"""What the routes call: the database, the one model instance, the write path.

Searches capture the current :class:`~similar_images.search.SimilarImages` once and use
only it, and a write swaps in a freshly opened one after its crash-safe commit, so a
search running during a write sees the old or the new state, never a mix.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from similar_images.errors import ImageError, ModelError
from similar_images.features import text_queries
from similar_images.fileio.files import atomic_path
from similar_images.images.fetch import FetchPolicy
from similar_images.search import SimilarImages
from similar_images.service import urls
from similar_images.service.batcher import MicroBatcher
from similar_images.service.config import ServiceConfig
from similar_images.service.limits import SUFFIXES, check_pixels, sniff_image
from similar_images.service.stats import LatencyStats
from similar_images.thumbnails import thumbnail_jpeg

log = logging.getLogger(__name__)

UPLOAD_FOLDER = "uploads"  # inside the image folder; files are named by their content hash


@dataclass
class Prepared:
    """A decoded query image, ready for the model."""

    pixels: np.ndarray  # (h, w, 3) uint8 at the model's input size
    width: int
    height: int
    decode_s: float


@dataclass
class Found:
    """The answer to one image query."""

    results: list
    model_s: float
    search_s: float
    batch_size: int


class Engine:
    """The service's state: one database, one model, one micro-batcher."""

    def __init__(self, db: SimilarImages, config: ServiceConfig):
        self.db, self.config = db, config
        self.stats = LatencyStats()
        self.model_lock = threading.Lock()  # the model runs in one thread at a time
        self.write_lock = threading.Lock()  # one write at a time
        self.batcher = MicroBatcher(self._search_batch, max_batch=config.batch_size,
                                    max_wait_s=config.batch_wait_ms / 1000)
        self.urls = urls.UrlFetcher(FetchPolicy(allow_private=config.allow_private_urls, timeout=config.url_timeout,
                                                deadline=config.url_deadline, max_bytes=config.url_max_bytes,
                                                max_redirects=config.max_redirects), config.max_url_fetches)

    # --- start ---------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load the model and run it once, and compute the row norms, so the first client does
        not pay for them (:meth:`SimilarImages.warm`)."""
        started = time.perf_counter()
        with self.model_lock:
            self.db.warm()
        log.info("model and norms warmed up in %.2f s", time.perf_counter() - started)

    @property
    def bands(self):
        """What the model's scores mean (None: unmeasured, no verdicts); ``models.score_bands``."""
        from similar_images.models.score_bands import bands_for

        return bands_for(self.db.model)

    def describe(self) -> dict:
        db = self.db
        return {"count": len(db), "model": db.model.get("name"), "model_description": db.model,
                "text_queries": "text" in db.model.get("towers", ()),
                "index": _index_name(db), "dimension": int(db.database.dimension)}

    # --- image queries ---------------------------------------------------------------

    def prepare(self, data: bytes) -> Prepared:
        """Sniff, check the pixel count, decode and resize an uploaded or fetched image."""
        started = time.perf_counter()
        sniff_image(data)
        width, height = check_pixels(data, self.config.max_pixels)
        pixels = self.db.load_query(data)  # the one query path: decoded as extraction decodes
        return Prepared(pixels, width, height, time.perf_counter() - started)

    async def fetch(self, url: str) -> bytes:
        """Download ``url`` with the address checks and the one deadline of :mod:`.urls`."""
        return await self.urls.fetch(url)

    def _search_batch(self, items: list[tuple[Prepared, int]]) -> list:
        db = self.db  # one state for the whole batch
        started = time.perf_counter()
        with self.model_lock:
            vectors = db.extractor.embed(np.stack([prepared.pixels for prepared, _ in items]))  # (n, d)
        model_s = time.perf_counter() - started
        k_most = max(k for _, k in items)
        found = db.search([np.asarray(v, dtype=np.float32) for v in vectors], k=min(k_most, len(db)))
        search_s = time.perf_counter() - started - model_s
        return [Found(hits[:k], model_s, search_s, len(items)) for hits, (_, k) in zip(found, items)]

    def search_text(self, text: str, k: int) -> Found:
        """Images matching ``text`` through the database model's text tower (CLIP).

        Raises:
            ValueError: the model has no text tower (one line naming it), or a bad text.
        """
        db = self.db
        try:
            text_queries(db.model, [text], k)  # before the model is touched
        except ModelError as exc:
            raise ValueError(str(exc)) from None
        started = time.perf_counter()
        with self.model_lock:
            vector = db.extractor.encode_text([text])  # (1, d)
        model_s = time.perf_counter() - started
        (results,) = db.search([np.asarray(vector[0], dtype=np.float32)], k=min(k, len(db)))
        return Found(results, model_s, time.perf_counter() - started - model_s, 1)

    # --- id queries and images -----------------------------------------------------

    def search_id(self, image_id: int, k: int):
        """``(db, results, search_s)`` for an id query (no model run)."""
        db = self.db
        self.check_id(db, image_id)
        started = time.perf_counter()
        results = db.search(int(image_id), k=min(k, len(db)))
        return db, results, time.perf_counter() - started

    def duplicates(self, image_id: int, threshold: float | None, k: int):
        """``(results, threshold)``: the near-duplicates of an id (no model run), the image left out."""
        from similar_images.duplicates import duplicates_of
        from similar_images.duplicates.threshold import ThresholdError, resolve_threshold

        db = self.db
        self.check_id(db, image_id)
        chosen = "auto" if threshold is None else threshold
        try:
            cosine = resolve_threshold(chosen, db.model)
        except ThresholdError as exc:
            raise ValueError(str(exc)) from None  # ask for ?threshold=: a 422
        return duplicates_of(db, int(image_id), threshold=cosine, k=min(k, len(db) - 1)), float(cosine)

    @staticmethod
    def check_id(db: SimilarImages, image_id: int) -> None:
        # ids are stable between compactions: added rows take ids past len(db), removed ones leave gaps
        if not db.database.is_live(int(image_id)):
            raise LookupError(f"no image with id {image_id} (the database holds ids 0..{db.database.id_count - 1}"
                              f"{', some removed' if len(db) < db.database.id_count else ''})")

    def image_file(self, image_id: int) -> Path:
        db = self.db
        self.check_id(db, image_id)
        path = Path(db.image_path(image_id))
        if not path.is_file():
            raise LookupError(f"the file of image {image_id} is missing on the server")
        return path

    def thumbnail(self, image_id: int) -> bytes:
        """A JPEG thumbnail (cached by the thumbnails module, keyed by file and mtime)."""
        try:
            return thumbnail_jpeg(self.image_file(image_id))
        except ImageError as exc:
            raise LookupError(f"no thumbnail for image {image_id}: {exc.reason}") from None

    # --- writes ----------------------------------------------------------------------

    def add(self, uploads: list[bytes]) -> dict:
        """Store uploads under content-hash names and add them through the crash-safe add."""
        for data in uploads:
            self.prepare(data)  # refuse non-images and bombs before anything is written
        with self.write_lock:
            folder = Path(self.db.image_dir) / UPLOAD_FOLDER
            paths = [self._store(folder, data) for data in uploads]
            writer = self._writer()
            with self.model_lock:
                report = writer.add(paths, show_progress=False)
            writer.warm(model=False)  # the new rows' norms, before queries see this state
            self.db = writer
        ids = writer.ids_of(report.added + report.already_present)
        return {"added": [{"id": ids[n], "name": n} for n in report.added],
                "already_present": [{"id": ids.get(n), "name": n} for n in report.already_present],
                "skipped": [{"name": s.get("path", ""), "error": s.get("message", "")} for s in report.skipped],
                "count": len(writer)}

    def remove(self, image_id: int) -> dict:
        """Remove one image by id through the crash-safe remove (its file is kept)."""
        with self.write_lock:
            self.check_id(self.db, image_id)
            name = self.db.names[image_id]
            writer = self._writer()
            removed = writer.remove([name])
            writer.warm(model=False)
            self.db = writer
        return {"removed": removed, "count": len(writer)}

    def refresh(self) -> None:
        """Serve the database as it is on disk now (after another writer, such as a folder's
        sync, committed): opened fresh, warmed, then swapped in; searches running meanwhile
        finish on the state they started with."""
        with self.write_lock:
            writer = self._writer()
            writer.warm(model=False)
            self.db = writer

    def _writer(self) -> SimilarImages:
        db = self.db
        writer = SimilarImages.open(db.database.vectors_path, db.database.index_path, image_dir=db.image_dir,
                                    extractor=db.extractor)
        writer.adopt_norms(db)  # the rows it shares with the serving state need no second pass
        return writer

    @staticmethod
    def _store(folder: Path, data: bytes) -> Path:
        # The client's file name is never used: the name is the content's hash.
        name = hashlib.sha256(data).hexdigest()[:24] + SUFFIXES[sniff_image(data)]
        path = folder / name
        if not path.exists():
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        return path


def _index_name(db: SimilarImages) -> str:
    if not db.has_index:
        return "exact"
    manifest = db.database.index_manifest or {}
    return str(manifest.get("index_type") or manifest.get("type") or "faiss")
