"""The one-command demo: build a small database from offline photos, search it, show it.

``similar-images demo`` (``make demo``) writes everything into one folder (default
``demo_output/``):

* ``photos/``: the sample collection (see :mod:`similar_images.demo.sample_photos`): real
  photos shipped by scikit-image, scikit-learn and matplotlib plus edited copies.
* ``sample_file_list.txt``: their names, written last, so its presence means the
  photos are complete.
* ``sample_<model>.saved_predictions.npy`` (+ manifest) and ``sample_<model>.faiss.index``
  (+ manifest): the database, built with the extraction and index code the COCO
  database uses.
* ``query/<photo>__query.jpg``: a held-out edit of one photo (not in the database).
* ``results.html`` and ``results.png``: the ranked results with thumbnails and scores
  (``query-results.html`` and ``.png`` for a query of your own, ``--query``).

A second run reuses the database and only searches; ``rebuild=True`` starts over.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from similar_images.demo import sample_photos
from similar_images.demo.report import (  # noqa: F401 - the printing helpers, re-exported for the CLI
    NO_CLOSE_MATCH_LINE,
    format_results,
    next_steps,
    no_close_match,
    shown_path,
    verdict,
)
from similar_images.demo.results_page import (
    ShownResult,
    write_contact_sheet,
    write_results_html,
)
from similar_images.errors import ImageError
from similar_images.fileio.files import read_file_list, write_bytes_atomic

log = logging.getLogger(__name__)

DEFAULT_WORKDIR = "demo_output"
DEFAULT_MODEL = "efficientnet-lite0"
DEFAULT_PHOTO = "chelsea"
FILE_LIST = "sample_file_list.txt"


@dataclass
class DemoRun:
    """What one demo run did and found.

    Attributes:
        workdir: the demo folder.
        query: the query image file.
        query_photo: the sample photo the query was made from (``None`` for a user's own
            image); results from the same photo are ``marked``.
        results: ranked best first.
        database_size: images in the database.
        built: ``True`` when this run built the database, ``False`` when it reused it.
        timings: seconds per step.
        html: the results page; png: the contact sheet.
    """

    workdir: Path
    query: Path
    query_photo: str | None
    results: list[ShownResult]
    database_size: int
    built: bool
    timings: dict[str, float] = field(default_factory=dict)
    html: Path | None = None
    png: Path | None = None
    vectors: Path | None = None  # the sample database's vectors file (its index is beside it)
    copies: int = 0  # images of the query photo in the database (original + edited copies)


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo keeps its files inside ``workdir``."""

    workdir: Path
    model: str

    @property
    def photos(self) -> Path:
        return self.workdir / "photos"

    @property
    def file_list(self) -> Path:
        return self.workdir / FILE_LIST

    @property
    def vectors(self) -> Path:
        return self.workdir / f"sample_{self.model}.saved_predictions.npy"

    @property
    def index(self) -> Path:
        return self.workdir / f"sample_{self.model}.faiss.index"

    def query(self, photo: str) -> Path:
        return self.workdir / "query" / sample_photos.sample_name(photo, "query")


def ensure_photos(paths: DemoPaths, photos: Sequence[str], *, rebuild: bool = False,
                  show_progress: bool = True) -> bool:
    """Write the sample collection unless its file list already names exactly these
    photos and their edits; True if written."""
    expected = sorted(sample_photos.sample_name(p, e) for p in photos for e in [None, *sample_photos.EDITS])
    if paths.file_list.exists() and not rebuild and read_file_list(paths.file_list) == expected:
        return False
    names = sample_photos.write_collection(paths.photos, photos=photos, show_progress=show_progress)
    write_bytes_atomic(paths.file_list, ("\n".join(names) + "\n").encode("utf-8"))
    return True


def ensure_vectors(paths: DemoPaths, extractor, *, rebuild: bool = False, show_progress: bool = True) -> bool:
    """Extract the vectors unless up to date for this model; True if extracted."""
    from similar_images.db.vectors import load_vectors_manifest
    from similar_images.extract import run_extraction

    stale = rebuild
    if paths.vectors.exists() and not rebuild:
        manifest = load_vectors_manifest(paths.vectors, with_names=True)
        if manifest["model"] == extractor.describe() and manifest["names"] == read_file_list(paths.file_list):
            return False
        log.warning("the sample vectors were made by another model or list; extracting again")
        stale = True
    # An interrupted extraction resumes from its checkpoints; stale vectors are replaced.
    run_extraction(paths.file_list, paths.photos, paths.vectors, extractor,
                   resume=not stale, force=stale, show_progress=show_progress)
    return True


def ensure_index(paths: DemoPaths, *, rebuild: bool = False, show_progress: bool = True) -> bool:
    """Build the (exact) index unless it exists; True if built."""
    from similar_images.db.build import build_index_files
    from similar_images.db.database import Database
    from similar_images.errors import DatabaseError

    if paths.index.exists() and not rebuild:
        try:
            Database.open(paths.vectors, paths.index)
            return False
        except DatabaseError as exc:  # for example, vectors rebuilt after an interruption
            log.warning("rebuilding the sample index: %s", exc)
    build_index_files(paths.vectors, paths.index, index_type="flat", force=True, show_progress=show_progress)
    return True


def _open(paths: DemoPaths, extractor):
    from similar_images.search import SimilarImages

    return SimilarImages.open(vectors=paths.vectors, index=paths.index, image_dir=paths.photos,
                              extractor=extractor)


def run_demo(
    workdir: str | os.PathLike = DEFAULT_WORKDIR,
    *,
    query: str | os.PathLike | None = None,
    photo: str = DEFAULT_PHOTO,
    photos: Sequence[str] | None = None,
    k: int = 10,
    model: str = DEFAULT_MODEL,
    model_options: dict[str, Any] | None = None,
    rebuild: bool = False,
    show_progress: bool = True,
) -> DemoRun:
    """Build (or reuse) the sample database in ``workdir``, search it, write the pages.

    Args:
        workdir: the demo folder (created).
        query: an image to search for; default: a held-out edit of ``photo``.
        photo: which sample photo the default query is made from.
        photos: the sample photos in the database (default: all of
            :data:`~similar_images.sample_photos.PHOTOS`); must include ``photo``.
        k: results to show.
        model: the feature model (default: EfficientNet-Lite0, pretrained, offline).
        model_options: options for the model (for example ``{"weights": "none"}``).
        rebuild: build everything again.
        show_progress: show progress bars.

    Raises:
        ValueError: bad ``k``, ``photo`` or ``model``.
        SimilarImagesError: a query or model that cannot be loaded.
    """
    from similar_images.features import get_extractor

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    photos = list(sample_photos.PHOTOS if photos is None else photos)
    for name in [photo, *photos]:
        if name not in sample_photos.PHOTOS:
            raise ValueError(f"unknown photo {name!r}; choose one of: {', '.join(sample_photos.PHOTOS)}")
    if query is None and photo not in photos:
        raise ValueError(f"the query photo {photo!r} is not among the database photos")
    if query is not None and "://" not in str(query) and not Path(query).is_file():
        raise ImageError(f"{query}: file not found", "not found")
    paths = DemoPaths(Path(workdir).resolve(), model)
    paths.workdir.mkdir(parents=True, exist_ok=True)  # an unusable folder fails before the model loads
    timings: dict[str, float] = {}
    options = demo_model_options(model, model_options)
    extractor = _timed(timings, "load model", lambda: get_extractor(model, **options))
    built = _timed(timings, "photos", lambda: ensure_photos(paths, photos, rebuild=rebuild,
                                                             show_progress=show_progress))
    built |= _timed(timings, "vectors", lambda: ensure_vectors(
        paths, extractor, rebuild=rebuild or built, show_progress=show_progress))
    built |= _timed(timings, "index", lambda: ensure_index(paths, rebuild=rebuild or built,
                                                            show_progress=show_progress))
    if query is None:
        query_path = paths.query(photo)
        if rebuild or not query_path.exists():
            sample_photos.write_query(query_path, photo)
        query_photo: str | None = photo
    else:
        query_path, query_photo = Path(query), None
    from similar_images.models import score_bands

    db = _open(paths, extractor)
    found = _timed(timings, "search", lambda: db.search(str(query_path), k=k))
    bands = score_bands.bands_for(db.model)
    results = [
        ShownResult(rank, r.path, Path(db.image_path(r)), float(r.score),
                    marked=query_photo is not None and sample_photos.group_of(r.path) == query_photo,
                    verdict=score_bands.verdict(float(r.score), bands))
        for rank, r in enumerate(found, start=1)
    ]
    copies = sum(sample_photos.group_of(name) == query_photo for name in db.names) if query_photo else 0
    run = DemoRun(paths.workdir, query_path, query_photo, results, len(db), built, timings,
                  vectors=paths.vectors, copies=copies)
    _write_pages(run)
    return run


def demo_model_options(model: str, given: dict[str, Any] | None) -> dict[str, Any]:
    """The demo's model options: ``given``, with EfficientNet-Lite0 on OpenVINO when it is
    installed and no runtime was given. Its queries then load a cached compiled model
    without importing torch: ``similar-images search`` on the demo answers in about a
    second instead of three (benchmarks/cli_search.py)."""
    import importlib.util

    options = dict(given or {})
    if model == "efficientnet-lite0" and "runtime" not in options and importlib.util.find_spec("openvino"):
        # batch size 8 (the middle candidate): timing them takes longer than 119 images do
        options.update(runtime="openvino", batch_size=8)
    return options


def _timed(timings: dict[str, float], step: str, fn):
    start = time.perf_counter()
    value = fn()
    timings[step] = time.perf_counter() - start
    return value


def _write_pages(run: DemoRun) -> None:
    title = f"similar-images demo: {run.database_size} sample images (offline photos and edited copies)"
    notes = [f"Query {run.query.name}: " + (
        f"a held-out edit of the sample photo '{run.query_photo}'; green frames mark its edited copies."
        if run.query_photo else "your image.")]
    if no_close_match(run):
        notes.append(NO_CLOSE_MATCH_LINE.format(score=run.results[0].score))
    # a user's own query (--query) gets its own pages: the sample query's stay as they were
    stem = "results" if run.query_photo else "query-results"
    run.html = write_results_html(run.workdir / f"{stem}.html", run.query, run.results, title=title,
                                  notes=notes, mark_label="copy of the query photo")
    run.png = write_contact_sheet(run.workdir / f"{stem}.png", run.query, run.results, title=title)
