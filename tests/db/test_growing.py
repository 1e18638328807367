"""The growing database: an add writes one segment and a catalog transaction, a remove
writes tombstones, neither touches another file; compaction folds them into a new
generation; a format-1 database migrates; planted catalog rows cannot reach outside."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from _corrupt import plant
from _index_data import copy_database, indexed_database, write_format_1
from _waiting import patience

from similar_images.db.build import build_index_files
from similar_images.db.changes import add_rows, remove_rows
from similar_images.db.compaction import compact, migrate
from similar_images.db.database import Database
from similar_images.db.vectors import load_vectors_manifest
from similar_images.errors import DatabaseError
from similar_images.fileio.files import manifest_path
from similar_images.search import SimilarImages

N, DIM = 600, 32


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return indexed_database(tmp_path_factory.mktemp("growing"), N, DIM, index_type="ivfpq", nlist=8)


@pytest.fixture
def db(tmp_path, template):
    folder, vectors = template
    return (*copy_database(folder, tmp_path), vectors)


def snapshot(folder):
    """Every file's (size, mtime_ns) but the catalog's own (with SQLite's side files), stamps and the lock."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()
            if ".catalog.sqlite" not in p.name and not p.name.endswith((".verified.json", ".lock"))}


def test_add_writes_one_segment_and_touches_no_other_file(db):
    vectors_path, index_path, _ = db
    before = snapshot(vectors_path.parent)
    new = np.random.default_rng(1).random((3, DIM), dtype=np.float32)
    result = add_rows(vectors_path, index_path, new, ["n0.jpg", "n1.jpg", "v00001.jpg"])
    assert result.added == ["n0.jpg", "n1.jpg"] and result.already_present == ["v00001.jpg"]
    after = snapshot(vectors_path.parent)
    (segment,) = set(after) - set(before)
    assert segment.startswith("db.npy.seg-") and {k: after[k] for k in before} == before  # nothing else changed
    assert os.path.getsize(vectors_path.parent / segment) == 128 + 2 * DIM * 4
    opened = SimilarImages.open(vectors_path, index_path)
    assert len(opened) == N + 2 and opened.names[N + 1] == "n1.jpg"
    (hit,) = opened.search(new[1], k=1)
    assert hit.id == N + 1 and hit.path == "n1.jpg" and hit.score == pytest.approx(1.0, abs=1e-5)
    assert opened.search(N, k=1)[0].path == "n0.jpg"  # an added row is searchable by id too


def test_remove_writes_tombstones_and_ids_stay(db):
    vectors_path, index_path, vectors = db
    before = snapshot(vectors_path.parent)
    assert remove_rows(vectors_path, index_path, ["v00003.jpg", "./v00005.jpg"]) == ["v00003.jpg", "v00005.jpg"]
    assert snapshot(vectors_path.parent) == before
    opened = SimilarImages.open(vectors_path, index_path)
    assert len(opened) == N - 2 and opened.names[4] == "v00004.jpg"  # later ids did not shift
    hits = opened.search(vectors[3], k=5)
    assert 3 not in [h.id for h in hits] and len(hits) == 5
    with pytest.raises(ValueError, match="image id 3 was removed"):
        opened.search(3)
    with pytest.raises(ValueError, match="not in the database: v00003.jpg"):
        remove_rows(vectors_path, index_path, ["v00003.jpg"])
    exact = SimilarImages.open(vectors_path, None).search(vectors[5], k=3)
    assert 5 not in [h.id for h in exact] and len(exact) == 3


def test_compaction_folds_added_and_removed_rows_into_a_new_generation(db):
    vectors_path, index_path, vectors = db
    new = np.random.default_rng(2).random((4, DIM), dtype=np.float32)
    add_rows(vectors_path, index_path, new, [f"n{i}.jpg" for i in range(4)], auto_compact=False)
    remove_rows(vectors_path, index_path, ["v00000.jpg", "n1.jpg"], auto_compact=False)
    queries = np.concatenate([vectors[[7, 300]], new[[2]]])
    before = [[(h.path, round(h.score, 5)) for h in row] for row in SimilarImages.open(vectors_path, index_path)
              .search(queries, k=6)]
    segments = list(vectors_path.parent.glob("db.npy.seg-*.npy"))
    manifest = compact(vectors_path, index_path)
    assert manifest["count"] == N + 2 and not any(p.exists() for p in segments)
    opened = SimilarImages.open(vectors_path, index_path)
    assert len(opened) == opened.database.id_count == N + 2 and len(opened.database.deleted) == 0
    assert opened.names[0] == "v00001.jpg" and opened.names[N + 1] == "n3.jpg"  # numbered 0..n-1 again
    after = [[(h.path, round(h.score, 5)) for h in row] for row in opened.search(queries, k=6)]
    assert after == before
    opened.database.verify(deep=True)
    assert load_vectors_manifest(vectors_path, with_names=True)["names"][-1] == "n3.jpg"


def test_automatic_compaction_when_deletions_pass_their_share(db):
    vectors_path, index_path, _ = db
    remove_rows(vectors_path, index_path, [f"v{i:05d}.jpg" for i in range(100)])  # 17%: kept as tombstones
    assert len(Database.open(vectors_path).deleted) == 100
    remove_rows(vectors_path, index_path, [f"v{i:05d}.jpg" for i in range(100, 130)])  # 22%: compacted
    db = Database.open(vectors_path, index_path)
    assert len(db.deleted) == 0 and len(db) == db.id_count == N - 130 and db.index.ntotal == N - 130


def test_a_format_1_database_migrates_and_answers_the_same(tmp_path, template):
    _, vectors = template
    names = [f"v{i:05d}.jpg" for i in range(N)]
    vectors_path = tmp_path / "old.npy"
    write_format_1(vectors_path, vectors, names)
    build_index_files(vectors_path, tmp_path / "old.faiss.index", index_type="flat", show_progress=False, eval_queries=5)
    index_bytes = (tmp_path / "old.faiss.index").read_bytes()
    before = SimilarImages.open(vectors_path, tmp_path / "old.faiss.index").search(vectors[[1, 50]], k=5)
    assert migrate(vectors_path) and not migrate(vectors_path)  # once
    assert (tmp_path / "old.faiss.index").read_bytes() == index_bytes  # the index is not rewritten
    assert "names" not in json.loads(manifest_path(vectors_path).read_text())
    after = SimilarImages.open(vectors_path, tmp_path / "old.faiss.index").search(vectors[[1, 50]], k=5)
    assert after == before
    Database.open(vectors_path, tmp_path / "old.faiss.index", fresh=True).verify(deep=True)


def test_the_first_write_migrates_a_format_1_database(tmp_path, template, caplog):
    _, vectors = template
    vectors_path = tmp_path / "old.npy"
    write_format_1(vectors_path, vectors[:50], [f"v{i:05d}.jpg" for i in range(50)])
    remove_rows(vectors_path, None, ["v00002.jpg"])
    assert "converting to the growing format" in caplog.text
    assert load_vectors_manifest(vectors_path)["format"] == 2 and len(Database.open(vectors_path)) == 49


@pytest.mark.parametrize("file", ["../victim/keep.npy", "/etc/passwd", "a/b.npy", "..", ""])
def test_a_catalog_row_naming_a_file_outside_the_folder_is_refused(tmp_path, db, file):
    vectors_path, index_path, _ = db
    victim = tmp_path.parent / "victim"
    victim.mkdir(exist_ok=True)
    (victim / "keep.npy").write_bytes(b"keep")
    gen = load_vectors_manifest(vectors_path)["generation"]
    plant(vectors_path, "INSERT INTO segments VALUES (?, 1, ?, ?, 1, 1, ?)", gen, file, N, "0" * 64)
    for attempt in (lambda: Database.open(vectors_path), lambda: add_rows(vectors_path, index_path,
                                                                          np.ones((1, DIM), np.float32), ["x.jpg"])):
        with pytest.raises(DatabaseError, match=r"segment 1 names the file .* not a plain file name"):
            attempt()
    assert (victim / "keep.npy").read_bytes() == b"keep"


def test_a_forged_or_half_written_change_leaves_the_old_state(db):
    vectors_path, index_path, _ = db
    # a segment written by a writer that died before its transaction: not part of the database
    orphan = vectors_path.parent / "db.npy.seg-deadbeef0000.npy"
    np.save(orphan, np.ones((2, DIM), np.float32))
    assert len(Database.open(vectors_path)) == N
    add_rows(vectors_path, index_path, np.ones((1, DIM), np.float32), ["x.jpg"])  # the next writer deletes it
    assert not orphan.exists() and len(Database.open(vectors_path)) == N + 1
    # a forged segment row: the file it names does not match the checksum
    gen = load_vectors_manifest(vectors_path)["generation"]
    forged = vectors_path.parent / "db.npy.seg-forged000000.npy"
    np.save(forged, np.zeros((1, DIM), np.float32))
    plant(vectors_path, "INSERT INTO segments VALUES (?, 2, ?, ?, 1, ?, ?)", gen, forged.name, N + 1,
          forged.stat().st_size, "0" * 64)
    plant(vectors_path, "INSERT INTO items(gen, id, name, key) VALUES (?, ?, 'f.jpg', 'f.jpg')", gen, N + 1)
    with pytest.raises(DatabaseError, match="seg-forged000000.npy: contents do not match"):
        Database.open(vectors_path)
    # a tombstone outside the ids, and names edited in the catalog
    plant(vectors_path, "DELETE FROM segments WHERE seq=2")
    plant(vectors_path, "DELETE FROM items WHERE id=?", N + 1)
    plant(vectors_path, "INSERT INTO tombstones VALUES (?, ?)", gen, 10 * N)
    with pytest.raises(DatabaseError, match=f"a tombstone names id {10 * N}"):
        Database.open(vectors_path)
    plant(vectors_path, "DELETE FROM tombstones")
    plant(vectors_path, "UPDATE items SET name='swapped.jpg' WHERE id=0")
    with pytest.raises(DatabaseError, match="do not match the manifest's names_sha256"):
        Database.open(vectors_path, fresh=True)


def test_readers_keep_their_generation_while_a_writer_compacts(db):
    vectors_path, index_path, vectors = db
    add_rows(vectors_path, index_path, np.ones((2, DIM), np.float32), ["a.jpg", "b.jpg"], auto_compact=False)
    reader = SimilarImages.open(vectors_path, index_path)
    hits = reader.search(vectors[9], k=3)
    remove_rows(vectors_path, index_path, ["v00000.jpg"], auto_compact=False)
    compact(vectors_path, index_path)
    assert reader.search(vectors[9], k=3) == hits  # its files and rows are still there for it


# --- kill -9 during an add or a remove ----------------------------------------------------

KILLER = """
import os, signal, sys
import numpy as np
from similar_images.db import catalog, changes, segments
from similar_images.fileio import files

point, op, vectors_path, index_path, dim = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)

def then_die(real):
    def wrapped(*a, **k):
        real(*a, **k)
        die()
    return wrapped

if point == "segment":  # half-way through writing the new segment file
    real, calls = files.HashingWriter.write, [0]
    def write(self, data):
        calls[0] += 1
        if calls[0] == 2:
            die()
        return real(self, data)
    files.HashingWriter.write = write
elif point == "transaction":  # rows inserted, the transaction not committed
    catalog.insert_items = then_die(catalog.insert_items)
    catalog.insert_tombstones = then_die(catalog.insert_tombstones)
elif point == "committed":  # right after the commit
    changes.write_stamp = die
    segments.CatalogNames.take = die
if op == "add":
    new = np.random.default_rng(5).random((3, dim), dtype=np.float32)
    changes.add_rows(vectors_path, index_path, new, ["new0.jpg", "new1.jpg", "new2.jpg"])
else:
    changes.remove_rows(vectors_path, index_path, ["v00000.jpg", "v00001.jpg"])
print("finished")
"""


@pytest.mark.parametrize("op,point", [("add", "segment"), ("add", "transaction"), ("add", "committed"),
                                      ("remove", "transaction"), ("remove", "committed")])
def test_kill_9_during_an_add_or_remove_leaves_the_old_or_the_new_state(tmp_path, db, op, point):
    import signal
    import subprocess
    import sys

    vectors_path, index_path, _ = db
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    proc = subprocess.run([sys.executable, str(script), point, op, str(vectors_path), str(index_path), str(DIM)],
                          capture_output=True, text=True, timeout=patience(600))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    opened = Database.open(vectors_path, index_path)
    opened.verify(deep=True)
    changed = point == "committed"
    if op == "add":
        assert len(opened) == (N + 3 if changed else N)
    else:
        assert len(opened) == (N - 2 if changed else N)
    # the next writer removes what the killed one left, and works
    add_rows(vectors_path, index_path, np.ones((1, DIM), np.float32), ["later.jpg"])
    named = {s.file for s in Database.open(vectors_path).generation.segments}
    assert {p.name for p in vectors_path.parent.glob("db.npy.seg-*.npy")} == named - {"db.npy"}
