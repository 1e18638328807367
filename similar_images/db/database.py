"""The database on disk: vectors, names, index, and the manifests that bind them.

Files (``V`` is the vectors file, ``I`` the index; see ``store.py`` for ``V``):

* ``V`` + ``V.manifest.json``: raw float32 vectors, row ``i`` belongs to ``names[i]``.
* ``I``: a Faiss index whose id ``i`` is row ``i`` of ``V`` (see ``index.py``).
* ``I.manifest.json``: index type, Faiss spec, search parameters, and what it was built
  from: ``count``, ``dimension``, ``model``, ``vectors_sha256`` and ``names_sha256``
  copied from ``V.manifest.json``, plus the index file's own ``index_sha256``.

:meth:`Database.open` checks that these belong together using the recorded fields and
checksums (the 600 MB vectors file is not hashed on open; :meth:`Database.verify` with
``deep=True`` does) and refuses with a :class:`DatabaseError` naming the mismatch.

Adding and removing images rewrites the vectors, their manifest, the index and its
manifest as one atomic change (``journal.py``). Removal deletes rows, so the ids of
later rows shift down; ids are row numbers of the current files, names are stable.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from similar_images.db import index as ix
from similar_images.db import journal
from similar_images.db.files import manifest_path, read_json, sha256_file, sha256_lines
from similar_images.db.vectors import load_vectors_manifest, open_vectors
from similar_images.errors import DatabaseError

log = logging.getLogger(__name__)

INDEX_FORMAT = 1
# Index files up to this size are checksummed on every open (8 MB takes milliseconds).
HASH_ON_OPEN_BYTES = 64 << 20
VECTORS_SUFFIX = ".saved_predictions.npy"
# The COCO database the README's steps make in the current folder: the default everywhere.
COCO_FILE_LIST = "ms_coco_file_list.txt"
COCO_VECTORS = COCO_FILE_LIST + VECTORS_SUFFIX
COCO_INDEX = "ms_coco_file_list.faiss.index"  # = default_index_path(COCO_VECTORS)


def default_index_path(vectors: str | os.PathLike) -> Path:
    """``X.txt.saved_predictions.npy`` -> ``X.faiss.index`` (other names: ``<stem>.faiss.index``)."""
    text = str(vectors)
    if text.endswith(VECTORS_SUFFIX):
        text = text[: -len(VECTORS_SUFFIX)]
        if text.endswith(".txt"):
            text = text[: -len(".txt")]
    elif text.endswith(".npy"):
        text = text[: -len(".npy")]
    return Path(text + ".faiss.index")


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclass
class Database:
    """An opened, verified database. ``vectors`` is memory-mapped, read-only.

    Attributes:
        vectors_path: the ``.npy`` vectors file.
        index_path: the Faiss index file, or None for exact search on the vectors.
        manifest: the vectors manifest (``names``, ``model``, ``image_dir``, ...).
        vectors: ``(count, dimension)`` float32 memory map.
        index: the Faiss index, or None.
        index_manifest: the index manifest, or None.
    """

    vectors_path: Path
    index_path: Path | None
    manifest: dict[str, Any]
    vectors: np.ndarray
    index: Any = None
    index_manifest: dict[str, Any] | None = None
    _norms: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def open(cls, vectors: str | os.PathLike, index: str | os.PathLike | None = None) -> Database:
        """Open and check a database; finish an interrupted add/remove first.

        Raises:
            DatabaseError: a file is missing or unreadable, or the parts do not belong
                together (the message names the mismatch).
        """
        vectors_path = Path(vectors)
        if journal.journal_path(vectors_path).exists():
            # An interrupted change: finish it under the writers' lock, so a reader never
            # races a writer that is applying (and then deleting) its own journal.
            with journal.writer_lock(vectors_path):
                journal.roll_forward(journal.journal_path(vectors_path))
        require_vectors(vectors_path)
        manifest = load_vectors_manifest(vectors_path)
        array = open_vectors(vectors_path)
        check_vectors(vectors_path, manifest, array)
        db = cls(vectors_path, None, manifest, array)
        if index is not None:
            db.index_path = Path(index)
            db.index_manifest = read_index_manifest(db.index_path)
            check_index_manifest(db.index_path, db.index_manifest, manifest)
            check_index_checksum(db.index_path, db.index_manifest, deep=False)
            db.index = ix.read_index(db.index_path)
            check_index_object(db.index_path, db.index, manifest)
            ix.set_search_params(db.index, db.index_manifest.get("search_params", {}))
        return db

    @property
    def names(self) -> list[str]:
        return self.manifest["names"]

    @property
    def model(self) -> dict[str, Any]:
        return self.manifest["model"]

    @property
    def model_folder(self) -> Path | None:
        """The database's own copy of its quantised model (``manifest["model_files"]``), or None."""
        name = self.manifest.get("model_files")
        return self.vectors_path.parent / name if name else None

    @property
    def dimension(self) -> int:
        return int(self.manifest["dimension"])

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def norms(self) -> np.ndarray:
        """``(count,)`` float32 row norms, computed once per open."""
        if self._norms is None:
            self._norms = ix.row_norms(self.vectors)
        return self._norms

    def verify(self, *, deep: bool = True) -> None:
        """Re-check everything; with ``deep``, also hash the vectors and index files."""
        if deep:
            recorded = self.manifest.get("vectors_sha256")
            if recorded and sha256_file(self.vectors_path) != recorded:
                raise DatabaseError(
                    f"{self.vectors_path}: contents do not match the checksum in its manifest"
                )
        if self.index_path is not None:
            check_index_manifest(self.index_path, self.index_manifest, self.manifest)
            check_index_checksum(self.index_path, self.index_manifest, deep=deep)


# --- checks ----------------------------------------------------------------------------


def find_databases(folders, *, name_rule: str | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """Vectors files with a readable manifest in ``folders`` (not recursive), sorted, each once.

    Args:
        folders: where to look.
        name_rule: only databases of this kind (``"path"``: images, ``"text"``: texts).
    """
    found: dict[Path, dict[str, Any]] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.npy")):
            try:
                manifest = load_vectors_manifest(path)
            except DatabaseError:
                continue
            model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
            rule = manifest.get("name_rule") or ("text" if model.get("kind") == "text" else "path")
            if name_rule is None or rule == name_rule:
                found.setdefault(path.resolve(), manifest)
    return sorted(found.items())


def require_vectors(path: Path) -> None:
    if not path.exists():
        raise DatabaseError(f"{path}: vectors file not found (make it with `similar-images extract`, "
                            "or `similar-images text build` for texts)")


def check_vectors(path: Path, manifest: dict[str, Any], array: np.ndarray) -> None:
    count, dim = int(manifest["count"]), int(manifest["dimension"])
    if array.shape != (count, dim):
        raise DatabaseError(
            f"{path}: the file holds {array.shape[0]} x {array.shape[1]} vectors but its "
            f"manifest lists {count} names of dimension {dim}"
        )
    recorded = manifest.get("names_sha256")
    if recorded and sha256_lines(manifest["names"]) != recorded:
        raise DatabaseError(f"{manifest_path(path)}: names do not match their recorded checksum")


def read_index_manifest(index_path: Path) -> dict[str, Any]:
    path = manifest_path(index_path)
    if not path.exists():
        if index_path.exists():
            raise DatabaseError(
                f"{path}: index manifest not found; rebuild the index with `similar-images build --force`"
            )
        raise DatabaseError(f"{index_path}: index file not found (build it with `similar-images build`)")
    manifest = read_json(path)
    if manifest.get("kind") != "index":
        raise DatabaseError(f"{path}: not an index manifest (kind={manifest.get('kind')!r})")
    return manifest


def check_index_manifest(index_path: Path, im: dict[str, Any], vm: dict[str, Any]) -> None:
    """Refuse an index that was built from other vectors, names or model."""
    where = f"{index_path} does not belong to these vectors"
    if int(im.get("dimension", -1)) != int(vm["dimension"]):
        raise DatabaseError(
            f"{where}: index dimension {im.get('dimension')} != vectors dimension {vm['dimension']}"
        )
    if im.get("model") != vm["model"]:
        raise DatabaseError(f"{where}: {describe_model_difference(im.get('model'), vm['model'])}")
    if int(im.get("count", -1)) != int(vm["count"]):
        raise DatabaseError(f"{where}: index holds {im.get('count')} vectors, the vectors file {vm['count']}")
    for key, what in (("names_sha256", "names"), ("vectors_sha256", "vectors")):
        if vm.get(key) and im.get(key) != vm.get(key):
            raise DatabaseError(f"{where}: the {what} changed since the index was built (checksum differs)")


def describe_model_difference(index_model: Any, vectors_model: Any) -> str:
    if not isinstance(index_model, dict) or not isinstance(vectors_model, dict):
        return f"index built for model {index_model!r}, vectors made by {vectors_model!r}"
    keys = sorted(set(index_model) | set(vectors_model))
    diffs = [
        f"{k} {index_model.get(k)!r} vs {vectors_model.get(k)!r}"
        for k in keys
        if index_model.get(k) != vectors_model.get(k)
    ]
    return "index built for another model (index vs vectors: " + "; ".join(diffs) + ")"


def check_index_checksum(index_path: Path, im: dict[str, Any], *, deep: bool) -> None:
    if not index_path.exists():
        raise DatabaseError(f"{index_path}: index file not found (build it with `similar-images build`)")
    size = index_path.stat().st_size
    if "index_bytes" in im and size != im["index_bytes"]:
        raise DatabaseError(f"{index_path}: {size} bytes, its manifest says {im['index_bytes']}; rebuild it")
    if (deep or size <= HASH_ON_OPEN_BYTES) and im.get("index_sha256"):
        if sha256_file(index_path) != im["index_sha256"]:
            raise DatabaseError(f"{index_path}: contents do not match the checksum in its manifest; rebuild it")


def check_index_object(index_path: Path, index, vm: dict[str, Any]) -> None:
    if ix.index_dimension(index) != int(vm["dimension"]) or index.ntotal != int(vm["count"]):
        raise DatabaseError(
            f"{index_path}: index of {index.ntotal} x {ix.index_dimension(index)} vectors, "
            f"expected {vm['count']} x {vm['dimension']}"
        )


# --- writing ---------------------------------------------------------------------------


def index_manifest_for(index_path: Path, staged_index: Path, vm: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The index manifest of a freshly written index file, bound to vectors manifest ``vm``."""
    return {
        **base,
        "format": INDEX_FORMAT,
        "kind": "index",
        "count": int(vm["count"]),
        "dimension": int(vm["dimension"]),
        "model": vm["model"],
        "vectors_sha256": vm.get("vectors_sha256"),
        "names_sha256": vm.get("names_sha256"),
        "index_bytes": staged_index.stat().st_size,
        "index_sha256": sha256_file(staged_index),
        "updated": now_iso(),
    }
