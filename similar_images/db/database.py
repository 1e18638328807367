"""The database on disk: vectors, names, index, and the files that bind them.

Files (``V`` is the vectors file, ``I`` the index):

* ``V`` + ``V.manifest.json``: the base generation's raw float32 vectors; the manifest
  holds the model, the image folder and checksums, and names its catalog generation.
* ``V.catalog.sqlite`` (``catalog.py``): the names by id, the segments added since the
  base was written (``segments.py``) and the deleted ids; an add or a remove is one
  SQLite transaction and touches no other file.
* ``I`` + ``I.manifest.json``: a Faiss index over the base rows (``index_manifest.py``);
  rows added since are encoded into the in-memory copy on open (O(added)).
* ``I.refine.npy`` (large indexes): 8-bit codes of the index's rows, mapped (``refine.py``).

:meth:`Database.open` checks that these belong together using the recorded fields and
checksums (the content is hashed by chunks on open unless trusted or stamped as
verified, see ``integrity.py``) and refuses with a :class:`DatabaseError` naming the mismatch.

Ids are stable between full writes: a remove leaves a tombstone, and an add takes the
next ids. A full write (extraction, ``compact``, ``build``) starts a new generation whose
ids are ``0..n-1`` again. Format-1 databases (names in the manifest) open read-only as
before and are migrated on their first write (``compaction.migrate``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from similar_images.db import catalog, journal
from similar_images.db import index as ix
from similar_images.db.index_manifest import (
    check_index_checksum,
    check_index_manifest,
    check_index_object,
    index_manifest_for,  # noqa: F401  (writers import it from here)
    now_iso,  # noqa: F401
    read_index_manifest,
    say_outgrown,
)
from similar_images.db.integrity import check_content
from similar_images.db.refine import RefineStage, check_refine_codes, open_refine_stage
from similar_images.db.segments import (
    Generation,
    Rows,
    base_names_vouched,
    check_base_names,
    load_segment,
    open_generation,
)
from similar_images.db.vectors import load_vectors_manifest, open_vectors
from similar_images.errors import DatabaseError
from similar_images.fileio.files import manifest_path

log = logging.getLogger(__name__)

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


@dataclass
class Database:
    """An opened, verified database. ``vectors`` is memory-mapped, read-only.

    Attributes:
        vectors_path: the ``.npy`` vectors file.
        index_path: the Faiss index file, or None for exact search on the vectors.
        manifest: the vectors manifest (``names``, ``model``, ``image_dir``, ...).
        vectors: ``(count, dimension)`` float32 memory map.
        index, index_manifest, refine: the Faiss index, its manifest and its refine stage, or None.
    """

    vectors_path: Path
    index_path: Path | None
    manifest: dict[str, Any]
    vectors: np.ndarray
    index: Any = None
    index_manifest: dict[str, Any] | None = None
    refine: RefineStage | None = None
    _norms: np.ndarray | None = field(default=None, repr=False)
    generation: Generation | None = field(default=None, repr=False)

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
            finish_interrupted_change(vectors_path, index)
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
        how = check_content(vectors_path, manifest["vectors_sha256"], _data_offset(array), trust=trust, fresh=fresh)
        db = cls(vectors_path, None, manifest, array)
        if "generation" in manifest:
            db.generation = open_generation(vectors_path, manifest, array, trust=trust, fresh=fresh)
            db.vectors = db.generation.rows
            if how == "checked" or (how == "stamp" and not base_names_vouched(vectors_path, manifest, db.generation)):
                check_base_names(vectors_path, manifest, db.generation)  # O(N): spared while the catalog's guard holds
        if index is not None:
            db.index_path = Path(index)
            db.index_manifest = read_index_manifest(db.index_path)
            check_index_manifest(db.index_path, db.index_manifest, manifest)
            check_index_checksum(db.index_path, db.index_manifest, deep=not trust, fresh=fresh)
            db.index = ix.read_index(db.index_path)
            check_index_object(db.index_path, db.index, manifest)
            db.refine = open_refine_stage(db.index_path, db.index_manifest, deep=not trust, fresh=fresh)
            ix.set_search_params(db.index, db.index_manifest.get("search_params", {}), manifest_path(db.index_path))
            if isinstance(db.vectors, Rows):  # rows added since the index was written: encoded here, O(added)
                ix.add_vectors(db.index, db.vectors.added)
            say_outgrown(db.index_path, db.index_manifest, len(db), log)
        return db

    @property
    def names(self) -> Sequence[str]:
        """Names by id (``names[id]``); a format-2 database reads them from its catalog."""
        return self.generation.names if self.generation else self.manifest["names"]

    @property
    def deleted(self) -> np.ndarray:
        """``(t,)`` int64 sorted ids removed since the last full write (filtered from results)."""
        return self.generation.deleted if self.generation else _NONE_DELETED

    @property
    def id_count(self) -> int:
        """Ids run ``0..id_count-1``; ``len(db)`` leaves out the deleted ones."""
        return len(self.vectors)

    def is_live(self, image_id: int) -> bool:
        return 0 <= image_id < self.id_count and not (len(self.deleted) and _contains(self.deleted, image_id))

    def live_ids(self) -> np.ndarray:
        """``(len(self),)`` int64 ids of the items present, ascending."""
        return np.setdiff1d(np.arange(self.id_count, dtype=np.int64), self.deleted, assume_unique=True)

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
        return self.id_count - len(self.deleted)

    def norms(self) -> np.ndarray:
        """``(id_count,)`` float32 row norms, computed once per open (one pass over the vectors file)."""
        if self._norms is None:
            self._norms = ix.row_norms(self.vectors)
        return self._norms

    known_norms = property(lambda self: self._norms, doc="The row norms if :meth:`norms` computed them, else None.")

    def reuse_norms(self, earlier: Database) -> None:
        """Take the row norms ``earlier`` computed, if it opened the same generation (the same
        rows by id), and compute only those of the rows added since (O(added), not O(N))."""
        known = earlier.known_norms
        same = self.generation and earlier.generation and self.generation.gen == earlier.generation.gen
        if known is None or self._norms is not None or not same or len(known) > self.id_count:
            return
        added = ix.row_norms(self.vectors[len(known):self.id_count]) if len(known) < self.id_count else known[:0]
        self._norms = np.concatenate([known, added])

    def verify(self, *, deep: bool = True) -> None:
        """Re-check everything; with ``deep``, hash the vectors, segments and index files again (no stamps)."""
        if deep:
            check_content(self.vectors_path, self.manifest["vectors_sha256"], _data_offset(self.base_rows), fresh=True)
            if self.generation:
                for seg in self.generation.segments[1:]:  # every added segment re-hashed (no stamps)
                    load_segment(self.vectors_path.parent, seg, self.dimension, trust=False, fresh=True,
                                 store=self.manifest.get("store"))
                check_base_names(self.vectors_path, self.manifest, self.generation)
        if self.index_path is not None:
            check_index_manifest(self.index_path, self.index_manifest, self.manifest)
            check_index_checksum(self.index_path, self.index_manifest, deep=deep, fresh=deep)
            check_refine_codes(self.index_path, self.index_manifest, deep=deep, fresh=deep)

    @property
    def base_rows(self) -> np.ndarray:
        """The base vectors file's rows (memory map), without the rows added since."""
        return self.vectors.base if isinstance(self.vectors, Rows) else self.vectors


_NONE_DELETED = np.zeros(0, dtype=np.int64)


def _contains(sorted_ids: np.ndarray, value: int) -> bool:
    at = int(np.searchsorted(sorted_ids, value))
    return at < len(sorted_ids) and int(sorted_ids[at]) == value


def finish_interrupted_change(vectors_path: Path, index=None) -> None:
    """Roll forward a change interrupted after its commit point (under the writers' lock);
    ``index``, the one the caller opens, may live in another folder."""
    if journal.journal_path(vectors_path).exists() and not journal.holds_lock(vectors_path):
        # Under the writers' lock, so a reader never races a writer that is applying
        # (and then deleting) its own journal.
        with journal.writer_lock(vectors_path):
            journal.roll_forward(journal.journal_path(vectors_path),
                                 journal.database_files(vectors_path, (index,) if index is not None else ()))


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
                found.setdefault(path.resolve(), {**manifest, "items": _items(path, manifest)})
    return sorted(found.items())


def _items(path: Path, manifest: dict[str, Any]) -> int:
    """How many items a database holds now: its manifest's rows, with the catalog's adds and removes."""
    if "generation" not in manifest:
        return int(manifest["count"])
    try:
        con = catalog.connect(catalog.catalog_path(path))
    except DatabaseError:
        return int(manifest["count"])
    with contextlib.closing(con):
        return catalog.item_count(con, manifest["generation"])


def require_vectors(path: Path) -> None:
    if not path.exists():
        raise DatabaseError(f"{path}: vectors file not found (make it with `similar-images extract`, "
                            "or `similar-images text build` for texts)")


def find_default_index(vectors: str | os.PathLike) -> Path | None:
    """The index file beside ``vectors`` if there is one; None (exact search) otherwise."""
    path = default_index_path(vectors)
    if path.exists():
        return path
    log.info("no index %s: searching %s exactly", path, vectors)
    return None
