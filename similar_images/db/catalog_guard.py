"""The catalog's guard against edits of its items, and the stamp of names checked under it.

Why: an open checks the base rows' names against the manifest's ``names_sha256`` by
reading every one (O(N)). A verification stamp spares an open the same O(N) read of the
vectors file (``integrity.py``), because any write to that file changes its ctime. The
catalog cannot be vouched for that way: every add and remove writes it. So instead the
catalog refuses, by itself, what no writer of this program does to an item (rename,
renumber, replace, delete one by one: the triggers in ``GUARD``; writers only insert
items, update their file stats, and delete whole generations, segments first). A *names
stamp* (``<catalog>.verified.json``) records that generation ``g``'s names matched
``names_sha256`` while the guard stood at schema version ``v``: as long as the generation,
the checksum, the schema version and the file's inode are the same, no SQL statement can
have changed them. Removing the guard changes the schema version, even if it is put back.

What it does not see, like a verification stamp: a byte edit of the file itself, a forged
stamp or schema version. ``verify`` and every open that re-reads (``fresh``, writers, the
first open of a copy) find those.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from similar_images.db.integrity import drop_stamp, stamp_path
from similar_images.errors import DatabaseError
from similar_images.fileio.files import read_json, write_json_atomic

# A catalog with the guard is format 2: an earlier version refuses it in one line ("catalog
# format '2', this version reads 1") instead of tripping on the guard when it drops an old
# generation's items before its segments. Format 1 (no guard) is read, and upgraded by the
# first writer or open that can.
GUARDED_FORMAT = 2
_REFUSAL = "RAISE(ABORT, 'similar-images catalog: an item keeps its id and name; remove it and add it again')"
GUARD = {  # trigger name -> its definition
    "items_keep_their_names": f"BEFORE UPDATE OF gen, id, name, key ON items BEGIN SELECT {_REFUSAL}; END",
    "items_are_not_replaced": "BEFORE INSERT ON items WHEN EXISTS (SELECT 1 FROM segments WHERE gen = new.gen) "
                              "AND EXISTS (SELECT 1 FROM items WHERE gen = new.gen AND id = new.id) "
                              f"BEGIN SELECT {_REFUSAL}; END",
    "items_go_with_their_generation": "BEFORE DELETE ON items WHEN EXISTS (SELECT 1 FROM segments WHERE gen = old.gen) "
                                      f"BEGIN SELECT {_REFUSAL}; END",
}


def _wrong_triggers(con: sqlite3.Connection) -> list[str]:
    """The guard's triggers that are missing or not as ``GUARD`` defines them (a same-named
    trigger that does something else guards nothing)."""
    found = dict(con.execute("SELECT name, sql FROM sqlite_master WHERE type='trigger' AND tbl_name='items'"))
    return [name for name, definition in GUARD.items() if found.get(name) != f"CREATE TRIGGER {name} {definition}"]


def _format(con: sqlite3.Connection) -> str | None:
    row = con.execute("SELECT value FROM meta WHERE key='format'").fetchone()
    return row[0] if row else None


def guarded(con: sqlite3.Connection) -> bool:
    """Whether the whole guard is in place, and the catalog says so (two look-ups)."""
    return not _wrong_triggers(con) and _format(con) == str(GUARDED_FORMAT)


def put_guard(con: sqlite3.Connection) -> None:
    """Create the guard's missing or altered triggers and mark the catalog format 2; a whole
    guard is left alone (the schema version stays)."""
    for name in _wrong_triggers(con):
        con.execute(f"DROP TRIGGER IF EXISTS {name}")
        con.execute(f"CREATE TRIGGER {name} {GUARD[name]}")
    if _format(con) != str(GUARDED_FORMAT):
        con.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (str(GUARDED_FORMAT),))


def put_guard_if_free(con: sqlite3.Connection) -> bool:
    """Put the guard into a catalog made before it, from a reader: only if the catalog can be
    written at once (a read-only folder, or a writer at work, is not waited for: a later open
    tries again). Returns whether the guard is whole now."""
    if guarded(con):
        return True
    patience = con.execute("PRAGMA busy_timeout").fetchone()[0]
    try:
        con.execute("PRAGMA busy_timeout=0")
        con.execute("BEGIN IMMEDIATE")
        put_guard(con)
        con.execute("COMMIT")
    except sqlite3.Error:
        if con.in_transaction:
            con.execute("ROLLBACK")
    finally:
        con.execute(f"PRAGMA busy_timeout={int(patience)}")
    return guarded(con)


@contextlib.contextmanager
def inserting_a_new_generation(con: sqlite3.Connection) -> Iterator[None]:
    """Inside the caller's transaction: the guard's per-row REPLACE check is off while a new
    generation's items are inserted (none of them exists yet to be replaced, and the check
    costs as much again as the insert at millions of rows), on again before the commit."""
    con.execute("DROP TRIGGER IF EXISTS items_are_not_replaced")
    yield
    con.execute(f"CREATE TRIGGER items_are_not_replaced {GUARD['items_are_not_replaced']}")


def names_state(con: sqlite3.Connection, catalog_file: Path, gen: str, names_sha256: str) -> dict | None:
    """What a names stamp records of the catalog now, or None where the guard is missing
    (then only re-reading every name tells that they are unchanged)."""
    if not guarded(con):
        return None
    version = con.execute("PRAGMA schema_version").fetchone()[0]
    return {"generation": gen, "names_sha256": names_sha256, "schema_version": version,
            "inode": catalog_file.stat().st_ino}


def names_vouched(catalog_file: Path, state: dict | None) -> bool:
    """Whether a names stamp says these names were checked in this very state."""
    if state is None or not stamp_path(catalog_file).exists():
        return False
    try:
        return read_json(stamp_path(catalog_file)) == {"names": state}
    except (DatabaseError, OSError):
        return False


def vouch_for_names(catalog_file: Path, state: dict | None) -> None:
    """Record that the names were checked in ``state`` (nothing where the guard is missing,
    or the folder read-only: the next open re-reads them)."""
    if state is None:
        drop_stamp(catalog_file)
        return
    with contextlib.suppress(OSError):
        write_json_atomic(stamp_path(catalog_file), {"names": state})
