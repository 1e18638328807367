"""store.py: atomic files and the vectors + manifest pair, committed together."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from similar_images.db import journal
from similar_images.db.database import Database
from similar_images.db.vectors import load_vectors_manifest, open_vectors, save_vectors
from similar_images.fileio.files import manifest_path, write_json_atomic

MODEL = {"name": "test", "weights": "none", "dim": 4}


def save(path, seed, n=3):
    vectors = np.random.default_rng(seed).random((n, 4), dtype=np.float32)
    save_vectors(path, vectors, {"model": MODEL, "names": [f"{seed}-{i}.jpg" for i in range(n)]})
    return vectors


def test_written_files_get_umask_permissions_not_private(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"a": 1})
    save(tmp_path / "v.npy", 0)
    umask = os.umask(0)
    os.umask(umask)
    for name in ("a.json", "v.npy", "v.npy.manifest.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


def test_save_round_trip(tmp_path):
    path = tmp_path / "new-folder" / "v.npy"  # folders are made as needed
    vectors = save(path, 1)
    manifest = load_vectors_manifest(path, with_names=True)
    assert manifest["count"] == 3 and manifest["dimension"] == 4 and manifest["names"][0] == "1-0.jpg"
    assert np.array_equal(open_vectors(path), vectors)


def test_crash_before_the_commit_point_keeps_the_old_pair(tmp_path, monkeypatch):
    path = tmp_path / "v.npy"
    old = save(path, 1)
    monkeypatch.setattr(journal, "commit", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        save(path, 2, n=5)
    monkeypatch.undo()
    db = Database.open(path)
    assert np.array_equal(db.vectors, old) and db.names[0] == "1-0.jpg"
    staged = lambda: [p.name for p in tmp_path.iterdir() if p.name.endswith(".staged")]  # noqa: E731
    assert staged() == []  # an interrupt cleans up; a kill -9 leaves garbage (see test_reliability_kill)
    save(path, 3)
    assert staged() == [] and Database.open(path).names[0] == "3-0.jpg"  # the next writer cleans up


def test_crash_after_the_commit_point_is_finished_by_the_next_reader(tmp_path, monkeypatch):
    path = tmp_path / "v.npy"
    save(path, 1)
    calls = []
    real_roll_forward = journal.roll_forward

    def die_inside_commit(journal_file, *allowed):  # the first call is save's own clean-up
        calls.append(journal_file)
        if len(calls) == 2:
            raise KeyboardInterrupt  # journal written, no rename applied yet
        return real_roll_forward(journal_file, *allowed)

    monkeypatch.setattr(journal, "roll_forward", die_inside_commit)
    with pytest.raises(KeyboardInterrupt):
        new = save(path, 2, n=5)
    monkeypatch.undo()
    assert journal.journal_path(path).exists()
    db = Database.open(path)  # rolls the change forward: the new pair, complete
    new = np.random.default_rng(2).random((5, 4), dtype=np.float32)
    assert np.array_equal(db.vectors, new) and db.names[0] == "2-0.jpg"
    assert load_vectors_manifest(path, with_names=True)["count"] == 5 and not journal.journal_path(path).exists()
    assert manifest_path(path).exists()
