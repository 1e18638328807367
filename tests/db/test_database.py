"""database.py, build.py, update.py, journal.py: verified open, atomic add/remove under kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from _corrupt import plant
from _index_data import copy_database, indexed_database, vector_db
from _waiting import patience

from similar_images.db import journal
from similar_images.db.build import build_index_files
from similar_images.db.changes import add_rows, remove_rows
from similar_images.db.compaction import compact
from similar_images.db.database import Database, default_index_path
from similar_images.db.vectors import save_vectors
from similar_images.errors import DatabaseError
from similar_images.evaluation.synthetic import clustered_vectors
from similar_images.fileio.files import manifest_path

N, DIM = 1200, 32


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Built once: a vectors file with an ivfpq index beside it."""
    return indexed_database(tmp_path_factory.mktemp("template"), N, DIM, eval_queries=20)


@pytest.fixture
def db_files(tmp_path, template):
    """A fresh copy of the template database: (vectors path, index path, vectors)."""
    folder, vectors = template
    return (*copy_database(folder, tmp_path), vectors)


def rewrite_manifest(path: Path, **changes) -> None:
    manifest = json.loads(manifest_path(path).read_text())
    manifest.update(changes)
    manifest_path(path).write_text(json.dumps(manifest))


def test_default_index_path_follows_the_readme_names():
    assert default_index_path("ms_coco_file_list.txt.saved_predictions.npy") == Path("ms_coco_file_list.faiss.index")
    assert default_index_path("d/my.npy") == Path("d/my.faiss.index")


def test_build_writes_index_and_manifest_and_refuses_to_overwrite(db_files):
    vectors_path, index_path, _ = db_files
    manifest = json.loads(manifest_path(index_path).read_text())
    assert manifest["kind"] == "index" and manifest["count"] == N and manifest["dimension"] == DIM
    assert manifest["index_bytes"] == index_path.stat().st_size
    assert manifest["recall"]["recall_at_10"] >= 0.95 and manifest["build_seconds"] >= 0
    assert "lists instead of 100" in manifest["note"]  # 1,200 vectors: fewer lists, said so
    with pytest.raises(FileExistsError, match="already exists; use --force"):
        build_index_files(vectors_path, index_path, show_progress=False)
    build_index_files(vectors_path, index_path, index_type="flat", force=True, show_progress=False)
    assert Database.open(vectors_path, index_path).index_manifest["index_type"] == "flat"


def test_build_checks_the_dimension(db_files):
    vectors_path, index_path, _ = db_files
    with pytest.raises(ValueError, match=r"holds 32-dimensional vectors \(.*\), not 4096: use -d 32"):
        build_index_files(vectors_path, index_path, dimension=4096, force=True, show_progress=False)


def test_open_refuses_an_index_of_another_dimension(tmp_path, db_files):
    vectors_path, index_path, _ = db_files
    save_vectors(vectors_path, clustered_vectors(N, 64), {"model": {"name": "synthetic"},
                                                          "names": [f"v{i}" for i in range(N)]})
    with pytest.raises(DatabaseError, match="index dimension 32 != vectors dimension 64"):
        Database.open(vectors_path, index_path)


def test_open_refuses_names_and_vectors_of_different_counts(db_files):
    vectors_path, _, _ = db_files
    plant(vectors_path, "DELETE FROM items WHERE id=?", N - 1)
    with pytest.raises(DatabaseError, match=f"names items up to id {N - 2}, its segments hold {N} rows"):
        Database.open(vectors_path)
    rewrite_manifest(vectors_path, count=N - 1)
    with pytest.raises(DatabaseError, match=f"db.npy: .*{N - 1}"):
        Database.open(vectors_path)


def test_open_refuses_an_index_built_for_another_model(db_files):
    vectors_path, index_path, _ = db_files
    rewrite_manifest(vectors_path, model={"name": "synthetic", "weights": "imagenet", "dim": DIM})
    with pytest.raises(DatabaseError, match=r"another model .*weights 'none\(seed=0\)' vs 'imagenet'"):
        Database.open(vectors_path, index_path)


def test_open_refuses_an_index_older_than_the_vectors(db_files):
    vectors_path, index_path, vectors = db_files
    names = list(Database.open(vectors_path).names)
    save_vectors(vectors_path, vectors[::-1], {"model": {"name": "synthetic", "weights": "none(seed=0)", "dim": DIM},
                                               "names": names})
    with pytest.raises(DatabaseError, match="the vectors changed since the index was built"):
        Database.open(vectors_path, index_path)


def test_open_refuses_a_damaged_or_unexplained_index(db_files):
    vectors_path, index_path, _ = db_files
    data = bytearray(index_path.read_bytes())
    data[-10] ^= 0xFF
    index_path.write_bytes(bytes(data))
    with pytest.raises(DatabaseError, match="do not match the checksum"):
        Database.open(vectors_path, index_path)
    manifest_path(index_path).unlink()
    with pytest.raises(DatabaseError, match="index manifest not found; rebuild"):
        Database.open(vectors_path, index_path)
    with pytest.raises(DatabaseError, match="index file not found"):
        Database.open(vectors_path, index_path.with_name("none.index"))


def test_deep_verify_hashes_the_vectors(db_files):
    vectors_path, index_path, _ = db_files
    db = Database.open(vectors_path, index_path)
    db.verify(deep=True)
    with open(vectors_path, "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\x00\x00\x80\x7f")
    with pytest.raises(DatabaseError, match="do not match the checksum"):
        Database.open(vectors_path, index_path).verify(deep=True)


def test_add_appends_encodes_and_does_not_duplicate(db_files):
    vectors_path, index_path, vectors = db_files
    new = clustered_vectors(5, DIM, seed=42)
    result = add_rows(vectors_path, index_path, new, ["a.jpg", "b.jpg", "c.jpg", "a.jpg", "d.jpg"])
    assert result.added == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"] and result.already_present == ["a.jpg"]
    again = add_rows(vectors_path, index_path, new[:2], ["./a.jpg", "e.jpg"])
    assert again.added == ["e.jpg"] and again.already_present == ["./a.jpg"]
    db = Database.open(vectors_path, index_path)
    db.verify(deep=True)
    assert len(db) == N + 5 and db.index.ntotal == N + 5 and db.names[-5:] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    np.testing.assert_array_equal(db.vectors[:N], vectors)
    np.testing.assert_array_equal(db.vectors[N + 4], new[1])  # e.jpg, the added rows' own segments


def test_add_refuses_vectors_of_another_dimension(db_files):
    vectors_path, index_path, _ = db_files
    with pytest.raises(ValueError, match="dimension 16, the database 32"):
        add_rows(vectors_path, index_path, np.ones((1, 16), np.float32), ["x.jpg"])


def test_remove_deletes_rows_and_keeps_everything_consistent(db_files):
    vectors_path, index_path, vectors = db_files
    removed = remove_rows(vectors_path, index_path, ["v00003.jpg", "v00010.jpg"])
    assert removed == ["v00003.jpg", "v00010.jpg"]
    db = Database.open(vectors_path, index_path)
    db.verify(deep=True)
    live = [db.names[i] for i in db.live_ids()]
    assert len(db) == len(live) == N - 2 and "v00003.jpg" not in live and db.names[4] == "v00004.jpg"
    np.testing.assert_array_equal(db.vectors[4], vectors[4])  # ids do not shift until compaction
    compact(vectors_path, index_path)
    db = Database.open(vectors_path, index_path)
    assert len(db) == db.id_count == N - 2 and db.names[3] == "v00004.jpg"
    np.testing.assert_array_equal(db.vectors[3], vectors[4])


def test_remove_of_an_unknown_name_changes_nothing(db_files):
    vectors_path, index_path, _ = db_files
    before = manifest_path(vectors_path).read_bytes()
    with pytest.raises(ValueError, match="not in the database: nope.jpg; nothing was removed"):
        remove_rows(vectors_path, index_path, ["v00001.jpg", "nope.jpg"])
    assert manifest_path(vectors_path).read_bytes() == before
    assert remove_rows(vectors_path, index_path, ["v00001.jpg", "nope.jpg"], missing_ok=True) == ["v00001.jpg"]


def test_remove_refuses_to_empty_the_database(tmp_path):
    vectors_path, _ = vector_db(tmp_path, 3, DIM)
    with pytest.raises(ValueError, match="remove every item"):
        remove_rows(vectors_path, None, ["v00000.jpg", "v00001.jpg", "v00002.jpg"])


def test_roll_forward_finishes_a_committed_change(tmp_path):
    final, staged = tmp_path / "a.txt", tmp_path / ".a.txt.1234.staged"
    final.write_text("old")
    staged.write_text("new")
    journal.commit(journal.journal_path(tmp_path / "a"), [(staged, final)])
    assert final.read_text() == "new" and not journal.journal_path(tmp_path / "a").exists()
    # A journal whose renames were partly done (the staged file is gone) finishes quietly.
    entry = {"staged": staged.name, "final": final.name, "sha256": "0" * 64, "before": None}
    journal.journal_path(tmp_path / "b").write_text(json.dumps({"format": 2, "renames": [entry]}))
    assert journal.roll_forward(journal.journal_path(tmp_path / "b"))
    assert final.read_text() == "new"


# --- kill -9 ------------------------------------------------------------------------------

KILLER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from similar_images.db import index as ix
    from similar_images.fileio import files
    from similar_images.db.changes import add_rows, remove_rows
    from similar_images.db.compaction import compact

    point, op, vectors_path, index_path = sys.argv[1:5]
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    if point.startswith("replace"):  # kill just before the n-th os.replace of the change
        n, real, calls = int(point[len("replace"):]), os.replace, [0]
        def replace(a, b):
            if str(b).endswith(".verified.json"):  # a verification stamp: not a step of the change
                return real(a, b)
            if calls[0] == n:
                die()
            calls[0] += 1
            real(a, b)
        os.replace = replace
    elif point == "vectors":  # kill half-way through writing the new vectors file
        real_write, calls = files.HashingWriter.write, [0]
        def write(self, data):
            calls[0] += 1
            if calls[0] == 2:
                die()
            return real_write(self, data)
        files.HashingWriter.write = write
    elif point == "index":  # kill while the index is written
        ix.write_index_to = lambda index, path: (open(path, "wb").write(b"part"), die())
    elif point == "unlink":  # kill after every rename, before the journal is deleted
        import pathlib
        real_unlink = pathlib.Path.unlink
        def unlink(self, *a, **k):
            if self.name.endswith(".journal.json"):
                die()
            return real_unlink(self, *a, **k)
        pathlib.Path.unlink = unlink
    if op == "compact":
        compact(vectors_path, index_path)
    elif op == "add":
        new = np.random.default_rng(5).random((3, int(sys.argv[5])), dtype=np.float32)
        add_rows(vectors_path, index_path, new, ["new0.jpg", "new1.jpg", "new2.jpg"])
    else:
        remove_rows(vectors_path, index_path, ["v00000.jpg", "v00001.jpg"])
    print("finished")
""")

# os.replace calls of one change: 0 = the journal (the commit point), 1-4 = the renames.
BEFORE_COMMIT = ["vectors", "index", "replace0"]
AFTER_COMMIT = ["replace1", "replace2", "replace3", "replace4", "unlink"]


def run_killed(tmp_path, point, op, vectors_path, index_path) -> subprocess.CompletedProcess:
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    return subprocess.run([sys.executable, str(script), point, op, str(vectors_path), str(index_path), str(DIM)],
                          capture_output=True, text=True, timeout=patience(300))


def assert_consistent(vectors_path, index_path) -> Database:
    db = Database.open(vectors_path, index_path)
    db.verify(deep=True)
    assert db.index.ntotal == db.id_count == len(db.names) == db.vectors.shape[0]
    return db


@pytest.mark.parametrize("point", BEFORE_COMMIT + AFTER_COMMIT)
def test_kill_9_during_a_compaction_leaves_the_old_or_the_new_generation(tmp_path, db_files, point):
    """Compaction is the full write of a growing database (adds and removes are in test_growing.py)."""
    vectors_path, index_path, _ = db_files
    new = np.random.default_rng(5).random((3, DIM), dtype=np.float32)
    add_rows(vectors_path, index_path, new, ["new0.jpg", "new1.jpg", "new2.jpg"], auto_compact=False)
    remove_rows(vectors_path, index_path, ["v00000.jpg", "v00001.jpg"], auto_compact=False)
    proc = run_killed(tmp_path, point, "compact", vectors_path, index_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    db = assert_consistent(vectors_path, index_path)
    changed = point in AFTER_COMMIT
    assert len(db) == N + 1 and "v00000.jpg" not in [db.names[i] for i in db.live_ids()]
    assert db.id_count == (N + 1 if changed else N + 3) and len(db.deleted) == (0 if changed else 2)
    from similar_images.db import index as ix

    new1 = db.live_ids()[-2]
    _, ids = ix.search_reranked(db.index, db.vectors, db.vectors[[new1]], 1, exclude=db.deleted)
    assert ids[0, 0] == new1 and db.names[new1] == "new1.jpg"
    # The next change cleans up what the killed one left, and works.
    add_rows(vectors_path, index_path, np.ones((1, DIM), np.float32), ["later.jpg"])
    assert_consistent(vectors_path, index_path)
    assert not list(tmp_path.glob(".*.staged")) and not list(tmp_path.glob("*.journal.json"))


LOOPER = textwrap.dedent("""
    import sys
    import numpy as np
    from similar_images.db.changes import add_rows
    vectors_path, index_path, dim = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(0)
    for i in range(1000):
        add_rows(vectors_path, index_path, rng.random((2, dim), dtype=np.float32), [f"loop{i}a.jpg", f"loop{i}b.jpg"])
        print(i, flush=True)
""")


@pytest.mark.parametrize("delay", [0.15, 0.4, 0.75])
def test_kill_9_at_a_random_moment_of_repeated_adds(tmp_path, db_files, delay):
    vectors_path, index_path, _ = db_files
    script = tmp_path / "looper.py"
    script.write_text(LOOPER)
    proc = subprocess.Popen([sys.executable, str(script), str(vectors_path), str(index_path), str(DIM)],
                            stdout=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # imports done, one add finished
    assert first.startswith("0")
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    db = assert_consistent(vectors_path, index_path)
    assert len(db) >= N + 2 and (len(db) - N) % 2 == 0
