"""index.py and ranking.py: Faiss index types, exact search, re-ranking, removal."""

from __future__ import annotations

import numpy as np
import pytest

from similar_images.db import index as ix
from similar_images.db import ranking
from similar_images.db import recall as rc
from similar_images.db.index_edits import remove_ids
from similar_images.db.recall import recall_of_ids
from similar_images.evaluation.synthetic import clustered_vectors


@pytest.fixture(scope="module")
def collection() -> np.ndarray:
    return clustered_vectors(1200, 32, seed=3)  # (1200, 32) float32, raw


def brute_force(vectors, queries, k):
    """Reference: full sort of exact cosines."""
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    s = q @ v.T
    ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, ids, axis=1), ids


def test_plan_keeps_the_original_settings_for_a_large_collection():
    plan = ix.plan_index("ivfpq", 40_504, 4096)
    assert plan.spec == "IVF100,PQ16x8" and plan.note is None
    assert ix.plan_index("pca-ivfpq", 40_504, 4096).spec == "PCA256,IVF100,PQ16x8"
    assert ix.plan_index("opq-ivfpq", 40_504, 1280).spec == "OPQ16_256,IVF100,PQ16x8"
    assert ix.plan_index("opq-ivfpq", 40_504, 64).spec == "OPQ16_64,IVF100,PQ16x8"  # no wider than the vectors


def test_plan_falls_back_for_small_collections_and_says_so():
    small = ix.plan_index("ivfpq", 500, 64)
    assert small.index_type == "flat" and "too few" in small.note
    medium = ix.plan_index("ivfpq", 2000, 64)
    assert medium.spec == "IVF51,PQ16x5"
    assert "51 lists instead of 100" in medium.note and "5-bit" in medium.note


def test_unknown_index_type_lists_the_choices():
    with pytest.raises(ValueError, match="choose one of: ivfpq, flat, pca-ivfpq, opq-ivfpq, hnsw"):
        ix.plan_index("annoy", 10_000, 64)


def test_ivfpq_needs_a_dimension_divisible_by_16():
    with pytest.raises(ValueError, match="divisible by 16"):
        ix.plan_index("ivfpq", 10_000, 100)


def test_exact_search_matches_brute_force(collection):
    queries = clustered_vectors(7, 32, seed=9)
    scores, ids = ranking.exact_search(collection, queries, 10)
    ref_scores, ref_ids = brute_force(collection, queries, 10)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    assert (ids == ref_ids).mean() > 0.99  # only exact ties may swap


def test_exact_search_with_k_above_count_returns_everything():
    vectors = clustered_vectors(5, 16)
    scores, ids = ranking.exact_search(vectors, vectors[:1], 50)
    assert ids.shape == (1, 5) and sorted(ids[0]) == [0, 1, 2, 3, 4]
    assert ids[0, 0] == 0 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_rerank_rescores_candidates_exactly_and_ignores_missing(collection):
    q = collection[[10]] * 3.0  # scale does not change cosine
    cands = np.array([[5, -1, 10, 7, 5]])
    scores, ids = ranking.rerank(collection, q, cands, 4)
    assert ids[0, 0] == 10 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert set(ids[0, :3]) == {5, 7, 10} and ids[0, 3] == -1 and scores[0, 3] == -np.inf
    ref, _ = brute_force(collection[[5, 7]], q, 2)
    np.testing.assert_allclose(sorted(scores[0, 1:3]), sorted(ref[0]), atol=1e-5)


def test_normalize_keeps_zero_rows_zero():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(ix.normalize(x), [[0.6, 0.8], [0.0, 0.0]])


@pytest.mark.parametrize("index_type", list(ix.INDEX_TYPES))
def test_every_index_type_builds_and_finds_exact_duplicates(collection, index_type):
    index, info = ix.build_index(collection, index_type)
    ix.set_search_params(index, info["search_params"])
    assert index.ntotal == len(collection)
    rows = np.arange(0, len(collection), 97)
    scores, ids = ix.search_reranked(index, collection, collection[rows], 5)
    assert (ids[:, 0] == rows).all()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


@pytest.mark.parametrize("index_type", ["ivfpq", "pca-ivfpq", "opq-ivfpq"])
def test_rerank_brings_recall_at_10_above_095(index_type):
    vectors = clustered_vectors(2000, 64, seed=5)
    rng = np.random.default_rng(1)
    # Queries near, not on, stored vectors: the realistic case for a new photo.
    queries = vectors[rng.choice(2000, 100, replace=False)] * rng.uniform(0.5, 1.5, (100, 64)).astype(np.float32)
    index, info = ix.build_index(vectors, index_type)
    ix.set_search_params(index, info["search_params"])
    _, exact = brute_force(vectors, queries, 10)
    _, raw = ix.search(index, queries, 10)
    _, reranked = ix.search_reranked(index, vectors, queries, 10)
    recall = recall_of_ids(vectors, queries, reranked, exact, 10).mean()
    assert recall >= 0.95
    assert recall > recall_of_ids(vectors, queries, raw, exact, 10).mean()  # compressed scores alone are worse


def test_measure_recall_reports_both_kinds(collection):
    index, info = ix.build_index(collection, "ivfpq")
    ix.set_search_params(index, info["search_params"])
    recall = rc.measure_recall(index, collection, n_queries=50)
    assert recall["queries"] == 50 and recall["k"] == 10
    assert recall["recall_at_10"] >= 0.95 and recall["recall_at_1"] == 1.0
    assert 0 < recall["recall_at_10_without_rerank"] <= 1


@pytest.mark.parametrize("index_type", list(ix.INDEX_TYPES))
def test_remove_rows_renumbers_ids_to_the_kept_rows(collection, index_type):
    vectors = collection
    index, info = ix.build_index(vectors, index_type)
    ix.set_search_params(index, info["search_params"])
    removed = [0, 5, 6, 700, 1199]
    kept = np.setdiff1d(np.arange(1200), removed)
    remove_ids(index, removed, kept_vectors=vectors[kept])
    assert index.ntotal == len(kept)
    probe = np.arange(0, len(kept), 53)  # new row numbers
    _, ids = ix.search_reranked(index, vectors[kept], vectors[kept][probe], 3)
    assert (ids[:, 0] == probe).all()
    _, all_ids = ix.search(index, vectors[kept][probe], 20)
    assert all_ids.max() < len(kept)


@pytest.mark.parametrize("index_type", list(ix.INDEX_TYPES))
def test_add_vectors_gives_the_next_ids(collection, index_type):
    index, info = ix.build_index(collection[:1100], index_type)
    ix.set_search_params(index, info["search_params"])
    ix.add_vectors(index, collection[1100:1110])
    _, ids = ix.search_reranked(index, collection[:1110], collection[[1100, 1109]], 1)
    assert ids[:, 0].tolist() == [1100, 1109]


def test_write_and_read_index_round_trip(tmp_path, collection):
    index, _ = ix.build_index(collection, "flat")
    ix.write_index(index, tmp_path / "a.index")
    assert ix.read_index(tmp_path / "a.index").ntotal == len(collection)
    assert not list(tmp_path.glob(".*.tmp"))


def test_read_index_names_a_bad_file(tmp_path):
    from similar_images.errors import DatabaseError

    (tmp_path / "bad.index").write_bytes(b"garbage")
    with pytest.raises(DatabaseError, match="bad.index: not a readable Faiss index"):
        ix.read_index(tmp_path / "bad.index")
    with pytest.raises(DatabaseError, match="index file not found"):
        ix.read_index(tmp_path / "none.index")


def test_choose_pool_factor_takes_the_smallest_that_reaches_the_target(collection):
    index, info = ix.build_index(collection, "ivfpq")
    ix.set_search_params(index, info["search_params"])
    factor, recalls = rc.choose_pool_factor(index, collection, n_queries=30, target=0.0)
    assert factor == 10 and list(recalls) == ["10"]
    factor, recalls = rc.choose_pool_factor(index, collection, n_queries=30, target=1.01)  # unreachable
    assert factor == 100 and list(recalls) == [str(f) for f in rc.POOL_FACTORS] and "30" in recalls
    assert recalls["10"] <= recalls["100"]


def test_without_self_leaves_out_the_query():
    ids = np.array([[4, 1, 2], [0, 4, -1]])
    np.testing.assert_array_equal(rc.without_self(ids, np.array([4, 4]), 2), [[1, 2], [0, -1]])


def test_a_small_training_sample_plans_for_the_sample_not_the_collection():
    vectors = clustered_vectors(3000, 64, seed=3)  # enough for IVF100 + 8-bit PQ, if trained on all
    index, info = ix.build_index(vectors, "ivfpq", train_size=1200, show_progress=False)
    assert info["train_size"] == 1200 and "IVF30," in info["spec"] and index.ntotal == 3000
