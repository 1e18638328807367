"""journal.py: a checked journal (stale, foreign, tampered and malformed journals are refused and
named), clean-up of dead writers' leftovers, and disk-full failures that change nothing."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from _corrupt import plant_stale_journal as stale_journal
from _index_data import vector_db

from similar_images.db import journal
from similar_images.db.build import build_index_files
from similar_images.db.changes import add_rows, remove_rows
from similar_images.db.compaction import compact
from similar_images.db.database import Database
from similar_images.db.vectors import save_vectors
from similar_images.errors import DatabaseError
from similar_images.fileio.files import manifest_path

N, DIM = 80, 8


def small_db(folder: Path, n: int = N) -> Path:
    path, _ = vector_db(folder, n, DIM)
    return path


def test_the_journal_records_checksums_and_fingerprints(tmp_path, monkeypatch):
    path = small_db(tmp_path)
    seen = {}
    real = journal.roll_forward

    def capture(journal_file, *rest):
        if Path(journal_file).exists():
            seen.update(json.loads(Path(journal_file).read_text()))
        return real(journal_file, *rest)

    remove_rows(path, None, ["v00000.jpg"], auto_compact=False)  # a tombstone: no journal
    monkeypatch.setattr(journal, "roll_forward", capture)
    compact(path)  # a full write: through the journal
    entries = seen["renames"]
    assert seen["format"] == journal.JOURNAL_FORMAT and [e["final"] for e in entries] == ["db.npy", "db.npy.manifest.json"]
    assert entries[0]["sha256"] == json.loads(manifest_path(path).read_text())["vectors_sha256"]
    assert all(e["before"]["size"] > 0 for e in entries)


def plant_stale_journal(tmp_path: Path) -> tuple[Path, bytes]:
    """The attack from the issue: a journal (and its staged copy) of an old 60-row state,
    planted beside a good 80-row database."""
    old = tmp_path / "old"
    old.mkdir()
    path = small_db(tmp_path, N)
    stale_journal(path, small_db(old, 60))
    return path, path.read_bytes()


def test_a_stale_journal_is_refused_and_nothing_good_is_replaced(tmp_path):
    path, good = plant_stale_journal(tmp_path)
    with pytest.raises(DatabaseError, match=r"db\.npy\.journal\.json: refused: a stale or foreign journal"):
        Database.open(path)
    assert path.read_bytes() == good
    with pytest.raises(DatabaseError, match="stale or foreign journal"):  # writers refuse too
        remove_rows(path, None, ["v00001.jpg"])
    assert path.read_bytes() == good


def test_a_staged_file_that_does_not_match_its_checksum_is_refused(tmp_path, monkeypatch):
    path = small_db(tmp_path)
    remove_rows(path, None, ["v00000.jpg"], auto_compact=False)
    monkeypatch.setattr(journal, "roll_forward", lambda *a: False)  # "kill" right after the commit point
    compact(path)
    monkeypatch.undo()
    staged = next(tmp_path.glob(".db.npy.*.staged"))
    with open(staged, "r+b") as f:  # damaged while the change waited to be finished
        f.seek(200)
        f.write(b"\x00\x01")
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match="does not match the checksum the journal recorded"):
        Database.open(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("body, message", [
    ('{"format": 2, "renames": [["a", "b"]]}', "malformed entry 0 in field 'renames'"),
    ('{"format": 2, "renames": 5}', "field 'renames' must be a list"),
    ('{"format": 1, "renames": []}', "field 'format' is 1"),
    ('{"renames": [', "unreadable JSON"),
    ('{"format": 2, "renames": [{"staged": "../.db.npy.1.staged", "final": "db.npy", "sha256": "0", "before": null}]}',
     "entry 0 field 'staged' names the file '../.db.npy.1.staged', which is not a plain file name"),
    ('{"format": 2, "renames": [{"staged": "../v/.keep.txt.1.staged", "final": "../v/keep.txt", "sha256": "0", '
     '"before": null}]}', "entry 0 field 'staged' names the file '../v/.keep.txt.1.staged'"),
    ('{"format": 2, "renames": [{"staged": "db.npy.manifest.json", "final": "db.npy", "sha256": "0", "before": null}]}',
     "not a staged copy"),
])
def test_malformed_journals_name_the_file_and_field(tmp_path, body, message):
    path = small_db(tmp_path)
    journal.journal_path(path).write_text(body)
    with pytest.raises(DatabaseError, match=message) as info:
        Database.open(path)
    assert str(info.value).startswith(str(journal.journal_path(path)))


def test_after_the_commit_point_the_next_open_finishes_the_change(tmp_path, monkeypatch):
    path = small_db(tmp_path)
    remove_rows(path, None, ["v00000.jpg"], auto_compact=False)
    monkeypatch.setattr(journal, "roll_forward", lambda *a: False)
    compact(path)
    monkeypatch.undo()
    assert journal.journal_path(path).exists()
    db = Database.open(path)
    assert len(db) == N - 1 and not journal.journal_path(path).exists()


# --- leftovers ---------------------------------------------------------------------------------


def test_leftovers_of_dead_writers_are_cleaned_by_the_next_writer(tmp_path):
    path = small_db(tmp_path)
    leftovers = [tmp_path / f".{path.name}.journal.json.x1y2.tmp", tmp_path / f".{path.name}.dead1234.staged",
                 tmp_path / f".{path.name}.manifest.json.dead1234.staged"]
    for leftover in leftovers:
        leftover.write_bytes(b"x" * 100)
    unrelated = tmp_path / ".other.npy.dead.staged"
    unrelated.write_bytes(b"x")
    add_rows(path, None, np.ones((1, DIM), np.float32), ["new.jpg"])
    assert not any(p.exists() for p in leftovers) and unrelated.exists()


def test_build_cleans_index_sized_staged_files_of_a_killed_build(tmp_path):
    path = small_db(tmp_path)
    index = tmp_path / "db.faiss.index"
    dead = tmp_path / ".db.faiss.index.0badc0de.staged"
    dead.write_bytes(b"\0" * 4096)
    seen = []
    real = journal.Stage.file

    def file(stage, final):  # the leftover is gone before this build stages anything
        seen.append(dead.exists())
        return real(stage, final)

    journal.Stage.file = file
    try:
        build_index_files(path, index, index_type="flat", show_progress=False, eval_queries=5)
    finally:
        journal.Stage.file = real
    assert seen and not any(seen) and not dead.exists()


# --- disk full -----------------------------------------------------------------------------------


def enospc_on_write(monkeypatch, when: str):
    """Make the n-th kind of write fail with ENOSPC, as a full disk does."""
    import similar_images.db.journal as journal_mod
    import similar_images.db.vectors as vectors_mod

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if when == "vectors":
        monkeypatch.setattr(vectors_mod.HashingWriter, "write", lambda self, data: full())
    elif when == "manifest":
        monkeypatch.setattr(vectors_mod, "write_json_to", full)
    elif when == "journal":
        monkeypatch.setattr(journal_mod, "write_json_atomic", full)


@pytest.mark.parametrize("when, names", [("vectors", "db.npy"), ("manifest", "db.npy"), ("journal", "db.npy.journal.json")])
def test_disk_full_names_the_file_says_nothing_changed_and_leaves_nothing(tmp_path, monkeypatch, when, names):
    path = small_db(tmp_path)
    before = path.read_bytes(), manifest_path(path).read_bytes()
    enospc_on_write(monkeypatch, when)
    with pytest.raises(DatabaseError) as info:
        save_vectors(path, np.ones((3, DIM), np.float32), {"model": {"name": "synthetic"}, "names": ["a", "b", "c"]})
    message = str(info.value)
    assert "disk full" in message and "nothing was changed" in message and "\n" not in message
    assert message.split(":")[0].endswith(names) or names in message
    monkeypatch.undo()
    assert (path.read_bytes(), manifest_path(path).read_bytes()) == before
    assert not list(tmp_path.glob(".*.staged")) and not list(tmp_path.glob(".*.tmp"))
    assert len(Database.open(path)) == N


def test_disk_full_while_writing_the_index_of_a_compaction(tmp_path, monkeypatch):
    from similar_images.db import index as ix

    path = small_db(tmp_path)
    index = tmp_path / "db.faiss.index"
    build_index_files(path, index, index_type="flat", show_progress=False, eval_queries=5)
    add_rows(path, index, np.ones((1, DIM), np.float32), ["new.jpg"], auto_compact=False)
    monkeypatch.setattr(ix, "write_index_to", lambda *_: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    with pytest.raises(DatabaseError, match=r"db\.faiss\.index: disk full while writing a change of db\.npy; "
                                            "nothing was changed"):
        compact(path, index)
    monkeypatch.undo()
    db = Database.open(path, index)
    assert len(db) == N + 1 and len(db.base_rows) == N and not list(tmp_path.glob(".*.staged"))


def test_a_reader_thread_waits_for_a_writer_thread_of_the_same_process(tmp_path):
    import threading

    path = small_db(tmp_path)
    opened = []
    with journal.writer_lock(path):
        assert journal.holds_lock(path)
        reader = threading.Thread(target=lambda: opened.append(len(Database.open(path))))
        reader.start()
        reader.join(0.3)
        assert reader.is_alive() and opened == []  # held back by the shared lock, not let through
        with journal.reader_lock(path):  # the writer's own thread is not held back by itself
            pass
    reader.join(10)
    assert opened == [N] and not journal.holds_lock(path)


def test_an_index_in_another_folder_is_finished_by_an_open_that_names_it(tmp_path, monkeypatch):
    path = small_db(tmp_path)
    elsewhere = tmp_path / "indexes"
    elsewhere.mkdir()
    index = elsewhere / "db.faiss.index"
    build_index_files(path, index, index_type="flat", show_progress=False, eval_queries=5)
    remove_rows(path, index, ["v00000.jpg"], auto_compact=False)
    monkeypatch.setattr(journal, "roll_forward", lambda *a, **k: False)  # killed right after the commit point
    compact(path, index)
    monkeypatch.undo()
    with pytest.raises(DatabaseError, match=r"entry \d field 'staged' names the file 'indexes/"):
        Database.open(path)  # without its index, the open cannot tell that path from a planted one
    db = Database.open(path, index)
    assert len(db) == db.id_count == db.index.ntotal == N - 1 and not journal.journal_path(path).exists()
