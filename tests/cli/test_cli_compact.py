"""``similar-images compact`` and ``migrate``, and what ``remove`` says about ids, through the CLI."""

from __future__ import annotations

import numpy as np
from _index_data import copy_database, vector_db, write_format_1
from click.testing import CliRunner

from similar_images.cli import main
from similar_images.db.build import build_index_files
from similar_images.db.changes import add_rows
from similar_images.db.database import Database

N, DIM = 80, 8


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_compact_folds_adds_and_removes_and_says_so(tmp_path):
    vectors_path, _ = vector_db(tmp_path, N, DIM)
    index_path = tmp_path / "db.faiss.index"
    build_index_files(vectors_path, index_path, index_type="flat", show_progress=False, eval_queries=5)
    add_rows(vectors_path, index_path, np.ones((2, DIM), np.float32), ["a.jpg", "b.jpg"], auto_compact=False)
    removed = run("remove", "v00001.jpg", "--vectors", vectors_path, "--image-dir", tmp_path)
    assert removed.exit_code == 0, removed.output
    assert f"the database now holds {N + 1}" in removed.output
    result = run("compact", "--vectors", vectors_path)  # the index beside the vectors is found
    assert result.exit_code == 0, result.output
    assert f"{N + 1} items (2 added rows folded in, 1 removed rows dropped; float32 store)" in result.output
    db = Database.open(vectors_path, index_path)
    assert len(db) == db.id_count == db.index.ntotal == N + 1 and db.names[N] == "b.jpg"


def test_migrate_converts_once_and_a_missing_database_is_one_line(tmp_path):
    vectors_path = tmp_path / "old.npy"
    write_format_1(vectors_path, np.ones((5, DIM), np.float32), [f"x{i}.jpg" for i in range(5)])
    first = run("migrate", "--vectors", vectors_path)
    assert first.exit_code == 0 and "migrated" in first.output and Database.open(vectors_path).generation
    again = run("migrate", "--vectors", vectors_path)
    assert again.exit_code == 0 and "already in the catalog format" in again.output
    missing = run("compact", "--vectors", tmp_path / "nope.npy")
    assert missing.exit_code != 0 and "vectors file not found" in missing.output
    assert len(missing.output.strip().splitlines()) == 1


def test_a_copied_database_carries_its_catalog(tmp_path):
    source = tmp_path / "a"
    source.mkdir()
    vectors_path, _ = vector_db(source, N, DIM)
    add_rows(vectors_path, None, np.ones((1, DIM), np.float32), ["late.jpg"], auto_compact=False)
    target = tmp_path / "b"
    target.mkdir()
    segment = next(source.glob("db.npy.seg-*.npy"))
    (copied,) = copy_database(source, target, names=("db.npy",))
    (target / segment.name).write_bytes(segment.read_bytes())
    found = run("search", "--id", N, "-k", "1", "--vectors", copied, "--json")
    assert found.exit_code == 0, found.output
    assert '"late.jpg"' in found.output


def test_a_grown_database_says_so_once_and_compact_retrain_fixes_it(tmp_path, caplog):
    vectors_path, vectors = vector_db(tmp_path, 1200, 16)
    index_path = tmp_path / "db.faiss.index"
    build_index_files(vectors_path, index_path, show_progress=False, eval_queries=20)
    assert Database.open(vectors_path, index_path).index_manifest["trained_for"] == 1200
    more = np.random.default_rng(5).random((1300, 16), dtype=np.float32)
    add_rows(vectors_path, index_path, more, [f"new{i}.jpg" for i in range(1300)], auto_compact=False)
    with caplog.at_level("WARNING", logger="similar_images"):
        Database.open(vectors_path, index_path)
        Database.open(vectors_path, index_path)  # said once, not on every open
    said = [r.getMessage() for r in caplog.records if "trained and tuned on 1,200 vectors" in r.getMessage()]
    assert len(said) == 1 and "now holds 2,500" in said[0] and "compact --retrain" in said[0]
    result = run("compact", "--vectors", vectors_path, "--retrain")
    assert result.exit_code == 0, result.output
    assert "compacted" in result.output and "recall@10 vs exact" in result.output
    caplog.clear()
    with caplog.at_level("WARNING", logger="similar_images"):
        db = Database.open(vectors_path, index_path)
    assert db.index_manifest["trained_for"] == 2500 == db.index.ntotal
    assert not [r for r in caplog.records if "trained and tuned" in r.getMessage()]
    assert run("compact", "--vectors", tmp_path / "none.npy", "--retrain").exit_code != 0
