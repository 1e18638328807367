"""Ways to damage a database, as a disk error or a hostile user would: shared by the
corruption tests (test_integrity, test_growing, test_journal, test_cli_verify) and the
matrix that checks `verify` against `open` for every one of them (test_verify_matches_open)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from similar_images.db import catalog, journal
from similar_images.db.catalog_guard import GUARD
from similar_images.db.integrity import read_npy_header
from similar_images.fileio.files import write_json_atomic


def data_offset(path: Path) -> int:
    """Where a ``.npy`` file's float32 data starts."""
    return read_npy_header(path)[2]


def poke(path: Path, at: int, data: bytes) -> None:
    """Overwrite bytes in place."""
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(data)


def edit_json(path: Path, **changes) -> None:
    """Set fields of a JSON file (a manifest); a value of None removes the field."""
    obj = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            obj.pop(key, None)
        else:
            obj[key] = value
    path.write_text(json.dumps(obj))


def swap_rows(path: Path, a: int, b: int) -> None:
    """Swap two rows of a vectors file in place."""
    shape, _, offset = read_npy_header(path)
    row = int(shape[1]) * 4
    with open(path, "r+b") as f:
        f.seek(offset + a * row)
        ra = f.read(row)
        f.seek(offset + b * row)
        rb = f.read(row)
        f.seek(offset + a * row)
        f.write(rb)
        f.seek(offset + b * row)
        f.write(ra)


def plant(vectors_path: Path, sql: str, *args) -> None:
    """Run one statement on the catalog behind the program's back; where the catalog's guard
    refuses it (an item renamed, replaced or deleted), remove the guard first, as a person
    with sqlite3 would have to."""
    con = sqlite3.connect(catalog.catalog_path(vectors_path))
    try:
        with con:
            con.execute(sql, args)
    except sqlite3.IntegrityError as exc:
        if "an item keeps its id and name" not in str(exc):
            raise
        lift_guard(vectors_path)
        with con:
            con.execute(sql, args)
    finally:
        con.close()


def lift_guard(vectors_path: Path) -> None:
    """Drop the catalog's guard triggers (catalog_guard.GUARD)."""
    con = sqlite3.connect(catalog.catalog_path(vectors_path))
    with con:
        for name in GUARD:
            con.execute(f"DROP TRIGGER IF EXISTS {name}")
    con.close()


def set_catalog_names(vectors_path: Path, names: dict[int, str]) -> None:
    """Rename items in the catalog (``id -> name``) without touching any checksum."""
    for item, name in names.items():
        plant(vectors_path, "UPDATE items SET name=?, key=? WHERE id=?", name, name, item)


def plant_stale_journal(path: Path, old_path: Path) -> None:
    """A journal (and its staged copy) that would put the older vectors file ``old_path``
    over ``path``, as if left from a change made before ``path`` was last written."""
    staged = journal.staged_path(path)
    shutil.copy(old_path, staged)
    entry = {"staged": staged.name, "final": path.name, "sha256": journal.sha256_file(staged),
             "before": {"size": 123, "mtime_ns": 1}}
    write_json_atomic(journal.journal_path(path), {"format": journal.JOURNAL_FORMAT, "renames": [entry]})
