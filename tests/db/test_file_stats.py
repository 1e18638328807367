"""The catalog's file stats (size, mtime, hash) and commit_batch: one batch of a folder's
changes (new rows, replacements, moves without re-embedding, removals, new stats) in one
SQLite transaction; kill -9 leaves the batch out or in, whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from _index_data import vector_db
from _waiting import patience

from similar_images.db import catalog, file_stats
from similar_images.db.changes import commit_batch
from similar_images.db.compaction import compact
from similar_images.db.database import Database
from similar_images.db.file_stats import FileStat

N, DIM = 50, 16


def stat(i: int) -> FileStat:
    return FileStat(1000 + i, 10**18 + i, f"{i:064x}")


@pytest.fixture
def db(tmp_path):
    vectors_path, vectors = vector_db(tmp_path, N, DIM)
    return vectors_path, vectors


def records(vectors_path):
    opened = Database.open(vectors_path, None, trust=True)
    return {r.name: r for r in file_stats.live_records(opened.generation.con, opened.generation.gen)}, opened


def test_new_rows_carry_their_stats_and_are_found_by_hash(db):
    vectors_path, _ = db
    new = np.random.default_rng(1).random((2, DIM), dtype=np.float32)
    result = commit_batch(vectors_path, None, vectors=new, names=["a.jpg", "b.jpg"], stats=[stat(1), stat(2)])
    assert result.added == ["a.jpg", "b.jpg"] and not result.removed
    found, opened = records(vectors_path)
    assert len(found) == N + 2 and found["a.jpg"][2:] == tuple(stat(1)) and found["v00000.jpg"].sha256 is None
    con, gen = opened.generation.con, opened.generation.gen
    assert file_stats.ids_for_sha256(con, gen, [stat(2).sha256, "f" * 64]) == {stat(2).sha256: [N + 1]}
    plan = " ".join(str(r) for r in con.execute("EXPLAIN QUERY PLAN SELECT sha256, id FROM items WHERE gen=? AND "
                                                "sha256 IS NOT NULL AND sha256 IN (?)", (gen, "x")))
    assert "items_by_sha256" in plan  # a look-up through the partial index, not a scan
    assert file_stats.has_stats(con, gen)


def test_replace_copy_move_remove_and_restamp_in_one_batch(db):
    vectors_path, vectors = db
    changed = np.full((1, DIM), 0.5, dtype=np.float32)
    result = commit_batch(vectors_path, None, vectors=changed, names=["v00001.jpg"], stats=[stat(1)],
                          copies=[("v00002.jpg", "moved.jpg", stat(2)), ("v00003.jpg", "copy.jpg", stat(3)),
                                  ("nowhere.jpg", "lost.jpg", stat(4))],
                          removes=["v00001.jpg", "v00002.jpg", "v00004.jpg", "absent.jpg"],
                          restamps=[("v00005.jpg", stat(5))])
    assert sorted(result.removed) == ["v00001.jpg", "v00002.jpg", "v00004.jpg"]
    assert result.added == ["v00001.jpg", "moved.jpg", "copy.jpg"] and result.lost == ["lost.jpg"]
    assert result.restamped == ["v00005.jpg"]
    found, opened = records(vectors_path)
    assert len(opened) == N - 3 + 3 and "v00002.jpg" not in found and "v00004.jpg" not in found
    np.testing.assert_array_equal(opened.vectors[found["v00001.jpg"].id], changed[0])  # replaced, new id
    np.testing.assert_array_equal(opened.vectors[found["moved.jpg"].id], vectors[2])  # moved: the same vector
    np.testing.assert_array_equal(opened.vectors[found["copy.jpg"].id], vectors[3])
    assert found["v00003.jpg"].id == 3 and found["v00005.jpg"][2:] == tuple(stat(5))
    assert len(opened.generation.segments) == 2  # one segment for the whole batch


def test_names_present_are_never_duplicated_and_the_database_may_empty(db):
    vectors_path, _ = db
    again = commit_batch(vectors_path, None, vectors=np.ones((2, DIM), np.float32), names=["v00000.jpg", "n.jpg"],
                         stats=[stat(0), stat(9)])
    assert again.added == ["n.jpg"]
    everything = [f"v{i:05d}.jpg" for i in range(N)] + ["n.jpg"]
    commit_batch(vectors_path, None, removes=everything, auto_compact=False)
    assert len(Database.open(vectors_path, None, trust=True)) == 0
    with pytest.raises(ValueError, match="do not match"):
        commit_batch(vectors_path, None, vectors=np.ones((1, DIM), np.float32), names=["x.jpg", "y.jpg"])


def test_stats_survive_a_compaction(db):
    vectors_path, _ = db
    commit_batch(vectors_path, None, vectors=np.ones((3, DIM), np.float32), names=["a.jpg", "b.jpg", "c.jpg"],
                 stats=[stat(1), None, stat(3)], removes=["v00000.jpg"])
    compact(vectors_path)
    found, opened = records(vectors_path)
    assert len(opened.generation.segments) == 1 and found["a.jpg"].id == N - 1  # ids renumbered
    assert found["a.jpg"][2:] == tuple(stat(1)) and found["b.jpg"].sha256 is None and found["c.jpg"][2:] == tuple(stat(3))
    con, gen = opened.generation.con, opened.generation.gen
    assert file_stats.ids_for_sha256(con, gen, [stat(3).sha256]) == {stat(3).sha256: [found["c.jpg"].id]}


def test_restamp_keeps_the_vector_and_the_names_checksum(db):
    vectors_path, vectors = db
    commit_batch(vectors_path, None, restamps=[("v00007.jpg", stat(7))])
    opened = Database.open(vectors_path, None, fresh=True)  # the base names are re-hashed: unchanged
    opened.verify(deep=True)
    found, _ = records(vectors_path)
    assert found["v00007.jpg"].id == 7 and found["v00007.jpg"][2:] == tuple(stat(7))


KILLER = """
import os, signal, sys
import numpy as np
from similar_images.db import catalog, changes
from similar_images.db.file_stats import FileStat

point, vectors_path, dim = sys.argv[1], sys.argv[2], int(sys.argv[3])
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if point == "transaction":  # tombstones and items inserted, not committed
    real = catalog.insert_tombstones
    def insert_tombstones(*a, **k):
        real(*a, **k)
        die()
    catalog.insert_tombstones = insert_tombstones
else:  # committed: killed before the stamp
    changes.write_stamp = die
stat = FileStat(1, 2, "ab" * 32)
changes.commit_batch(vectors_path, None, vectors=np.ones((1, dim), np.float32), names=["v00001.jpg"], stats=[stat],
                     copies=[("v00002.jpg", "moved.jpg", stat)], removes=["v00001.jpg", "v00002.jpg"])
print("finished")
"""


@pytest.mark.parametrize("point", ["transaction", "committed"])
def test_kill_9_during_a_batch_leaves_it_out_or_in_whole(tmp_path, db, point):
    vectors_path, vectors = db
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, str(script), point, str(vectors_path), str(DIM)], capture_output=True,
                          text=True, timeout=patience(600), env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    found, opened = records(vectors_path)
    opened.verify(deep=True)
    if point == "committed":
        assert "moved.jpg" in found and "v00002.jpg" not in found and found["v00001.jpg"].id >= N
    else:
        assert set(found) == {f"v{i:05d}.jpg" for i in range(N)} and found["v00001.jpg"].id == 1
    assert len(opened) == N
    # the next writer removes what the killed one left (an unnamed segment), and works
    commit_batch(vectors_path, None, removes=["v00009.jpg"])
    named = {s.file for s in Database.open(vectors_path).generation.segments}
    assert {p.name for p in vectors_path.parent.glob("db.npy.seg-*.npy")} == named - {"db.npy"}
    assert catalog.catalog_path(vectors_path).exists()
