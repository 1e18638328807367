"""Opening a database for the notebook ``Similar image.ipynb``.

The notebook searches the COCO database that the README's steps produce. Where those
files are absent (a fresh clone), it falls back to the sample database of
``similar-images demo``, building it first if needed, and says so.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from similar_images.db.database import COCO_INDEX, COCO_VECTORS

logger = logging.getLogger(__name__)

DEMO_WORKDIR = "demo_output"


def open_database(
    vectors: str | os.PathLike = COCO_VECTORS,
    index: str | os.PathLike | None = COCO_INDEX,
    *,
    image_dir: str | os.PathLike | None = None,
    demo_workdir: str | os.PathLike = DEMO_WORKDIR,
    fallback: bool = True,
    say=print,
) -> Any:
    """Open the database at ``vectors`` (+ ``index``), or the demo's sample database.

    Args:
        vectors: the vectors file; its manifest names the model and image folder.
        index: the Faiss index file; None or a missing file means exact search.
        image_dir: folder of the images (default: the one recorded in the manifest).
        demo_workdir: where ``similar-images demo`` keeps its sample database.
        fallback: when ``vectors`` does not exist, open (building it if needed) the
            sample database instead of failing.
        say: where the one-line summary goes (the notebook shows it).

    Returns:
        An open :class:`~similar_images.search.SimilarImages`.

    Raises:
        DatabaseError: the files exist but do not form a valid database, or
            ``vectors`` is missing and ``fallback`` is False.
    """
    from similar_images.errors import DatabaseError
    from similar_images.search import SimilarImages

    vectors = Path(vectors)
    if not vectors.exists():
        if not fallback:
            raise DatabaseError(f"{vectors}: vectors file not found; see the README's COCO steps")
        say(f"{vectors} not found, so this notebook uses the small sample database of "
            f"`similar-images demo` in {demo_workdir}/ (build the COCO database with the "
            "README's steps to search 40,504 COCO photos).")
        return _open_demo(Path(demo_workdir), say)
    if index is not None and not Path(index).exists():
        say(f"{index} not found: searching the vectors exactly (slower on large collections).")
        index = None
    db = SimilarImages.open(vectors=vectors, index=index, image_dir=image_dir)
    db.warm(model=False)  # a notebook asks many queries: the row norms once (the model on first use)
    say(f"Searching {len(db):,} images of {vectors} (model {db.model.get('name', '?')}) {_how(db)}.")
    return db


def _how(db) -> str:
    """Which index a database (image or text) searches through, or that it searches exactly."""
    database = db.database
    if database.index is None:
        return "exactly (no index)"
    return f"with the index {database.index_path} ({database.index_manifest.get('index_type', '?')})"


def open_text_database(vectors: str | os.PathLike = "tweets.csv.saved_predictions.npy", *, say=print) -> Any:
    """Open the text database ``similar-images text build`` wrote, or the built-in corpus.

    The index is the one ``text build`` writes beside the vectors (``tweets.csv.faiss.index``
    for ``tweets.csv``); without it the vectors are searched exactly. ``say`` gets one line
    naming what was opened. The text model loads without a progress bar.
    """
    from similar_images.db.database import default_index_path
    from similar_images.text.corpus import builtin_database
    from similar_images.text.database import TextDatabase

    _quiet_model_loading()
    vectors = Path(vectors)
    if not vectors.exists():
        db = builtin_database()
        say(f"No text database at {vectors}: searching a small built-in corpus of {len(db)} sentences "
            "(a temporary database). Run the two commands above to search 20,000 tweets instead.")
        return db
    index = default_index_path(vectors)
    db = TextDatabase.open(vectors, index if index.exists() else None)
    say(f"Searching {len(db):,} texts of {vectors} (model {db.model.get('name', '?')}) {_how(db)}.")
    return db


def _quiet_model_loading() -> None:
    """No "Loading weights" bar in the notebook: the search's own output is what matters."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from similar_images.models.torch_compat import ensure_torchvision_importable

    ensure_torchvision_importable()  # transformers imports torchvision when it is installed
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _open_demo(workdir: Path, say) -> Any:
    """Open the sample database of ``similar-images demo``, building it if absent."""
    from similar_images.demo.run import DEFAULT_MODEL, DemoPaths, run_demo
    from similar_images.search import SimilarImages

    paths = DemoPaths(workdir.resolve(), DEFAULT_MODEL)
    if not (paths.vectors.exists() and paths.index.exists()):
        say("Building the sample database once (offline photos, EfficientNet-Lite0) ...")
        run_demo(workdir)
    db = SimilarImages.open(vectors=paths.vectors, index=paths.index, image_dir=paths.photos)
    db.warm(model=False)
    say(f"Searching {len(db):,} sample images of {paths.vectors} (model {db.model.get('name', '?')}) {_how(db)}.")
    return db
