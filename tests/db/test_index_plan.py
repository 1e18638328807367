"""The index plan from N (lists, quantizer) and the search parameters measured at build time."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _index_data import indexed_database, vector_db

from similar_images.db import index as ix
from similar_images.db import recall as rc
from similar_images.db import tuning
from similar_images.db.build import build_index_files, build_summary
from similar_images.db.index_plan import FAST_SCAN_PQ, LARGE_PQ, lists_for
from similar_images.evaluation.synthetic import clustered_vectors


def test_coco_size_keeps_the_originals_ivf100_pq16x8():
    plan = ix.plan_index("ivfpq", 40_504, 1280, train_size=ix.DEFAULT_TRAIN_SIZE)
    assert (plan.spec, plan.note, plan.nlist, plan.quantizer) == ("IVF100,PQ16x8", None, 100, "flat")
    assert "40,504" in plan.why  # says why 100, not Faiss' 4 x sqrt(N) = 805


@pytest.mark.parametrize("n, train_size, spec", [
    (100_000, 50_000, "IVF100,PQ16x8"),  # the last size with the original's lists and codes
    (400_000, 200_000, f"IVF{int(4 * math.sqrt(400_000))},PQ{FAST_SCAN_PQ}x4fs"),  # Faiss' 4 x sqrt(N): 2529
    (400_000, 50_000, f"IVF1282,PQ{FAST_SCAN_PQ}x4fs"),  # bounded by the training sample: 50,000 / 39
    (2_000_000, 300_000, f"IVF5656_HNSW32,PQ{FAST_SCAN_PQ}x4fs"),  # past 4096 lists the centroids are a graph
    (10_000_000, 500_000, f"IVF12649_HNSW32,PQ{FAST_SCAN_PQ}x4fs"),
])
def test_lists_follow_n_within_the_training_bound(n, train_size, spec):
    plan = ix.plan_index("ivfpq", n, 1280, train_size=train_size)
    assert plan.spec == spec
    assert plan.nlist * ix.POINTS_PER_CENTROID <= train_size
    assert ("bounded" in plan.why) == (plan.nlist < lists_for(n)[0])
    assert (plan.quantizer == "HNSW32") == (plan.nlist >= 4096)


def test_asked_lists_and_other_types_follow_the_same_rule():
    assert ix.plan_index("ivfpq", 400_000, 64, nlist=300).spec == "IVF300,PQ64x4fs"  # 64 dims: 64 of 1
    assert ix.plan_index("pca-ivfpq", 2_000_000, 4096, train_size=300_000).spec == \
        f"PCA256,IVF5656_HNSW32,PQ{LARGE_PQ}x8"
    assert ix.plan_index("opq-ivfpq", 400_000, 1280, train_size=50_000).spec == f"OPQ{LARGE_PQ}_256,IVF1282,PQ{LARGE_PQ}x8"
    assert ix.plan_index("hnsw", 2_000_000, 64).spec == "HNSW32"


def test_codes_follow_n_and_an_asked_size_must_divide_the_dimension():
    assert ix.plan_index("ivfpq", 40_504, 1280).spec == "IVF100,PQ16x8"  # COCO's size: the original's codes
    plan = ix.plan_index("ivfpq", 400_000, 1280, pq=64, train_size=50_000)
    assert plan.spec == "IVF1282,PQ64x8" and "PQ64 asked for (--pq)" in plan.why
    assert f"PQ{FAST_SCAN_PQ}x4fs past 100,000 vectors" in ix.plan_index("ivfpq", 400_000, 1280).why
    assert ix.plan_index("ivfpq", 400_000, 48, train_size=50_000).spec == "IVF1282,PQ16x4fs"  # the largest dividing 48
    assert ix.plan_index("ivfpq", 400_000, 48, pq=16, train_size=50_000).spec == "IVF1282,PQ16x8"
    # the other IVF types keep 8-bit codes (OPQ's rotation and the PCA are trained for them)
    assert ix.plan_index("opq-ivfpq", 400_000, 1280, train_size=50_000).spec.endswith(f"PQ{LARGE_PQ}x8")
    with pytest.raises(ValueError, match="--pq 24 does not divide the 1280 dimensions.*choose one of: 64, 32, 16, 8"):
        ix.plan_index("ivfpq", 400_000, 1280, pq=24)


def test_an_hnsw_coarse_quantizer_takes_its_search_breadth_from_the_manifest():
    import faiss

    x = clustered_vectors(3000, 32, seed=2)
    index = faiss.index_factory(32, "IVF64_HNSW32,Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(ix.normalize(x))
    params = tuning.ivf_params(index, 24)
    assert params == {"nprobe": 24, "quantizer_efSearch": ix.quantizer_ef_search(24)}
    ix.check_search_params(params, "m.json")
    ix.set_search_params(index, params)
    assert faiss.downcast_index(index.quantizer).hnsw.efSearch == ix.quantizer_ef_search(24)


@pytest.fixture(scope="module")
def split():
    """8,000 clustered 64-d vectors and 100 held-out ones (new photos, not rows)."""
    data = clustered_vectors(8100, 64, seed=5)
    return data[:8000], data[8000:]


@pytest.fixture(scope="module")
def built(split):
    vectors, _ = split
    index, info = ix.build_index(vectors, "ivfpq")
    return index, info, rc.own_queries(vectors, n_queries=100)


def test_the_chosen_nprobe_reaches_the_target_on_held_out_queries(split, built):
    vectors, held_out = split
    index, info, own = built
    choice = tuning.choose_search(index, vectors, own, target=0.9, params=info["search_params"])
    assert choice.reached and choice.recall >= 0.9
    # the cheapest pair reaching the target: every pair tried that reads fewer bytes missed it
    assert all(t["recall"] < 0.9 for t in choice.trials if t["bytes"] < min(
        t["bytes"] for t in choice.trials if t["recall"] >= 0.9))
    assert index.nprobe == choice.search_params["nprobe"]  # set on the index
    _, exact = ix.exact_search(vectors, held_out, 10)
    _, found = ix.search_reranked(index, vectors, held_out, 10, pool_factor=choice.pool_factor)
    assert rc.recall_of_ids(vectors, held_out, found, exact, 10).mean() >= 0.85  # new photos get it too


def test_an_unreachable_target_keeps_the_best_pair_and_says_so(split, built):
    vectors, _ = split
    index, info, own = built
    choice = tuning.choose_search(index, vectors, own, target=1.01, params=info["search_params"])
    assert not choice.reached and "not reached" in choice.why
    assert choice.recall == max(t["recall"] for t in choice.trials)


def test_an_asked_nprobe_is_kept_and_only_the_pool_is_measured(split, built):
    vectors, _ = split
    index, info, own = built
    choice = tuning.choose_search(index, vectors, own, target=0.5, nprobe=3, params=info["search_params"])
    assert choice.search_params == {"nprobe": 3} and {t["nprobe"] for t in choice.trials} == {3}
    assert "--nprobe" in choice.why


def test_the_manifest_records_the_decision_and_build_prints_it(tmp_path):
    vectors_path, _ = vector_db(tmp_path, 5000, 64)
    manifest = build_index_files(vectors_path, recall_target=0.9, show_progress=False)
    plan = manifest["plan"]
    assert plan["nlist"] == 100 and plan["quantizer"] == "flat" and "100 lists" in plan["why"]
    assert plan["nprobe"] == manifest["search_params"]["nprobe"]
    assert plan["pool_factor"] == manifest["pool_factor"] and plan["recall_target"] == 0.9
    assert plan["reached"] is True and plan["recall"] >= 0.9 and plan["trials"]
    summary = build_summary(manifest, tmp_path / "x.index")
    assert f"nprobe {plan['nprobe']} of 100 lists" in summary and "lists: 100 lists" in summary
    assert np.isfinite(manifest["recall"]["recall_at_10"])


@pytest.mark.slow
def test_past_100k_a_fast_scan_index_is_built_grown_and_compacted(tmp_path):
    """Past 100,000 vectors the default codes are fast-scan (PQ..x4fs): built, tuned to the
    target, then rows added, removed and folded in by ``compact``; every live row still finds
    itself first (compaction re-adds the kept rows: fast-scan lists cannot be renumbered)."""
    from similar_images.db.changes import add_rows, remove_rows
    from similar_images.db.compaction import compact
    from similar_images.db.database import Database
    from similar_images.db.searching import search_database

    n, dim = 100_500, 32
    folder, vectors = indexed_database(tmp_path, n, dim, eval_queries=100, recall_target=0.9)
    manifest = json.loads((folder / "db.faiss.index.manifest.json").read_text())
    assert manifest["spec"].endswith(",PQ32x4fs") and manifest["plan"]["reached"]
    extra = clustered_vectors(50, dim, seed=7)
    add_rows(folder / "db.npy", folder / "db.faiss.index", extra, [f"new{i}.jpg" for i in range(50)])
    remove_rows(folder / "db.npy", folder / "db.faiss.index", [f"v{i:05d}.jpg" for i in range(0, 300, 3)])
    compact(folder / "db.npy", folder / "db.faiss.index")
    db = Database.open(folder / "db.npy", folder / "db.faiss.index")
    assert len(db.vectors) == n + 50 - 100
    live = np.r_[[i for i in range(300) if i % 3], 300:400]
    queries = np.r_[vectors[live], extra[:20]]
    expected = [db.names.index(f"v{i:05d}.jpg") for i in live] + [db.names.index(f"new{i}.jpg") for i in range(20)]
    _, ids = search_database(db, queries, 1, pool_factor=int(manifest["pool_factor"]))
    assert (ids[:, 0] == np.array(expected)).mean() >= 0.99
