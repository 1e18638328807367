"""kill -9 at several points of a sync, then a sync again: the same database as one
uninterrupted sync (names, vectors and file stats), nothing lost, nothing duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _index_data import register_tiny
from _sync_data import CountingTiny, copy_tree, db_state, folder_hashes, make_folder, write_pattern
from _waiting import patience

from similar_images.db.database import Database
from similar_images.sync import default_vectors, sync_folder

TESTS = Path(__file__).resolve().parents[1]

KILLER = """
import os, signal, sys
sys.path[:0] = [sys.argv[3], os.path.join(sys.argv[3], "sync")]
from _sync_data import CountingTiny
from similar_images.sync import apply, sync_folder

folder, after = sys.argv[1], int(sys.argv[2])
real, done = apply.commit_batch, [0]

def commit_batch(*a, **k):
    if done[0] == after:
        os.kill(os.getpid(), signal.SIGKILL)  # before this batch's commit
    done[0] += 1
    return real(*a, **k)

apply.commit_batch = commit_batch
apply.QUICK_BATCH = 2  # several name-only batches too
sync_folder(folder, extractor=CountingTiny(), commit_every=2, show_progress=False)
print("finished")
"""


def changed_folder(root: Path) -> Path:
    """A synced folder of 8, then changed: 5 added, 2 deleted, 2 modified, 2 renamed."""
    folder = root / "photos"
    make_folder(folder, range(8))
    sync_folder(folder, extractor=CountingTiny(), show_progress=False)
    make_folder(folder, range(20, 25))
    (folder / "img000.png").unlink()
    (folder / "img001.png").unlink()
    write_pattern(folder, "img002.png", 40)
    write_pattern(folder, "img003.png", 41)
    (folder / "img004.png").rename(folder / "four.png")
    (folder / "img005.png").rename(folder / "five.png")
    return folder


def killed_sync(folder: Path, after: int) -> subprocess.CompletedProcess:
    script = folder.parent / "killer.py"
    script.write_text(KILLER)
    return subprocess.run([sys.executable, str(script), str(folder), str(after), str(TESTS)], capture_output=True,
                          text=True, timeout=patience(600), env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The folder as changed, before any sync of the changes, and the state one uninterrupted sync gives."""
    with pytest.MonkeyPatch.context() as patch:
        register_tiny(patch)
        root = tmp_path_factory.mktemp("reference")
        folder = changed_folder(root)
        pristine = tmp_path_factory.mktemp("pristine") / "work"
        copy_tree(root, pristine)
        sync_folder(folder, extractor=CountingTiny(), commit_every=2, show_progress=False)
        return pristine, db_state(default_vectors(folder))


# batches of that sync: 2 name-only ones (renames, removes), then 4 of 2 embedded files (5 added + 2 changed)
@pytest.mark.parametrize("after", [0, 1, 2, 3, 5])
def test_kill_9_then_sync_again_gives_the_uninterrupted_database(tmp_path, monkeypatch, reference, after):
    register_tiny(monkeypatch)
    pristine, expected = reference
    work = tmp_path / "work"
    copy_tree(pristine, work)
    folder = work / "photos"
    proc = killed_sync(folder, after)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    partial = db_state(default_vectors(folder))
    assert 0 < len(partial) <= len(expected)  # old rows go as their batch commits; never a duplicate
    report = sync_folder(folder, extractor=CountingTiny(), commit_every=2, show_progress=False)
    assert db_state(default_vectors(folder)) == expected
    assert {name: state[3] for name, state in expected.items()} == folder_hashes(folder)
    Database.open(default_vectors(folder), None, fresh=True).verify(deep=True)
    assert report.count == len(expected) == 11


def test_kill_9_during_the_first_sync_then_sync_again(tmp_path, monkeypatch):
    register_tiny(monkeypatch)
    first, second = tmp_path / "a" / "photos", tmp_path / "b" / "photos"
    for folder in (first, second):
        make_folder(folder, range(7))
    os.sync()
    for name in os.listdir(first):  # the same mtimes in both folders
        stat = (first / name).stat()
        os.utime(second / name, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    proc = killed_sync(first, 2)  # after two of four batches
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert len(db_state(default_vectors(first))) == 4
    model = CountingTiny()
    sync_folder(first, extractor=model, commit_every=2, show_progress=False)
    assert model.images == 3  # only what the killed sync had not committed
    sync_folder(second, extractor=CountingTiny(), commit_every=2, show_progress=False)
    assert db_state(default_vectors(first)) == db_state(default_vectors(second))
