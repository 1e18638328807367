"""kill -9 at each commit step of save_vectors (extract's commit) and of build, by injected
faults: the next open sees the old or the new state, verified, and the next writer cleans up.
and of migrate (format 1 to the catalog). (Compaction at each step: tests/db/test_database.py;
add/remove: tests/db/test_growing.py.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _index_data import vector_db, write_format_1
from _waiting import patience

from similar_images.db.build import build_index_files
from similar_images.db.database import Database
from similar_images.db.verify import verify_database

N, DIM = 300, 16

KILLER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    point, op, vectors_path, index_path = sys.argv[1:5]
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    real, calls = os.replace, [0]
    def replace(a, b):
        if str(b).endswith(".verified.json"):  # a verification stamp, not a step of the change
            return real(a, b)
        if point == f"replace{calls[0]}":
            die()
        calls[0] += 1
        real(a, b)
    os.replace = replace
    if point == "staged":  # everything staged, killed just before the commit point
        from similar_images.db import journal
        journal.commit = lambda *a, **k: die()
    if op == "migrate":
        from similar_images.db.compaction import migrate
        migrate(vectors_path)
    elif op == "save":
        from similar_images.db.vectors import save_vectors
        names = [f"n{i}.jpg" for i in range(50)]
        save_vectors(vectors_path, np.ones((50, int(sys.argv[5])), np.float32), {"model": {"name": "synthetic"},
                                                                                  "names": names})
    else:
        from similar_images.db.build import build_index_files
        build_index_files(vectors_path, index_path, index_type="flat", force=True, show_progress=False,
                          eval_queries=5)
    print("finished")
""")


def run_killed(tmp_path, point, op, vectors_path, index_path):
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    return subprocess.run([sys.executable, str(script), point, op, str(vectors_path), str(index_path), str(DIM)],
                          capture_output=True, text=True, timeout=patience(300))


# os.replace calls of one change: 0 = the journal (the commit point), then the renames.
@pytest.mark.slow
@pytest.mark.parametrize("point, committed", [("staged", False), ("replace0", False), ("replace1", True),
                                              ("replace2", True)])
def test_kill_9_during_the_commit_of_save_vectors(tmp_path, point, committed):
    vectors_path, _ = vector_db(tmp_path, N, DIM)
    proc = run_killed(tmp_path, point, "save", vectors_path, tmp_path / "unused.index")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    db = Database.open(vectors_path)
    assert len(db) == (50 if committed else N)
    assert all(v.ok for v in verify_database(vectors_path))
    build_index_files(vectors_path, tmp_path / "db.faiss.index", index_type="flat", show_progress=False,
                      eval_queries=5)  # the next writer cleans what the killed one left
    assert not list(tmp_path.glob(".*.staged")) and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("point, committed", [("staged", False), ("replace0", False), ("replace1", True)])
def test_kill_9_during_build_then_the_next_build_cleans_up(tmp_path, point, committed):
    vectors_path, vectors = vector_db(tmp_path, N, DIM)
    index_path = tmp_path / "db.faiss.index"
    build_index_files(vectors_path, index_path, index_type="hnsw", show_progress=False, eval_queries=5)
    proc = run_killed(tmp_path, point, "build", vectors_path, index_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    if not committed:
        assert list(tmp_path.glob(".db.faiss.index.*.staged"))  # index-sized garbage left by the kill
    db = Database.open(vectors_path, index_path)
    assert db.index_manifest["index_type"] == ("flat" if committed else "hnsw")
    assert all(v.ok for v in verify_database(vectors_path, index_path))
    build_index_files(vectors_path, index_path, index_type="flat", force=True, show_progress=False, eval_queries=5)
    assert not list(tmp_path.glob(".*.staged")) and not list(tmp_path.glob(".*.tmp"))
    _, ids = db.index.search(np.asarray(vectors[:1]), 1)
    assert ids[0, 0] == 0


@pytest.mark.slow
@pytest.mark.parametrize("point, committed", [("staged", False), ("replace0", False), ("replace1", True)])
def test_kill_9_during_a_migration_leaves_format_1_or_2(tmp_path, point, committed):
    from similar_images.db.vectors import load_vectors_manifest

    vectors = np.random.default_rng(0).random((N, DIM), dtype=np.float32)
    names = [f"v{i:05d}.jpg" for i in range(N)]
    vectors_path = tmp_path / "old.npy"
    write_format_1(vectors_path, vectors, names)
    proc = run_killed(tmp_path, point, "migrate", vectors_path, tmp_path / "unused.index")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    db = Database.open(vectors_path)
    assert (db.generation is not None) is committed and list(db.names) == names
    assert all(v.ok for v in verify_database(vectors_path))
    from similar_images.db.compaction import migrate

    assert migrate(vectors_path) is not committed  # the next migration finishes the job, or has none to do
    assert load_vectors_manifest(vectors_path, with_names=True)["names"] == names
    assert not list(tmp_path.glob(".*.staged")) and not list(tmp_path.glob(".*.tmp"))
