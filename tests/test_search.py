"""search.py: SimilarImages.open / search / add / remove with every kind of query."""

from __future__ import annotations

import http.server
import io
import threading
from functools import partial

import numpy as np
import pytest
from _index_data import (
    TinyExtractor,
    pattern_image,
    register_tiny,
    tiny_flat_database,
    vector_db,
    write_images,
)
from PIL import Image

from similar_images.db.build import build_index_files
from similar_images.errors import DatabaseError, ImageError, ModelError
from similar_images.features import extractor_for
from similar_images.search import SearchResult, SimilarImages


@pytest.fixture
def tiny_db(tmp_path, monkeypatch):
    """12 pattern images embedded with the tiny model, a flat index; the model is registered."""
    return tiny_flat_database(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def ivfpq_db(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ivfpq")
    vectors, _ = vector_db(folder, 2000, 64)
    build_index_files(vectors, folder / "db.faiss.index", show_progress=False, eval_queries=20)
    return SimilarImages.open(vectors, folder / "db.faiss.index")


def test_warm_computes_the_norms_once_and_searches_the_same(ivfpq_db, monkeypatch):
    from similar_images.db import index as ix

    db = SimilarImages.open(ivfpq_db.database.vectors_path, ivfpq_db.database.index_path)
    queries = np.asarray(db.database.vectors[:20]) * 1.1 + 0.01  # near, not on, stored vectors
    cold_scores, cold_ids = db.search_vectors(queries, 10)
    assert db.database.known_norms is None  # a single search makes no pass over the whole file
    db.warm(model=False)
    norms = db.database.known_norms
    np.testing.assert_allclose(norms, np.linalg.norm(np.asarray(db.database.vectors), axis=1), rtol=1e-6)
    passed = []
    real = ix.search_reranked
    monkeypatch.setattr(ix, "search_reranked", lambda *a, **kw: passed.append(kw["norms"]) or real(*a, **kw))
    warm_scores, warm_ids = db.search_vectors(queries, 10)
    assert passed and passed[0] is norms  # the re-ranking reads each candidate row once
    assert (warm_ids == cold_ids).mean() > 0.99  # only exact ties may swap
    np.testing.assert_allclose(warm_scores, cold_scores, atol=1e-6)


def test_a_warm_database_stays_warm_after_a_change(tiny_db):
    vectors, index, image_dir = tiny_db
    db = SimilarImages.open(vectors, index, image_dir=image_dir)
    db.warm(model=False)
    db.remove(["img000.png"])
    assert len(db) == 11 and db.database.known_norms.shape == (db.database.id_count,) == (12,)  # a tombstone
    cold = SimilarImages.open(vectors, index, image_dir=image_dir)
    cold.remove(["img001.png"])
    assert cold.database.known_norms is None  # a single change makes no pass over the file


def test_open_without_files_names_the_missing_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatabaseError, match="ms_coco_file_list.txt.saved_predictions.npy"):
        SimilarImages.open()


def test_open_uses_the_index_beside_the_vectors_else_exact_search(tiny_db):
    from similar_images.db.database import default_index_path

    vectors, index, _ = tiny_db
    assert default_index_path(vectors) == index  # the fixture names them as the README steps do
    assert SimilarImages.open(vectors).has_index
    index.rename(index.with_name("elsewhere.index"))
    db = SimilarImages.open(vectors)
    assert not db.has_index and db.search(3, k=1)[0].id == 3


def test_an_image_of_the_collection_finds_itself_first(tiny_db):
    vectors, index, image_dir = tiny_db
    for idx in (index, None):  # indexed and exact search agree
        db = SimilarImages.open(vectors, idx)
        hits = db.search(str(image_dir / "img005.png"), k=3)
        assert isinstance(hits[0], SearchResult) and len(hits) == 3
        assert hits[0].id == 5 and hits[0].path == "img005.png"
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert hits[0].score >= hits[1].score >= hits[2].score


def test_every_query_kind_gives_the_same_answer(tiny_db):
    vectors, index, image_dir = tiny_db
    db = SimilarImages.open(vectors, index)
    path = image_dir / "img007.png"
    data = path.read_bytes()
    for query in (path, str(path), data, Image.open(io.BytesIO(data)), np.asarray(Image.open(path).convert("RGB")),
                  7, np.int64(7), db.vector(7)):
        assert db.search(query, k=1)[0].id == 7, type(query)


def test_a_url_query_is_fetched(tiny_db):
    vectors, index, image_dir = tiny_db
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(image_dir))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        db = SimilarImages.open(vectors, index)
        url = f"http://127.0.0.1:{server.server_port}"
        assert db.search(f"{url}/img002.png", k=1)[0].id == 2
        with pytest.raises(ImageError, match="404"):
            db.search(f"{url}/missing.png")
    finally:
        server.shutdown()


def test_many_queries_run_the_model_once(tiny_db):
    vectors, index, image_dir = tiny_db
    extractor = TinyExtractor()
    db = SimilarImages.open(vectors, index, extractor=extractor)
    results = db.search([image_dir / "img001.png", 3, image_dir / "img009.png"], k=2)
    assert [r[0].id for r in results] == [1, 3, 9]
    assert extractor.calls == 1


def test_an_id_query_needs_no_model(tiny_db, monkeypatch):
    from similar_images import features

    vectors, index, _ = tiny_db
    monkeypatch.setitem(features.MODELS, "tiny", "no_such_module:create")  # would fail if built
    db = SimilarImages.open(vectors, index)
    assert db.search(4, k=1)[0].id == 4


def test_bad_queries_say_what_is_wrong(tiny_db):
    vectors, index, _ = tiny_db
    db = SimilarImages.open(vectors, index)
    with pytest.raises(ValueError, match=r"image id 12 out of range: the database holds ids 0..11"):
        db.search(12)
    with pytest.raises(ValueError, match=r"query vector of shape \(3,\), expected \(48,\)"):
        db.search(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="k must be at least 1"):
        db.search(1, k=0)
    with pytest.raises(ValueError, match="not a query"):
        db.search(True)
    with pytest.raises(ValueError, match="cannot search for a dict"):
        db.search({"a": 1})
    with pytest.raises(ImageError, match="not found"):
        db.search("no/such/file.jpg")


def test_results_accessors(tiny_db):
    vectors, index, image_dir = tiny_db
    db = SimilarImages.open(vectors, index)
    assert len(db) == 12 and db.names[3] == "img003.png" and db.model["name"] == "tiny"
    hit = db.search(3, k=100)
    assert len(hit) == 12  # k above the collection size: everything, ranked
    assert db.image_path(hit[0]) == image_dir / "img003.png" == db.image_path(3)
    assert db.vector(3).shape == (48,) and db.vector(3).dtype == np.float32
    assert db.search([], k=3) == []


def test_a_query_model_other_than_the_databases_is_refused(tiny_db):
    vectors, index, _ = tiny_db
    with pytest.raises(ModelError, match=r"weights 'none\(seed=1\)' vs 'none\(seed=0\)'"):
        SimilarImages.open(vectors, index, extractor=TinyExtractor(seed=1))


def test_extractor_for_rebuilds_the_manifest_model(monkeypatch):
    register_tiny(monkeypatch)
    extractor = extractor_for(TinyExtractor(seed=3).describe())
    assert isinstance(extractor, TinyExtractor) and extractor.seed == 3
    with pytest.raises(ModelError, match="weights from a file"):
        extractor_for({"name": "vgg16", "weights": "file:my.h5"})
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        extractor_for({"name": "nope", "weights": "imagenet"})


def test_a_query_model_on_openvino_skips_the_batch_compile_and_its_timing(monkeypatch):
    import similar_images.features as features

    asked = {}
    monkeypatch.setattr(features, "get_extractor", lambda name, **options: asked.update(options) or TinyExtractor())
    monkeypatch.setattr(features, "check_extractor", lambda extractor, model: None)
    extractor_for({"name": "efficientnet-lite0", "weights": "pretrained:x.pth", "runtime": "openvino"})
    assert asked == {"weights": "pretrained:x.pth", "runtime": "openvino", "lazy_compile": True,
                     "batch_size": features.QUERY_BATCH_SIZE}


def test_self_match_and_recall_on_an_ivfpq_database(ivfpq_db):
    db = ivfpq_db
    ids = list(range(0, 2000, 41))
    results = db.search(ids, k=10)
    assert [r[0].id for r in results] == ids
    assert max(abs(r[0].score - 1.0) for r in results) <= 1e-5
    exact = SimilarImages.open(db.database.vectors_path, None).search(ids, k=10)
    recall = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(results, exact)])
    assert recall >= 0.95
    approx = db.search(ids[:5], k=3, rerank=False)
    assert any(abs(r[0].score - 1.0) > 1e-5 for r in approx)  # PQ scores are approximate


def test_add_a_folder_then_search_finds_the_new_images(tiny_db, tmp_path):
    vectors, index, image_dir = tiny_db
    db = SimilarImages.open(vectors, index)
    new_dir = tmp_path / "new"
    write_images(new_dir, [100, 101], prefix="new")
    (new_dir / "broken.jpg").write_text("not an image")
    report = db.add(new_dir, show_progress=False)
    assert len(report.added) == 2 and report.added[0].endswith("new/new100.png")
    assert [s["reason"] for s in report.skipped] == ["not an image"]
    assert len(db) == 14
    hit = db.search(pattern_image(101), k=1)[0]
    assert hit.path.endswith("new101.png") and hit.score == pytest.approx(1.0, abs=1e-5)
    again = db.add([new_dir / "new100.png", image_dir / "img001.png"], show_progress=False)
    assert again.added == [] and len(again.already_present) == 2 and len(db) == 14
    reopened = SimilarImages.open(vectors, index)
    assert len(reopened) == 14 and reopened.search(pattern_image(100), k=1)[0].path == report.added[0]


def test_add_refuses_urls_and_empty_folders(tiny_db, tmp_path):
    vectors, index, _ = tiny_db
    db = SimilarImages.open(vectors, index)
    with pytest.raises(ValueError, match="not URLs: http://example.org/a.jpg"):
        db.add(["http://example.org/a.jpg"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files to add"):
        db.add(tmp_path / "empty")
    assert len(SimilarImages.open(vectors, index)) == 12


def test_add_inside_the_image_folder_stores_relative_names(tiny_db):
    vectors, index, image_dir = tiny_db
    db = SimilarImages.open(vectors, index)
    (path,) = write_images(image_dir / "sub", [200], prefix="x")
    assert db.add([path], show_progress=False).added == ["sub/x200.png"]


def test_removed_images_never_appear(tiny_db):
    vectors, index, image_dir = tiny_db
    db = SimilarImages.open(vectors, index)
    removed = db.remove([str(image_dir / "img005.png"), "img006.png"])
    assert removed == ["img005.png", "img006.png"] and len(db) == 10
    for query in (pattern_image(5), pattern_image(6), 0):
        assert not {"img005.png", "img006.png"} & {h.path for h in db.search(query, k=20)}
    with pytest.raises(ValueError, match="not in the database: img005.png"):
        db.remove(["img005.png"])


def test_the_pool_factor_recorded_by_the_build_is_used(tiny_db):
    import json

    from similar_images.fileio.files import manifest_path

    vectors, index, _ = tiny_db
    manifest = json.loads(manifest_path(index).read_text())
    from similar_images.db.recall import POOL_FACTORS

    assert manifest["pool_factor"] in POOL_FACTORS
    manifest["pool_factor"] = 37
    manifest_path(index).write_text(json.dumps(manifest))
    assert SimilarImages.open(vectors, index).pool_factor == 37
    assert SimilarImages.open(vectors, index, pool_factor=5).pool_factor == 5
