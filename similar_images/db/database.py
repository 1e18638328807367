"""The database on disk: vectors, names, index, and the manifests that bind them.

Files (``V`` is the vectors file, ``I`` the index; see ``store.py`` for ``V``):

* ``V`` + ``V.manifest.json``: raw float32 vectors, row ``i`` belongs to ``names[i]``.
* ``I``: a Faiss index whose id ``i`` is row ``i`` of ``V`` (see ``index.py``).
* ``I.manifest.json``: index type, Faiss spec, search parameters, and what it was built
  from: ``count``, ``dimension``, ``model``, ``vectors_sha256`` and ``names_sha256``
  copied from ``V.manifest.json``, plus the index file's own ``index_sha256``.

:meth:`Database.open` checks that these belong together using the recorded fields and
checksums (the content is hashed by chunks on open unless trusted or stamped as
verified, see ``integrity.py``) and refuses with a :class:`DatabaseError` naming the mismatch.

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
from similar_images.db.integrity import check_content, check_file_sha, require_fields
from similar_images.db.vectors import load_vectors_manifest, open_vectors
from similar_images.errors import DatabaseError
from similar_images.fileio.files import manifest_path, read_json, sha256_file, sha256_lines

log = logging.getLogger(__name__)

INDEX_FORMAT = 1
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
    def open(cls, vectors: str | os.PathLike, index: str | os.PathLike | None = None, *,
             trust: bool = False, fresh: bool = False) -> Database:
        """Open and check a database; finish an interrupted add/remove first.

        The structure (sizes, headers, dtype, dimension, count, the manifests' fields) is
        always checked. The content (checksums of the vectors and the index, finite
        values) is checked by chunks unless ``trust`` or a verification stamp of these
        very files says it was (``integrity.py``). The open holds the readers' shared lock,
        so a concurrent add/remove is seen whole or not at all.

        Args:
            vectors: the vectors file.
            index: the index file, or None (exact search).
            trust: skip the content checksums (the structural checks still run).
            fresh: ignore verification stamps (writers re-check what they will re-sign).

        Raises:
            DatabaseError: a file is missing, damaged or unreadable, or the parts do not
                belong together (the message names the file and the field).
        """
        vectors_path = Path(vectors)
        for _ in range(3):
            finish_interrupted_change(vectors_path)
            with journal.reader_lock(vectors_path):
                if journal.journal_path(vectors_path).exists() and not journal.holds_lock(vectors_path):
                    continue  # a writer died after its commit point: finish it, then open
                return cls._open_locked(vectors_path, index, trust=trust, fresh=fresh)
        raise DatabaseError(f"{journal.journal_path(vectors_path)}: an interrupted change keeps reappearing; "
                            "is a writer stuck?")

    @classmethod
    def _open_locked(cls, vectors_path: Path, index, *, trust: bool, fresh: bool) -> Database:
        require_vectors(vectors_path)
        manifest = load_vectors_manifest(vectors_path)
        array = open_vectors(vectors_path, manifest)
        check_content(vectors_path, manifest["vectors_sha256"], _data_offset(array), trust=trust, fresh=fresh)
        db = cls(vectors_path, None, manifest, array)
        if index is not None:
            db.index_path = Path(index)
            db.index_manifest = read_index_manifest(db.index_path)
            check_index_manifest(db.index_path, db.index_manifest, manifest)
            check_index_checksum(db.index_path, db.index_manifest, deep=not trust, fresh=fresh)
            db.index = ix.read_index(db.index_path)
            check_index_object(db.index_path, db.index, manifest)
            ix.set_search_params(db.index, db.index_manifest.get("search_params", {}), manifest_path(db.index_path))
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
        """``(count,)`` float32 row norms, computed once per open (one pass over the vectors file)."""
        if self._norms is None:
            self._norms = ix.row_norms(self.vectors)
        return self._norms

    known_norms = property(lambda self: self._norms, doc="The row norms if :meth:`norms` computed them, else None.")

    def verify(self, *, deep: bool = True) -> None:
        """Re-check everything; with ``deep``, hash the vectors and index files again (no stamps)."""
        if deep:
            check_content(self.vectors_path, self.manifest["vectors_sha256"], _data_offset(self.vectors), fresh=True)
        if self.index_path is not None:
            check_index_manifest(self.index_path, self.index_manifest, self.manifest)
            check_index_checksum(self.index_path, self.index_manifest, deep=deep, fresh=deep)


def finish_interrupted_change(vectors_path: Path) -> None:
    """Roll forward a change interrupted after its commit point (under the writers' lock)."""
    if journal.journal_path(vectors_path).exists() and not journal.holds_lock(vectors_path):
        # Under the writers' lock, so a reader never races a writer that is applying
        # (and then deleting) its own journal.
        with journal.writer_lock(vectors_path):
            journal.roll_forward(journal.journal_path(vectors_path))


def _data_offset(array) -> int:
    return int(getattr(array, "offset", 0) or 0) if isinstance(array, np.memmap) else 0


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
    if sha256_lines(manifest["names"]) != manifest["names_sha256"]:
        raise DatabaseError(f"{manifest_path(path)}: names do not match their recorded checksum")


# Fields every index manifest must hold, with their JSON types (a missing one is an error).
INDEX_FIELDS = {"count": (int,), "dimension": (int,), "model": (dict,), "index_bytes": (int,),
                "index_sha256": (str,), "vectors_sha256": (str,), "names_sha256": (str,)}
OPTIONAL_INDEX_FIELDS = {"pool_factor": (int,), "search_params": (dict,)}


def read_index_manifest(index_path: Path) -> dict[str, Any]:
    path = manifest_path(index_path)
    if not path.exists():
        if index_path.exists():
            raise DatabaseError(
                f"{path}: index manifest not found; rebuild the index with `similar-images build --force`"
            )
        raise DatabaseError(f"{index_path}: index file not found (build it with `similar-images build`)")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("kind") != "index":
        kind = manifest.get("kind") if isinstance(manifest, dict) else None
        raise DatabaseError(f"{path}: not an index manifest (field 'kind' is {kind!r})")
    require_fields(path, manifest, INDEX_FIELDS)
    require_fields(path, {k: v for k, v in manifest.items() if k in OPTIONAL_INDEX_FIELDS},
                   {k: t for k, t in OPTIONAL_INDEX_FIELDS.items() if k in manifest})
    if manifest.get("pool_factor", 1) < 1:
        raise DatabaseError(f"{path}: field 'pool_factor' must be at least 1, got {manifest['pool_factor']}")
    ix.check_search_params(manifest.get("search_params", {}), path)
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
        if im.get(key) != vm.get(key):
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


def check_index_checksum(index_path: Path, im: dict[str, Any], *, deep: bool, fresh: bool = False) -> None:
    """The index file's size always; its sha256 when ``deep`` (a matching stamp counts unless ``fresh``)."""
    if not index_path.exists():
        raise DatabaseError(f"{index_path}: index file not found (build it with `similar-images build`)")
    size = index_path.stat().st_size
    if size != im["index_bytes"]:
        raise DatabaseError(f"{index_path}: {size} bytes, its manifest says {im['index_bytes']}; "
                            "run `similar-images verify --repair`")
    if deep:
        check_file_sha(index_path, im["index_sha256"], fresh=fresh, what="index")


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
