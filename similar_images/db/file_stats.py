"""What the catalog knows of each item's file: its size, modification time and content hash.

The ``items`` table has had the columns ``size``, ``mtime_ns`` and ``sha256`` since the
catalog was made; writers that know the file (``similar-images sync``) fill them, the others
(extraction from a file list, ``add``) leave them NULL. A folder is followed by comparing
``(name, size, mtime_ns)`` with the files on disk (no file is read when they agree), the
hash confirms a change, and a known hash under a new name is a moved file.

These functions read and write rows of one generation; every write runs inside the
caller's transaction (:func:`similar_images.db.catalog.transaction`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from typing import NamedTuple

# Hash look-ups go through this index; partial, so databases without file stats (millions
# of rows from a file list) pay nothing for it when their rows are inserted.
SHA_INDEX = ("CREATE INDEX IF NOT EXISTS items_by_sha256 ON items(gen, sha256) "
             "WHERE sha256 IS NOT NULL")


class FileStat(NamedTuple):
    """A file as the catalog records it (``sha256`` is the hex digest of its bytes)."""

    size: int
    mtime_ns: int
    sha256: str


class FileRecord(NamedTuple):
    """One live item with what the catalog knows of its file (None where not recorded)."""

    id: int
    name: str
    size: int | None
    mtime_ns: int | None
    sha256: str | None


def ensure_index(con: sqlite3.Connection) -> None:
    """Create the hash index if this catalog does not have it yet (a catalog made before it)."""
    con.execute(SHA_INDEX)


def live_records(con: sqlite3.Connection, gen: str) -> Iterator[FileRecord]:
    """Every item of ``gen`` that is not deleted, in id order: one query, no file read."""
    query = ("SELECT id, name, size, mtime_ns, sha256 FROM items WHERE gen=? "
             "AND id NOT IN (SELECT id FROM tombstones WHERE gen=?) ORDER BY id")
    for row in con.execute(query, (gen, gen)):
        yield FileRecord(*row)


def ids_for_sha256(con: sqlite3.Connection, gen: str, hashes: Iterable[str]) -> dict[str, list[int]]:
    """``sha256 -> ids`` of the items whose file had that content (deleted ones included:
    the caller keeps the live ones, as :func:`~similar_images.db.changes.find_present` does)."""
    out: dict[str, list[int]] = {}
    hashes = list(dict.fromkeys(hashes))
    for start in range(0, len(hashes), 500):
        part = hashes[start:start + 500]
        marks = ",".join("?" * len(part))
        query = f"SELECT sha256, id FROM items WHERE gen=? AND sha256 IS NOT NULL AND sha256 IN ({marks})"
        for sha, item in con.execute(query, (gen, *part)):
            out.setdefault(sha, []).append(item)
    return out


def set_stats(con: sqlite3.Connection, gen: str, rows: Iterable[tuple[int, FileStat]]) -> int:
    """Record ``(id, FileStat)`` for items whose content is known unchanged (a touched file, or
    one a database made from a file list now adopts); inside a transaction. Returns rows changed."""
    before = con.total_changes
    con.executemany("UPDATE items SET size=?, mtime_ns=?, sha256=? WHERE gen=? AND id=?",
                    ((s.size, s.mtime_ns, s.sha256, gen, int(i)) for i, s in rows))
    return con.total_changes - before


def stats_by_id(con: sqlite3.Connection, gen: str, ids) -> list[FileStat | None]:
    """The recorded stats of ``ids`` in their order (None where not recorded): what a
    compaction carries into the new generation."""
    ids = [int(i) for i in ids]
    found: dict[int, FileStat] = {}
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        marks = ",".join("?" * len(part))
        query = (f"SELECT id, size, mtime_ns, sha256 FROM items WHERE gen=? AND sha256 IS NOT NULL "
                 f"AND id IN ({marks})")
        for item, size, mtime_ns, sha in con.execute(query, (gen, *part)):
            found[item] = FileStat(size, mtime_ns, sha)
    return [found.get(i) for i in ids]


def has_stats(con: sqlite3.Connection, gen: str) -> bool:
    """Whether any item of ``gen`` has file stats (one look-up in the hash index)."""
    row = con.execute("SELECT 1 FROM items WHERE gen=? AND sha256 IS NOT NULL LIMIT 1", (gen,)).fetchone()
    return row is not None
