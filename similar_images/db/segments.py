"""Vector segments: the base vectors file plus the immutable files each add wrote, read
as one id-addressed store, and the catalog's names read by id.

An add writes one new ``.npy`` segment (``<V>.seg-<token>.npy``) and names it in the
catalog; nothing else is touched. A reader maps the base file and loads the added
segments (small, between compactions) into one in-memory block, so ids ``0..n-1`` are
the base rows and ids from ``n`` on are the added rows, in the order they were added.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from similar_images.db import catalog
from similar_images.db.catalog_guard import names_state, names_vouched, put_guard_if_free, vouch_for_names
from similar_images.db.integrity import check_content, drop_stamp
from similar_images.db.vectors import open_vectors
from similar_images.errors import DatabaseError
from similar_images.fileio.files import sha256_lines

log = logging.getLogger(__name__)


class Rows:
    """``(n, d)`` float32 rows addressed by id: ``base`` (memory map) then ``added`` (in memory).

    Supports what readers of a vectors array use: ``len``, ``shape``, an int, a slice or
    an int array as index, and ``np.asarray`` (which copies everything: O(N)). A float16
    store's base rows come out as float32, like the added ones.
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, base: np.ndarray, added: np.ndarray):
        self.base, self.added = base, added  # (n0, d) memory map, (m, d) float32
        self.split = len(base)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.split + len(self.added), int(self.base.shape[1]))

    def __len__(self) -> int:
        return self.split + len(self.added)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            i = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"row {key} out of range for {len(self)} rows")
            return self.base[i].astype(np.float32) if i < self.split else self.added[i - self.split]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                parts = [np.asarray(self.base[start:min(stop, self.split)], dtype=np.float32),
                         self.added[max(start - self.split, 0):max(stop - self.split, 0)]]
                return np.concatenate(parts) if len(parts[0]) and len(parts[1]) else max(parts, key=len)
            key = np.arange(start, stop, step)
        ids = np.asarray(key, dtype=np.int64)
        out = np.empty((len(ids), self.shape[1]), dtype=np.float32)
        in_base = ids < self.split
        out[in_base] = self.base[ids[in_base]]
        out[~in_base] = self.added[ids[~in_base] - self.split]
        return out

    def __array__(self, dtype=None, copy=None):
        whole = np.concatenate([np.asarray(self.base, dtype=np.float32), self.added])
        return whole if dtype is None else whole.astype(dtype)


class CatalogNames(Sequence):
    """The names of one generation, read from the catalog by id (no list of every name)."""

    def __init__(self, con: sqlite3.Connection, gen: str, count: int, where: Path):
        self._con, self._gen, self._count, self._where = con, gen, count, where

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._count))]
        i = int(i) + (self._count if i < 0 else 0)
        if not 0 <= i < self._count:
            raise IndexError(f"id {i} out of range for {self._count} items")
        (name,) = catalog.names_by_id(self._con, self._gen, [i])
        if name is None:
            raise DatabaseError(f"{self._where}: item {i} is missing from the catalog; run `similar-images verify`")
        return name

    def take(self, ids) -> list[str]:
        """The names of ``ids`` in one query."""
        names = catalog.names_by_id(self._con, self._gen, ids)
        if any(n is None for n in names):
            raise DatabaseError(f"{self._where}: an item is missing from the catalog; run `similar-images verify`")
        return names

    def __iter__(self) -> Iterator[str]:
        return catalog.iter_names(self._con, self._gen, 0, self._count)

    def __eq__(self, other) -> bool:
        return list(self) == list(other) if isinstance(other, (list, tuple, Sequence)) else NotImplemented


@dataclass
class Generation:
    """One opened generation: its store of rows, names, deleted ids and catalog connection."""

    rows: np.ndarray | Rows
    names: CatalogNames
    deleted: np.ndarray  # (t,) int64 sorted
    con: sqlite3.Connection
    gen: str
    segments: tuple[catalog.Segment, ...]


def open_generation(vectors_path: Path, manifest: dict, base: np.ndarray, *, trust: bool, fresh: bool) -> Generation:
    """Read the catalog's view of ``manifest["generation"]`` and load its added segments."""
    where = catalog.catalog_path(vectors_path)
    gen = manifest["generation"]
    con = catalog.connect(where)
    snap = catalog.read_snapshot(con, where, gen)
    first = snap.segments[0]  # the vectors file itself, whatever it is called now (a database may be renamed)
    if (first.rows, first.sha256) != (len(base), manifest["vectors_sha256"]):
        raise DatabaseError(f"{where}: the base segment of generation {gen} holds {first.rows} rows of another "
                            f"checksum than {vectors_path.name} ({len(base)} rows); run `similar-images verify`")
    added = [load_segment(vectors_path.parent, s, base.shape[1], trust=trust, fresh=fresh, store=manifest.get("store"))
             for s in snap.segments[1:]]
    rows = Rows(base, np.concatenate(added)) if added else base
    top = con.execute("SELECT MAX(id) FROM items WHERE gen=?", (gen,)).fetchone()[0]
    if (top if top is not None else -1) != snap.id_count - 1:
        raise DatabaseError(f"{where}: generation {gen} names items up to id {top}, its segments hold "
                            f"{snap.id_count} rows; run `similar-images verify`")
    return Generation(rows, CatalogNames(con, gen, snap.id_count, where), snap.deleted, con, gen, snap.segments)


def load_segment(folder: Path, segment: catalog.Segment, dimension: int, *, trust: bool, fresh: bool,
                 store: str | None = None) -> np.ndarray:
    """An added segment's rows ``(rows, d)`` float32 in memory, its checksum checked (stamp-aware);
    ``store``: the database's (``manifest["store"]``, None: float32)."""
    path = folder / catalog.check_bare_name(segment.file, f"segment {segment.seq}")
    if not path.exists():
        raise DatabaseError(f"{path}: segment {segment.seq} named by the catalog is missing; run `similar-images verify`")
    array = open_vectors(path, {"count": segment.rows, "dimension": dimension, **({"store": store} if store else {})})
    check_content(path, segment.sha256, 0, trust=trust, fresh=fresh)
    return np.array(array, dtype=np.float32)


def base_names_vouched(vectors_path: Path, manifest: dict, gen: Generation) -> bool:
    """Whether a names stamp vouches for the base rows' names as the catalog holds them now (O(1))."""
    where = catalog.catalog_path(vectors_path)
    return names_vouched(where, names_state(gen.con, where, gen.gen, manifest["names_sha256"]))


def check_base_names(vectors_path: Path, manifest: dict, gen: Generation) -> None:
    """The base rows' names in the catalog against the manifest's ``names_sha256`` (what the
    index was built from): O(N), so only where the base is hashed or no names stamp matches."""
    where = catalog.catalog_path(vectors_path)
    put_guard_if_free(gen.con)  # a catalog made before the guard gets it from its first open that can write it
    state = names_state(gen.con, where, gen.gen, manifest["names_sha256"])  # read first: a later edit is not vouched for
    if sha256_lines(catalog.iter_names(gen.con, gen.gen, 0, gen.segments[0].rows)) != manifest["names_sha256"]:
        drop_stamp(vectors_path)  # hashed just before: its new stamp must not spare the next open this check
        drop_stamp(where)
        raise DatabaseError(f"{where}: the names of generation {gen.gen} do not match the manifest's names_sha256 "
                            "(edited); nothing was changed")
    vouch_for_names(where, state)
