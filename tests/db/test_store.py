"""The float16 store (``manifest["store"]``): the base file and every segment in float16,
re-ranked results equal to float32's up to float16 rounding, adds, compaction and checks."""

from __future__ import annotations

import numpy as np
import pytest

from similar_images.db import index as ix
from similar_images.db.build import build_index_files
from similar_images.db.changes import add_rows
from similar_images.db.compaction import compact
from similar_images.db.database import Database
from similar_images.db.importing import import_vectors
from similar_images.db.integrity import read_npy_header
from similar_images.db.searching import search_database
from similar_images.db.vectors import FLOAT16_STORE_FROM_BYTES, default_store, save_vectors
from similar_images.errors import DatabaseError
from similar_images.evaluation.synthetic import clustered_vectors

N, DIM, K = 3000, 64, 10


def database(folder, vectors, store, name="db.npy"):
    path = folder / name
    save_vectors(path, vectors, {"model": {"name": "none", "dim": DIM}, "names": [f"{i}.jpg" for i in range(len(vectors))],
                                 "store": store})
    return path


@pytest.fixture(scope="module")
def rows():
    both = clustered_vectors(N + 50, DIM, seed=3)  # (n + q, d) float32
    return both[:N], both[N:]


def test_a_float16_store_holds_half_the_bytes_and_opens_checked(tmp_path, rows):
    vectors, _ = rows
    path = database(tmp_path, vectors, "float16")
    shape, dtype, offset = read_npy_header(path)
    assert (shape, dtype) == ((N, DIM), np.dtype(np.float16)) and path.stat().st_size == offset + N * DIM * 2
    db = Database.open(path, fresh=True)  # content hashed and checked finite, float16 values
    assert db.manifest["store"] == "float16"
    assert np.array_equal(np.asarray(db.vectors, dtype=np.float32), vectors.astype(np.float16).astype(np.float32))
    db.verify()
    assert "store" not in Database.open(database(tmp_path, vectors, "float32", "f32.npy")).manifest  # as before


def test_exact_reranking_equals_float32_up_to_float16_rounding(tmp_path, rows):
    vectors, queries = rows
    index, _ = ix.build_index(vectors, "ivfpq", seed=0)
    ix.set_search_params(index, {"nprobe": 8})
    f32 = Database.open(database(tmp_path, vectors, "float32", "a.npy")).vectors
    f16 = Database.open(database(tmp_path, vectors, "float16", "b.npy")).vectors
    s32, i32 = ix.search_reranked(index, f32, queries, K, pool_factor=10)
    s16, i16 = ix.search_reranked(index, f16, queries, K, pool_factor=10)
    # float16 keeps 11 bits: a cosine moves by at most a few 1e-4, and ids differ only where
    # two candidates' float32 cosines are that close: every id the float16 store returns has
    # a float32 cosine within that rounding of the float32 ranking's at its rank.
    error = np.abs(s32 - s16).max()
    assert error < 2e-3
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    rows = vectors[i16] / np.linalg.norm(vectors[i16], axis=2, keepdims=True)  # (q, k, d)
    float32_of_found = np.einsum("qkd,qd->qk", rows, q)
    assert (float32_of_found >= s32 - 2 * error - 1e-6).all()
    assert (i32 == i16).mean() > 0.9
    # Values float16 holds exactly: the same ids and the same cosines, to float32 rounding.
    exact16 = vectors.astype(np.float16).astype(np.float32)
    e32 = Database.open(database(tmp_path, exact16, "float32", "c.npy")).vectors
    t32, j32 = ix.search_reranked(index, e32, queries, K, pool_factor=10)
    t16, j16 = ix.search_reranked(index, f16, queries, K, pool_factor=10)
    assert np.array_equal(j32, j16) and np.allclose(t32, t16, atol=1e-6)


def test_a_float16_database_builds_searches_adds_and_compacts(tmp_path, rows):
    vectors, queries = rows
    path = database(tmp_path, vectors, "float16")
    index_path = tmp_path / "db.faiss.index"
    build_index_files(path, index_path, show_progress=False, eval_queries=50)
    add_rows(path, index_path, queries[:5], [f"new{i}.jpg" for i in range(5)], auto_compact=False)
    db = Database.open(path, index_path, fresh=True)
    segment = db.vectors_path.parent / db.generation.segments[1].file
    assert read_npy_header(segment)[1] == np.dtype(np.float16)
    _, ids = search_database(db, queries[:5], K, pool_factor=10)
    assert list(ids[:, 0]) == [N + i for i in range(5)]
    _, exact_ids = search_database(Database.open(path), queries[:5], K, pool_factor=10)  # no index: exact
    assert list(exact_ids[:, 0]) == [N + i for i in range(5)]
    manifest = compact(path, index_path)
    assert manifest["store"] == "float16" and read_npy_header(path)[1] == np.dtype(np.float16)
    back = compact(path, index_path, store="float32")
    assert "store" not in back and read_npy_header(path)[1] == np.dtype(np.float32)
    db = Database.open(path, index_path, fresh=True)
    _, ids = search_database(db, queries[:5], K, pool_factor=10)
    assert list(ids[:, 0]) == [N + i for i in range(5)]


def test_values_beyond_float16_are_refused(tmp_path, rows):
    vectors, _ = rows
    big = vectors.copy()
    big[7, 3] = 1e5
    np.save(tmp_path / "src.npy", big)
    (tmp_path / "names.txt").write_text("".join(f"{i}\n" for i in range(N)))
    with pytest.raises(DatabaseError, match="row 7 holds a value beyond float16's range"):
        import_vectors(tmp_path / "src.npy", tmp_path / "names.txt", tmp_path / "out.npy", store="float16")
    assert not (tmp_path / "out.npy").exists()
    with pytest.raises(DatabaseError, match="new vector 7 .*beyond float16's range"):
        database(tmp_path, big, "float16", "direct.npy")
    with pytest.raises(DatabaseError, match="unknown store 'float8'"):
        database(tmp_path, vectors, "float8", "other.npy")


def test_the_default_store_is_float32_unless_a_bound_is_set(monkeypatch):
    """float16 did not measure faster while the rows stay in memory, so no size turns it on by
    itself; the bound is one constant (``FLOAT16_STORE_FROM_BYTES``)."""
    import similar_images.db.vectors as vectors_mod

    assert FLOAT16_STORE_FROM_BYTES is None
    assert default_store(40_504, 4096) == default_store(10_000_000, 1280) == "float32"
    monkeypatch.setattr(vectors_mod, "FLOAT16_STORE_FROM_BYTES", 4 << 30)
    rows_at_the_bound = -(-(4 << 30) // (4 * 1280))  # the first row count at or past it
    assert default_store(rows_at_the_bound - 1, 1280) == "float32" and default_store(rows_at_the_bound, 1280) == "float16"
