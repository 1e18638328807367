"""What ``similar-images evaluate`` compares, and running its reports.

A *system* is one opened database under a label such as ``vgg16/ivfpq``. ``--models``
names the systems, comma-separated; each item is

* ``MODEL`` (a model of one of the ``--vectors`` files): that database with its saved
  index (the default index file beside the vectors), or exact search when it has none;
* ``INDEX_TYPE`` (``ivfpq``, ``flat``, ``hnsw``, ... or ``saved`` / ``exact``): the
  first vectors file searched through that kind of index;
* ``MODEL:INDEX_TYPE``: both.

Indexes of other types are built once into ``<out>/indexes/`` and reused. For the
robustness report on a folder (``--images``, see :mod:`similar_images.evaluation.folder`),
``--models`` names the models to extract the folder with, and the other reports use each
``--vectors`` file as it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from similar_images.db.index import INDEX_TYPES
from similar_images.db.vectors import load_vectors_manifest
from similar_images.fileio.files import manifest_path

logger = logging.getLogger(__name__)

SPECIAL_INDEXES = ("saved", "exact")


@dataclass(frozen=True)
class SystemSpec:
    """One ``--models`` item resolved: which vectors file, which index ('saved', 'exact' or a type)."""

    label: str
    vectors: Path
    index: str


def model_name(vectors: Path) -> str:
    """The model name recorded in a vectors manifest."""
    return str(load_vectors_manifest(vectors)["model"].get("name", "unknown"))


def resolve_systems(vectors: list[Path], models: list[str] | None, *, has_saved_index) -> list[SystemSpec]:
    """Turn ``--vectors`` and ``--models`` into system specs (see the module docstring).

    Args:
        vectors: vectors files; the first is the default database.
        models: ``--models`` items, or None for each vectors file as it is.
        has_saved_index: ``Path -> bool``, whether a vectors file has an index file.

    Raises:
        ValueError: an item names neither a model of ``vectors`` nor an index type.
    """
    by_model: dict[str, Path] = {}
    for path in vectors:
        by_model.setdefault(model_name(path), path)
    kinds = tuple(INDEX_TYPES) + SPECIAL_INDEXES

    def default_index(path: Path) -> str:
        return "saved" if has_saved_index(path) else "exact"

    if not models:
        return [SystemSpec(_label(model_name(p), default_index(p), p, vectors), p, default_index(p))
                for p in vectors]
    specs = []
    for item in models:
        model, _, kind = item.partition(":")
        if not kind and model in kinds and model not in by_model:
            model, kind = model_name(vectors[0]), model
        if model not in by_model:
            raise ValueError(f"--models {item!r}: no --vectors file holds model {model!r} (they hold: "
                             f"{', '.join(by_model)}); index types: {', '.join(kinds)}")
        path = by_model[model]
        kind = kind or default_index(path)
        if kind not in kinds:
            raise ValueError(f"--models {item!r}: unknown index type {kind!r}; choose from: {', '.join(kinds)}")
        specs.append(SystemSpec(_label(model, kind, path, vectors), path, kind))
    return specs


def _label(model: str, kind: str, path: Path, vectors: list[Path]) -> str:
    same_model = [p for p in vectors if model_name(p) == model]
    prefix = model if len(same_model) < 2 else f"{model}[{path.name}]"
    return f"{prefix}/{kind}"


def saved_index_path(vectors: Path, overrides: dict[Path, Path] | None = None) -> Path:
    """The index file saved with a database: ``--index`` for the first one, else the default name."""
    from similar_images.db.database import default_index_path

    return (overrides or {}).get(vectors) or default_index_path(vectors)


def index_file(spec: SystemSpec, workdir: Path, *, show_progress: bool,
               overrides: dict[Path, Path] | None = None) -> Path | None:
    """The index file a spec searches through: None (exact), the saved one, or one built in ``workdir``."""
    if spec.index == "exact":
        return None
    if spec.index == "saved":
        return saved_index_path(spec.vectors, overrides)
    return workdir / "indexes" / f"{spec.vectors.name}.{spec.index}.faiss.index"


def build_index_file(vectors: Path, target: Path, index_type: str, *, show_progress: bool) -> dict:
    """Build an index of ``index_type`` over ``vectors`` into ``target`` (+ manifest)."""
    from similar_images.db.build import build_index_files

    logger.info("building a %s index of %s into %s", index_type, vectors, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return build_index_files(vectors, target, index_type=index_type, force=True, show_progress=show_progress)


def _open_database(vectors: Path, index: Path | None, image_dir=None, extractor=None):
    from similar_images.search import SimilarImages

    return SimilarImages.open(vectors=vectors, index=index, image_dir=image_dir, extractor=extractor)


def open_spec(spec: SystemSpec, workdir: Path, *, show_progress: bool,
              overrides: dict[Path, Path] | None = None, image_dir=None, extractor=None):
    """Open a spec's database; an index of another type is built on first use, rebuilt when stale."""
    from similar_images.errors import DatabaseError

    path = index_file(spec, workdir, show_progress=show_progress, overrides=overrides)
    if spec.index in SPECIAL_INDEXES:
        return _open_database(spec.vectors, path, image_dir, extractor)
    if path.exists() and manifest_path(path).exists():
        try:
            return _open_database(spec.vectors, path, image_dir, extractor)
        except DatabaseError as exc:  # the vectors changed since: build it again
            logger.warning("rebuilding %s: %s", path, exc)
    manifest = build_index_file(spec.vectors, path, spec.index, show_progress=show_progress)
    if manifest.get("note"):
        logger.warning("%s: %s", spec.label, manifest["note"])
    return _open_database(spec.vectors, path, image_dir, extractor)


def open_systems(specs: list[SystemSpec], workdir: Path, *, show_progress: bool,
                 overrides: dict[Path, Path] | None = None) -> dict[str, tuple[object, Path]]:
    """label -> (opened database, its vectors file), for each spec.

    A saved index is labelled with its type, e.g. ``vgg16/ivfpq (saved)``.
    """
    systems = {}
    for spec in specs:
        db = open_spec(spec, workdir, show_progress=show_progress, overrides=overrides)
        label = spec.label
        saved_type = (getattr(db.database, "index_manifest", None) or {}).get("index_type")
        if spec.index == "saved" and saved_type:
            label = f"{spec.label.rsplit('/', 1)[0]}/{saved_type} (saved)"
        systems[label] = (db, spec.vectors)
    return systems
