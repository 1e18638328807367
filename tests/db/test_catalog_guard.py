"""The catalog's guard (catalog_guard.py): SQL edits of an item are refused by the catalog
itself, what the program's writers do still works, and a stamped open re-reads every name
(O(N)) only when something could have changed them: after the guard was removed (even if
put back), in a copy, or where the guard cannot be put in."""

from __future__ import annotations

import shutil
import sqlite3
import time

import numpy as np
import pytest
from _corrupt import lift_guard, plant, set_catalog_names
from _index_data import vector_db

from similar_images.db import catalog, database
from similar_images.db.catalog_guard import GUARD, guarded, put_guard
from similar_images.db.changes import add_rows, commit_batch, remove_rows
from similar_images.db.compaction import compact
from similar_images.db.database import Database
from similar_images.db.file_stats import FileStat
from similar_images.db.vectors import load_vectors_manifest
from similar_images.errors import DatabaseError

N, DIM = 300, 16


@pytest.fixture
def db(tmp_path):
    vectors_path, _ = vector_db(tmp_path, N, DIM)
    return vectors_path


@pytest.fixture
def name_reads(monkeypatch):
    """How many times an open re-read the base rows' names."""
    calls = []
    original = database.check_base_names

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(database, "check_base_names", counting)
    return calls


def sql(vectors_path, statement, *args):
    con = sqlite3.connect(catalog.catalog_path(vectors_path))
    try:
        with con:
            return con.execute(statement, args).fetchall()
    finally:
        con.close()


def generation(vectors_path) -> str:
    return load_vectors_manifest(vectors_path)["generation"]


@pytest.mark.parametrize("statement", [
    "UPDATE items SET name='other.jpg', key='other.jpg' WHERE id=3",
    "UPDATE items SET id=9999 WHERE id=3",
    "UPDATE OR REPLACE items SET id=3 WHERE id=4",
    "REPLACE INTO items(gen, id, name, key) VALUES (:gen, 3, 'other.jpg', 'other.jpg')",
    "INSERT OR REPLACE INTO items(gen, id, name, key, sha256) VALUES (:gen, 3, 'v00003.jpg', 'v00003.jpg', 'x')",
    "DELETE FROM items WHERE id=3",
])
def test_sql_edits_of_an_item_are_refused_by_the_catalog_itself(db, statement):
    before = sql(db, "SELECT * FROM items ORDER BY gen, id")
    con = sqlite3.connect(catalog.catalog_path(db))
    with pytest.raises(sqlite3.IntegrityError, match="an item keeps its id and name; remove it and add it again"):
        with con:
            con.execute(statement, {"gen": generation(db)})
    con.close()
    assert sql(db, "SELECT * FROM items ORDER BY gen, id") == before


def test_what_writers_do_still_works_under_the_guard(db, tmp_path):
    add_rows(db, None, np.ones((2, DIM), np.float32), ["a.jpg", "b.jpg"], auto_compact=False)
    remove_rows(db, None, ["v00005.jpg"], auto_compact=False)
    commit_batch(db, None, restamps=[("v00006.jpg", FileStat(10, 20, "ab" * 32))], auto_compact=False)
    old = generation(db)
    compact(db, None)  # a new generation; the old one's rows go (segments first)
    add_rows(db, None, np.ones((1, DIM), np.float32), ["c.jpg"], auto_compact=False)
    compact(db, None)  # and once more: the first generation's rows are gone now
    opened = Database.open(db, fresh=True)
    assert len(opened) == N + 2 and opened.names[-1] == "c.jpg"
    assert sql(db, "SELECT COUNT(*) FROM items WHERE gen=?", old) == [(0,)]
    con = catalog.connect(catalog.catalog_path(db))
    assert guarded(con)  # whole again after the full writes, which insert a generation without its REPLACE check
    con.close()
    with pytest.raises(sqlite3.IntegrityError, match="an item keeps its id and name"):
        sql(db, "REPLACE INTO items(gen, id, name, key) VALUES (?, 0, 'x.jpg', 'x.jpg')", generation(db))


def test_a_stamped_open_reads_the_names_only_when_they_could_have_changed(db, name_reads):
    Database.open(db)
    Database.open(db)
    assert name_reads == []  # the writer stamped the vectors and vouched for the names it inserted
    add_rows(db, None, np.ones((1, DIM), np.float32), ["late.jpg"], auto_compact=False)
    remove_rows(db, None, ["v00001.jpg"], auto_compact=False)
    assert Database.open(db).names[N] == "late.jpg"
    assert name_reads == []  # adds and removes do not cost a re-read
    lift_guard(db)
    Database.open(db)
    Database.open(db)
    assert len(name_reads) == 1  # the guard removed: the next open re-reads them (and puts the guard back)
    add_rows(db, None, np.ones((1, DIM), np.float32), ["later.jpg"], auto_compact=False)
    compact(db, None)  # it re-checks what it re-signs (its own open reads the names) ...
    assert len(name_reads) == 2
    assert Database.open(db).names[N] == "later.jpg"  # N + 2 rows, one removed
    assert len(name_reads) == 2  # ... and vouches for the names it inserted, as it stamps the files it wrote


def test_the_first_open_of_a_database_not_stamped_reads_the_names_and_vouches_for_them(db, name_reads):
    for stamp in db.parent.glob("*.verified.json"):
        stamp.unlink()
    Database.open(db)
    Database.open(db)
    assert len(name_reads) == 1


def put_back(vectors_path):
    con = sqlite3.connect(catalog.catalog_path(vectors_path))
    with con:
        put_guard(con)
    con.close()


def test_names_edited_with_the_guard_removed_and_put_back_are_refused_by_a_stamped_open(db):
    Database.open(db)  # stamped: vectors and names vouched for
    set_catalog_names(db, {0: "v00001.jpg", 1: "v00000.jpg"})  # the guard had to go first
    put_back(db)
    with pytest.raises(DatabaseError, match="names of generation .* do not match the manifest's names_sha256"):
        Database.open(db)


def test_a_writer_that_puts_the_guard_back_vouches_for_nothing_it_did_not_read(db):
    Database.open(db)
    set_catalog_names(db, {0: "v00001.jpg", 1: "v00000.jpg"})
    add_rows(db, None, np.ones((1, DIM), np.float32), ["x.jpg"], auto_compact=False)  # trusted: re-signs nothing
    assert sql(db, "SELECT COUNT(*) FROM sqlite_master WHERE type='trigger'") == [(len(GUARD),)]
    with pytest.raises(DatabaseError, match="do not match the manifest's names_sha256"):
        Database.open(db)


def test_a_same_named_trigger_that_guards_nothing_is_no_guard(db, name_reads):
    Database.open(db)
    lift_guard(db)
    for name in GUARD:  # the names, not the refusals
        sql(db, f"CREATE TRIGGER {name} BEFORE UPDATE OF size ON items BEGIN SELECT 1; END")
    Database.open(db)  # not a guard: names re-read, the real guard put in their place
    Database.open(db)
    assert len(name_reads) == 1
    with pytest.raises(sqlite3.IntegrityError, match="an item keeps its id and name"):
        sql(db, "UPDATE items SET name='x.jpg' WHERE id=3")


def test_a_copy_re_reads_the_names_once(db, tmp_path, name_reads):
    Database.open(db)
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in db.parent.glob("db.npy*"):
        shutil.copy2(path, copy / path.name)  # the stamps too
    Database.open(copy / "db.npy")
    Database.open(copy / "db.npy")
    assert name_reads.count(copy / "db.npy") == 1  # another inode: vouched for once it was read there


def as_format_1(vectors_path) -> None:
    """The catalog as the version before the guard wrote it: format 1, no triggers."""
    lift_guard(vectors_path)
    sql(vectors_path, "UPDATE meta SET value='1' WHERE key='format'")


def test_a_catalog_made_before_the_guard_gets_it_from_its_first_open(db, name_reads):
    as_format_1(db)
    Database.open(db)  # reads the names, puts the guard in, vouches for them
    assert sql(db, "SELECT name FROM sqlite_master WHERE type='trigger' ORDER BY name") == [(n,) for n in sorted(GUARD)]
    assert sql(db, "SELECT value FROM meta WHERE key='format'") == [("2",)]  # an earlier version now refuses it
    Database.open(db)
    assert len(name_reads) == 1
    plant(db, "DELETE FROM tombstones")  # what the guard does not cover is checked elsewhere, as before
    assert len(Database.open(db)) == N


def test_a_writer_puts_the_guard_into_a_format_1_catalog(db):
    as_format_1(db)
    remove_rows(db, None, ["v00002.jpg"], auto_compact=False)
    assert sql(db, "SELECT value FROM meta WHERE key='format'") == [("2",)]
    with pytest.raises(sqlite3.IntegrityError, match="an item keeps its id and name"):
        sql(db, "DELETE FROM items WHERE id=4")


@pytest.mark.parametrize("written", ["3", "x"])
def test_a_catalog_of_a_later_format_is_refused_in_one_line(db, written):
    sql(db, "UPDATE meta SET value=? WHERE key='format'", written)
    with pytest.raises(DatabaseError, match=f"catalog format '{written}', this version reads 1 and 2; nothing was changed"):
        Database.open(db)


def test_an_open_does_not_wait_for_a_writer_to_put_the_guard_in(db, name_reads):
    as_format_1(db)
    writer = sqlite3.connect(catalog.catalog_path(db), isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a writer at work (or a catalog this process may not write)
    try:
        started = time.monotonic()
        Database.open(db)
        Database.open(db)
        assert time.monotonic() - started < 30  # not the catalog's 60 s wait for writers
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert len(name_reads) == 2  # read, not vouched for without the guard
    assert sql(db, "SELECT COUNT(*) FROM sqlite_master WHERE type='trigger'") == [(0,)]
    Database.open(db)  # the writer is gone: this open puts it in
    Database.open(db)
    assert len(name_reads) == 3
