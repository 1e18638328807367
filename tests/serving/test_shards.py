"""Shards by id range: each searched alone, merged by exact score, equal to the one index up to ties."""

from __future__ import annotations

import numpy as np
import pytest
from _index_data import TinyExtractor, tiny_flat_database, vector_db, write_images

from similar_images.db.build import build_index_files
from similar_images.db.database import Database
from similar_images.search import SimilarImages
from similar_images.serving.shards import ShardSearcher, merge
from similar_images.serving.spec import shard_ranges


def sharded(db: Database, shards: int, **options) -> list[ShardSearcher]:
    return [ShardSearcher(db, start, stop, **options) for start, stop in shard_ranges(db.id_count, shards)]


def merged(searchers, queries, k):
    return merge([s.search(queries, k) for s in searchers], k)


def assert_same_up_to_ties(got, want, tol=1e-5):
    """Same scores rank by rank; the same ids except where two scores tie."""
    (gs, gi), (ws, wi) = got, want
    np.testing.assert_allclose(gs, ws, atol=tol)
    for row in range(len(gi)):
        for rank in range(gi.shape[1]):
            if gi[row, rank] != wi[row, rank]:  # only allowed between tied scores
                tied = np.abs(ws[row] - ws[row, rank]) <= tol
                assert gi[row, rank] in wi[row][tied], (row, rank)


def test_shard_ranges_cover_every_id_once_and_the_last_stays_open():
    assert shard_ranges(10, 3) == ((0, 3), (3, 6), (6, None))
    assert shard_ranges(10, 1) == ((0, None),)
    with pytest.raises(ValueError, match="at most one shard an image"):
        shard_ranges(2, 3)
    with pytest.raises(ValueError, match="at least 1"):
        shard_ranges(10, 0)


@pytest.mark.parametrize("shards", [2, 3])
def test_flat_shards_equal_the_one_index(tmp_path, shards):
    vectors, raw = vector_db(tmp_path, n=1500, dim=32)
    index = tmp_path / "db.faiss.index"
    build_index_files(vectors, index, index_type="flat", show_progress=False)
    one = SimilarImages.open(vectors, index)
    queries = raw[::97] + np.random.default_rng(1).normal(0, 0.05, raw[::97].shape).astype(np.float32)  # (16, 32)
    searchers = sharded(Database.open(vectors, index), shards)
    assert sum(len(s) for s in searchers) == len(one)
    assert_same_up_to_ties(merged(searchers, queries, 10), one.search_vectors(queries, 10))


def test_ivf_shards_keep_their_ids_only_and_never_rank_worse(tmp_path):
    vectors, raw = vector_db(tmp_path, n=4000, dim=32)
    index = tmp_path / "db.faiss.index"
    build_index_files(vectors, index, index_type="ivfpq", nlist=32, show_progress=False)
    one = SimilarImages.open(vectors, index)
    db = Database.open(vectors, index)
    searchers = sharded(db, 2)
    assert [s.index.ntotal for s in searchers] == [2000, 2000]  # each holds its range of the index only
    queries = raw[::50] + np.random.default_rng(2).normal(0, 0.05, raw[::50].shape).astype(np.float32)  # (80, 32)
    got, want = merged(searchers, queries, 10), one.search_vectors(queries, 10)
    # the shards' candidates hold the one index's, and both are re-ranked exactly (shards.py)
    assert np.all(got[0] >= want[0] - 1e-5)
    same = np.mean([set(g) == set(w) for g, w in zip(got[1], want[1])])
    assert same >= 0.9, same
    first_half = searchers[0].search(queries, 10)[1]
    assert np.all((first_half >= 0) & (first_half < 2000))


def test_an_hnsw_index_is_refused_in_one_line(tmp_path):
    vectors, _ = vector_db(tmp_path, n=600, dim=16)
    index = tmp_path / "db.faiss.index"
    build_index_files(vectors, index, index_type="hnsw", show_progress=False)
    with pytest.raises(ValueError, match="shards need a flat or IVF index"):
        ShardSearcher(Database.open(vectors, index), 0, 300)


@pytest.mark.parametrize("shards", [2, 3])
def test_added_rows_go_to_the_last_shard_and_removed_ones_to_none(tmp_path, monkeypatch, shards):
    vectors, index, image_dir = tiny_flat_database(tmp_path, monkeypatch)
    writer = SimilarImages.open(vectors, index, image_dir=image_dir, extractor=TinyExtractor())
    ranges = shard_ranges(writer.database.id_count, shards)  # fixed when serving starts: 12 ids
    writer.add(write_images(image_dir, range(12, 15)), show_progress=False)
    writer.remove(["img001.png", "img013.png"])
    one = SimilarImages.open(vectors, index, image_dir=image_dir, extractor=TinyExtractor())
    db = Database.open(vectors, index)
    searchers = [ShardSearcher(db, start, stop) for start, stop in ranges]
    assert searchers[-1].stop == 15 and sum(len(s) for s in searchers) == len(one) == 13
    queries = np.stack([one.vector(i) for i in (0, 5, 12, 14)])  # (4, 48)
    got = merged(searchers, queries, 13)
    assert not np.isin(got[1], [1, 13]).any()
    assert_same_up_to_ties(got, one.search_vectors(queries, 13))
