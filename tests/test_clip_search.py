"""Searching a CLIP database by image and by words: CLI, API and the query path; text queries
refused in one line for a model without a text tower."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _clip_data import clip_database, clip_extractor
from _index_data import tiny_flat_database
from click.testing import CliRunner

from similar_images import features
from similar_images.cli import main
from similar_images.errors import ModelError
from similar_images.search import SimilarImages


@pytest.fixture(scope="module")
def clip_db(tmp_path_factory):
    return clip_database(tmp_path_factory)


def search_cli(*args):
    return CliRunner().invoke(main, ["search", *map(str, args)])


def normalised(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.slow
def test_a_database_image_finds_itself_first_by_path(clip_db):
    names = sorted(p.name for p in clip_db["image_dir"].iterdir())
    queries = [clip_db["image_dir"] / name for name in names[:3]]
    result = search_cli(*queries, "--vectors", clip_db["vectors"], "-k", 3, "--json")
    assert result.exit_code == 0, result.output
    for query, answer in zip(queries, json.loads(result.output)):
        first = answer["results"][0]
        assert first["path"] == query.name and first["score"] >= 0.9999


@pytest.mark.slow
def test_the_query_path_gives_the_extracted_vector(clip_db):
    db = SimilarImages.open(clip_db["vectors"], image_dir=clip_db["image_dir"], device="cpu")
    assert db.model["name"] == "clip-vit-b-32" and db.model["weights"] == "none(seed=0)"
    for image_id in range(len(db)):
        query = db.embed([db.image_path(image_id)])[0]  # decoded and embedded as a query
        stored = db.vector(image_id)  # decoded and embedded by the extraction's threads
        np.testing.assert_allclose(query, stored, rtol=1e-4, atol=1e-5)
        assert float(normalised(query) @ normalised(stored)) >= 0.9999


@pytest.mark.slow
def test_text_search_on_the_cli_ranks_by_cosine_with_the_text_tower(clip_db):
    texts = ["a red bicycle", "a cat on a sofa"]
    result = search_cli("--text", texts[0], "--text", texts[1], "--vectors", clip_db["vectors"], "-k", 4, "--json")
    assert result.exit_code == 0, result.output
    answers = json.loads(result.output)
    assert [a["query"] for a in answers] == [f"text:{t}" for t in texts]
    db = SimilarImages.open(clip_db["vectors"], index=None, device="cpu")
    cosines = normalised(clip_extractor().encode_text(texts)) @ normalised(np.asarray(db.database.vectors)).T
    for answer, row in zip(answers, cosines):  # brute force: the same 4 images, the same scores
        assert [r["id"] for r in answer["results"]] == list(np.argsort(-row, kind="stable")[:4])
        np.testing.assert_allclose([r["score"] for r in answer["results"]], np.sort(row)[::-1][:4], atol=1e-5)
    plain = search_cli("--text", texts[0], "--vectors", clip_db["vectors"], "-k", 2)
    assert plain.exit_code == 0 and plain.output.startswith(f"text:{texts[0]}:\n")


@pytest.mark.slow
def test_text_search_through_the_api(clip_db):
    from fastapi.testclient import TestClient

    from similar_images.service.app import create_app
    from similar_images.service.config import ServiceConfig
    from similar_images.service.engine import Engine

    db = SimilarImages.open(clip_db["vectors"], clip_db["index"], image_dir=clip_db["image_dir"], device="cpu")
    with TestClient(create_app(Engine(db, ServiceConfig()))) as client:
        assert client.get("/api/health").json()["text_queries"] is True
        answer = client.post("/api/search", json={"text": "a red bicycle", "k": 3})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["query"] == {"kind": "text", "text": "a red bicycle", "id": None, "url": None, "width": None,
                                 "height": None}
        expected = db.search_text("a red bicycle", k=3)
        assert [h["id"] for h in body["results"]] == [r.id for r in expected]
        assert body["timings"]["model_ms"] > 0
        for bad in ("", "   ", 5, "x" * 1001):
            refused = client.post("/api/search", json={"text": bad})
            assert refused.status_code == 422 and "text:" in refused.json()["error"]


def test_text_queries_on_a_database_without_a_text_tower_are_refused_in_one_line(tmp_path, monkeypatch):
    vectors, index, image_dir = tiny_flat_database(tmp_path, monkeypatch)

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded to refuse a text query")

    monkeypatch.setattr(features, "get_extractor", no_model)
    result = search_cli("--text", "a red bicycle", "--vectors", vectors)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == ["error: the database's model tiny has no text tower: text queries need a CLIP database "
                     "(similar-images extract --model clip-vit-b-32)"]
    db = SimilarImages.open(vectors, index)
    with pytest.raises(ModelError, match="model tiny has no text tower"):
        db.search_text("a red bicycle")


def test_the_api_refuses_text_queries_without_a_text_tower(make_client_for_tiny):
    client = make_client_for_tiny
    assert client.get("/api/health").json()["text_queries"] is False
    refused = client.post("/api/search", json={"text": "a red bicycle"})
    assert refused.status_code == 422
    assert refused.json()["error"].startswith("the database's model tiny has no text tower")


@pytest.fixture
def make_client_for_tiny(tmp_path, monkeypatch):
    from _index_data import TinyExtractor
    from fastapi.testclient import TestClient

    from similar_images.service.app import create_app
    from similar_images.service.config import ServiceConfig
    from similar_images.service.engine import Engine

    vectors, index, image_dir = tiny_flat_database(tmp_path, monkeypatch)
    db = SimilarImages.open(vectors, index, image_dir=image_dir, extractor=TinyExtractor())
    with TestClient(create_app(Engine(db, ServiceConfig())), raise_server_exceptions=False) as client:
        yield client


@pytest.mark.slow
def test_the_notebook_app_has_a_box_for_words_on_a_clip_database(clip_db, tmp_path, monkeypatch):
    from similar_images.ui.image_app import SimilarImagesApp
    from similar_images.ui.words_app import WordsAndImagesApp, search_app

    db = SimilarImages.open(clip_db["vectors"], clip_db["index"], image_dir=clip_db["image_dir"], device="cpu")
    app = search_app(db, k=4, seed=0)
    assert isinstance(app, WordsAndImagesApp)
    app.text_box.value = "a red bicycle"  # typed, then Enter
    assert app.error is None and [r.id for r in app.results] == [r.id for r in db.search_text("a red bicycle", k=4)]
    assert len(app.grid.children) == 4 and "a red bicycle" in app.query_label.value
    assert app.duplicates_button.disabled  # words have no near-duplicates
    assert app.search_text("   ") == [] and app.error == "type a few words first"
    app.result_buttons[0].click()  # and on from a picture, as in the plain app
    assert app.error is None and app.results[0].score >= 0.9999
    vectors, index, image_dir = tiny_flat_database(tmp_path, monkeypatch)
    plain = search_app(SimilarImages.open(vectors, index, image_dir=image_dir), k=4)
    assert type(plain) is SimilarImagesApp and not hasattr(plain, "text_box")


@pytest.mark.slow
def test_evaluate_runs_on_a_clip_database(clip_db, tmp_path):
    result = CliRunner().invoke(main, ["evaluate", "fidelity", "robustness", "--vectors", str(clip_db["vectors"]),
                                       "--queries", "4", "--edits", "hflip,crop70", "-o", str(tmp_path / "ev"),
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    saved = sorted(p.name for p in (tmp_path / "ev").iterdir())
    assert any(name.startswith("fidelity") for name in saved) and any(name.startswith("robustness") for name in saved)
