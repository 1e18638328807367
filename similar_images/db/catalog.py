"""The catalog: one SQLite file beside the vectors (``V.catalog.sqlite``) that holds the
items, the segments added since the last full write, and the deletions (tombstones).

Why SQLite: a transaction is the commit of an add or a remove (atomic under kill -9 and
power loss), WAL lets readers see the last committed state while a writer works, and a
name is found through an index instead of a Python list of every name.

Every row belongs to a *generation*, the token the vectors manifest names
(``manifest["generation"]``). A full write (extraction, compaction, migration) inserts a
new generation's rows first, invisible to readers, then commits the new manifest through
the journal; the rows of other generations are leftovers that the next writer deletes.
So the catalog file itself is never replaced, and a reader that read generation ``g``
from the manifest sees exactly ``g``'s rows.

Tables (``gen`` everywhere is the generation token):

* ``items(gen, id, name, key, size, mtime_ns, sha256)``: ids are stable within a
  generation: the base file's rows are ids ``0..n-1``, each added segment's rows follow;
* ``segments(gen, seq, file, first_id, rows, bytes, sha256)``: ``seq`` 0 is the base
  vectors file, later ones are added segments (immutable ``.npy`` files);
* ``tombstones(gen, id)``: deleted ids, filtered at search time, dropped at compaction.

Files are named only by bare names inside the database folder (:func:`check_bare_name`,
on every read), so a planted row cannot reach outside it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from similar_images.db.catalog_guard import GUARDED_FORMAT, put_guard
from similar_images.db.file_stats import SHA_INDEX
from similar_images.errors import DatabaseError

log = logging.getLogger(__name__)

CATALOG_SUFFIX = ".catalog.sqlite"
CATALOG_FORMAT = GUARDED_FORMAT  # what this version writes; it reads 1 too (catalog_guard.py)
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items(gen TEXT NOT NULL, id INTEGER NOT NULL, name TEXT NOT NULL, key TEXT NOT NULL,
    size INTEGER, mtime_ns INTEGER, sha256 TEXT, PRIMARY KEY (gen, id));
CREATE INDEX IF NOT EXISTS items_by_key ON items(gen, key);
CREATE TABLE IF NOT EXISTS segments(gen TEXT NOT NULL, seq INTEGER NOT NULL, file TEXT NOT NULL,
    first_id INTEGER NOT NULL, rows INTEGER NOT NULL, bytes INTEGER NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (gen, seq));
CREATE TABLE IF NOT EXISTS tombstones(gen TEXT NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (gen, id));
""" + SHA_INDEX + ";\n"
SEGMENT_MARK = ".seg-"
# How long a writer waits for another writer's transaction (readers never wait in WAL mode).
BUSY_TIMEOUT_MS = 60_000


def catalog_path(vectors_path: str | os.PathLike) -> Path:
    return Path(str(vectors_path) + CATALOG_SUFFIX)


def check_bare_name(name, where: str) -> str:
    """``name`` if it is a plain file name inside the database folder, else a one-line refusal."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or "\x00" in name or os.path.isabs(name)):
        raise DatabaseError(f"{where} names the file {name!r}, which is not a plain file name inside the database "
                            "folder; refused, nothing was read or changed")
    return name


@dataclass(frozen=True)
class Segment:
    """One vectors file of a generation: ``rows`` rows with ids ``first_id..first_id+rows-1``."""

    seq: int
    file: str
    first_id: int
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Snapshot:
    """What a reader needs of one generation, read in one transaction."""

    segments: tuple[Segment, ...]
    deleted: np.ndarray  # (t,) int64 sorted tombstoned ids

    @property
    def id_count(self) -> int:
        return sum(s.rows for s in self.segments)


def connect(path: Path, *, create: bool = False) -> sqlite3.Connection:
    """A connection in WAL mode (readers see the last commit while a writer works)."""
    if not create and not path.exists():
        raise DatabaseError(f"{path}: catalog not found; run `similar-images verify` (or migrate an older database "
                            "with `similar-images migrate`)")
    try:
        con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if create:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)
            if con.execute("SELECT 1 FROM meta WHERE key='format'").fetchone() is None:  # a new catalog
                put_guard(con)
        _check_format(con, path)
        return con
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{path}: not a readable catalog ({exc}); nothing was changed") from None


def _check_format(con: sqlite3.Connection, path: Path) -> None:
    try:
        row = con.execute("SELECT value FROM meta WHERE key='format'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{path}: not a catalog of this program ({exc})") from None
    if row is None or row[0] not in ("1", str(CATALOG_FORMAT)):
        raise DatabaseError(f"{path}: catalog format {row[0] if row else None!r}, this version reads 1 and "
                            f"{CATALOG_FORMAT}; nothing was changed")


@contextlib.contextmanager
def transaction(con: sqlite3.Connection, path: Path) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``): all of it is committed, or none."""
    try:
        con.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise DatabaseError(f"{path}: cannot start a change ({exc}); is another writer stuck?") from None
    try:
        put_guard(con)  # a catalog made before the guard (catalog_guard.py), or one whose guard was removed
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    try:
        con.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        con.execute("ROLLBACK")
        raise DatabaseError(f"{path}: the change could not be committed ({exc}); nothing was changed") from None
    # Copy the committed pages into the main file now (readers mid-read are not waited for),
    # so a database folder copied with `cp` carries its last change without the -wal file.
    con.execute("PRAGMA wal_checkpoint(PASSIVE)")


def read_snapshot(con: sqlite3.Connection, path: Path, gen: str) -> Snapshot:
    """Segments and tombstones of generation ``gen``, read in one transaction, checked."""
    con.execute("BEGIN")
    try:
        rows = con.execute("SELECT seq, file, first_id, rows, bytes, sha256 FROM segments WHERE gen=? ORDER BY seq",
                           (gen,)).fetchall()
        deleted = np.array([r[0] for r in con.execute("SELECT id FROM tombstones WHERE gen=? ORDER BY id", (gen,))],
                           dtype=np.int64)
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{path}: not a readable catalog ({exc})") from None
    finally:
        con.execute("COMMIT")
    segments = tuple(Segment(*r) for r in rows)
    check_segments(path, gen, segments)
    total = sum(s.rows for s in segments)
    if len(deleted) and (deleted[0] < 0 or deleted[-1] >= total):
        raise DatabaseError(f"{path}: a tombstone names id {int(deleted[-1] if deleted[-1] >= total else deleted[0])}, "
                            f"outside the {total} ids of its generation")
    return Snapshot(segments, deleted)


def check_segments(path: Path, gen: str, segments: tuple[Segment, ...]) -> None:
    """Segments start at 0, follow each other without gaps, and name bare files."""
    if not segments or segments[0].seq != 0:
        raise DatabaseError(f"{path}: generation {gen} has no base segment (seq 0); run `similar-images verify`")
    expected = 0
    for s in segments:
        check_bare_name(s.file, f"{path}: segment {s.seq}")
        if s.first_id != expected or s.rows < 0:
            raise DatabaseError(f"{path}: segment {s.seq} ({s.file}) starts at id {s.first_id}, expected {expected}")
        expected += s.rows


# --- items ---------------------------------------------------------------------------


def names_by_id(con: sqlite3.Connection, gen: str, ids: Iterable[int]) -> list[str | None]:
    """The names of ``ids`` (None for an id the generation does not hold)."""
    ids = [int(i) for i in ids]
    found: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        marks = ",".join("?" * len(part))
        found.update(con.execute(f"SELECT id, name FROM items WHERE gen=? AND id IN ({marks})", (gen, *part)))
    return [found.get(i) for i in ids]


def iter_names(con: sqlite3.Connection, gen: str, start: int = 0, stop: int | None = None) -> Iterator[str]:
    """Names in id order, ``start <= id < stop``."""
    stop = (1 << 62) if stop is None else stop
    for (name,) in con.execute("SELECT name FROM items WHERE gen=? AND id>=? AND id<? ORDER BY id", (gen, start, stop)):
        yield name


def item_count(con: sqlite3.Connection, gen: str) -> int:
    """Items of generation ``gen`` that are not deleted (two index look-ups, whatever N)."""
    top = con.execute("SELECT MAX(id) FROM items WHERE gen=?", (gen,)).fetchone()[0]
    deleted = con.execute("SELECT COUNT(*) FROM tombstones WHERE gen=?", (gen,)).fetchone()[0]
    return (top + 1 if top is not None else 0) - deleted


def ids_for_keys(con: sqlite3.Connection, gen: str, keys: Iterable[str]) -> dict[str, list[int]]:
    """``key -> ids`` of the items stored under each of ``keys`` (tombstoned ones included)."""
    out: dict[str, list[int]] = {}
    keys = list(dict.fromkeys(keys))
    for start in range(0, len(keys), 500):
        part = keys[start:start + 500]
        marks = ",".join("?" * len(part))
        for key, item in con.execute(f"SELECT key, id FROM items WHERE gen=? AND key IN ({marks})", (gen, *part)):
            out.setdefault(key, []).append(item)
    return out


def insert_items(con: sqlite3.Connection, gen: str, first_id: int, names: Iterable[str], keys: Iterable[str],
                 stats: Iterable | None = None) -> int:
    """Insert items ``first_id, first_id + 1, ...`` (inside a transaction); returns how many.

    ``stats``, aligned with ``names``: each file's ``(size, mtime_ns, sha256)`` or None
    (``file_stats.py``); without it the columns stay NULL."""
    before = con.total_changes
    if stats is None:
        rows = ((gen, first_id + i, name, key) for i, (name, key) in enumerate(zip(names, keys)))
        con.executemany("INSERT INTO items(gen, id, name, key) VALUES (?, ?, ?, ?)", rows)
    else:
        rows = ((gen, first_id + i, name, key, *(stat or (None, None, None)))
                for i, (name, key, stat) in enumerate(zip(names, keys, stats, strict=True)))
        con.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    return con.total_changes - before


def insert_segment(con: sqlite3.Connection, gen: str, segment: Segment) -> None:
    con.execute("INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?, ?)",
                (gen, segment.seq, segment.file, segment.first_id, segment.rows, segment.bytes, segment.sha256))


def insert_tombstones(con: sqlite3.Connection, gen: str, ids: Iterable[int]) -> None:
    con.executemany("INSERT OR IGNORE INTO tombstones VALUES (?, ?)", ((gen, int(i)) for i in ids))


def drop_other_generations(con: sqlite3.Connection, keep: tuple[str, ...]) -> int:
    """Delete the rows of every generation not in ``keep`` (leftovers of full writes); returns rows deleted."""
    before = con.total_changes
    marks = ",".join("?" * len(keep))
    for table in ("segments", "items", "tombstones"):  # segments first: the guard lets items go only then
        con.execute(f"DELETE FROM {table} WHERE gen NOT IN ({marks})", keep)
    return con.total_changes - before


def named_files(con: sqlite3.Connection, gen: str) -> set[str]:
    """The segment files generation ``gen`` names (other files are a dead writer's, or an
    earlier generation's: no reader opens them after the manifest moved on)."""
    return {r[0] for r in con.execute("SELECT file FROM segments WHERE gen=?", (gen,))}


def item_key(rule: str, name: str) -> str:
    """The form under which a name is stored and looked up: texts as they are; paths
    normalised (``a//b.jpg`` and ``./a/b.jpg`` are one file), relative to the image folder."""
    return name if rule == "text" else os.path.normcase(os.path.normpath(name))


def new_segment_path(vectors_path: Path) -> Path:
    return vectors_path.parent / f"{vectors_path.name}{SEGMENT_MARK}{secrets.token_hex(6)}.npy"


def remove_unnamed_segments(vectors_path: Path, con: sqlite3.Connection, gen: str) -> int:
    """Delete segment files of this database that generation ``gen`` does not name (call
    under the writers' lock, so no writer is between writing a segment and naming it)."""
    named = named_files(con, gen)
    gone = 0
    for path in vectors_path.parent.glob(f"{vectors_path.name}{SEGMENT_MARK}*.npy"):
        if path.name not in named:
            path.unlink(missing_ok=True)
            Path(str(path) + ".verified.json").unlink(missing_ok=True)  # its stamp, if any
            gone += 1
    if gone:
        log.info("removed %d segment file(s) of an earlier generation or an interrupted writer", gone)
    return gone
