"""The API in-process: search by upload and id, images by id, health, stats, JSON errors."""

from __future__ import annotations

import pytest
from _service_data import image_bytes


def upload(client, data: bytes, k=None, filename="photo.png", mime="image/png"):
    fields = {} if k is None else {"k": str(k)}
    return client.post("/api/search", files={"image": (filename, data, mime)}, data=fields)


def test_an_uploaded_image_of_the_collection_finds_itself_first(client):
    response = upload(client, image_bytes(3), k=4)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == {"kind": "upload", "id": None, "url": None, "text": None, "width": 40, "height": 30}
    assert len(body["results"]) == 4
    top = body["results"][0]
    assert top["id"] == 3 and top["name"] == "img003.png" and top["score"] == pytest.approx(1.0, abs=1e-5)
    assert top["thumbnail_url"] == "/api/images/3/thumbnail" and top["image_url"] == "/api/images/3"
    scores = [hit["score"] for hit in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert set(body["timings"]) == {"decode_ms", "model_ms", "search_ms", "total_ms", "batch_size"}
    assert body["timings"]["batch_size"] == 1 and body["timings"]["total_ms"] > 0


def test_each_hit_says_what_its_score_means(client, monkeypatch):
    from similar_images.models import score_bands

    unmeasured = upload(client, image_bytes(3), k=3).json()  # the tiny test model: no verdicts
    assert unmeasured["no_close_match"] is None and all(h["verdict"] is None for h in unmeasured["results"])
    assert all(h["score"] == round(h["score"], 6) for h in unmeasured["results"])  # no 1.0000001192092896
    scores = [h["score"] for h in client.post("/api/search", json={"id": 3, "k": 12}).json()["results"]]
    bands = score_bands.Bands(same_photo=0.999, similar=scores[5])  # 1 same photo, 4 similar, 7 unrelated
    monkeypatch.setitem(score_bands.MEASURED, ("tiny", "none"), bands)
    body = client.post("/api/search", json={"id": 3, "k": 12}).json()
    assert body["no_close_match"] is False and body["results"][0]["verdict"] == "same photo"
    expected = [score_bands.verdict(h["score"], bands) for h in body["results"]]
    assert [h["verdict"] for h in body["results"]] == expected and {"similar", "unrelated"} <= set(expected)
    monkeypatch.setitem(score_bands.MEASURED, ("tiny", "none"), score_bands.Bands(same_photo=1.5, similar=1.2))
    assert client.post("/api/search", json={"id": 3}).json()["no_close_match"] is True


def test_the_api_answers_as_the_in_process_search(client):
    db = client.engine.db
    expected = db.search(image_bytes(7), k=5)
    got = upload(client, image_bytes(7), k=5).json()["results"]
    assert [(h["id"], h["name"]) for h in got] == [(r.id, r.path) for r in expected]
    assert [h["score"] for h in got] == pytest.approx([r.score for r in expected], abs=1e-5)


def test_an_id_query_runs_no_model(client):
    calls = client.engine.db.extractor.calls
    response = client.post("/api/search", json={"id": 5, "k": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["query"]["kind"] == "id" and body["query"]["id"] == 5
    assert [h["id"] for h in body["results"]][0] == 5 and len(body["results"]) == 3
    assert client.engine.db.extractor.calls == calls


def test_the_client_file_name_and_mime_type_are_not_trusted(client):
    # a PNG sent as "x.exe" with a made-up type is still searched; a text sent as a JPEG is refused
    assert upload(client, image_bytes(2), filename="x.exe", mime="application/x-evil").status_code == 200
    refused = upload(client, b"hello, I am text", filename="photo.jpg", mime="image/jpeg")
    assert refused.status_code == 400
    assert "not an image" in refused.json()["error"]


@pytest.mark.parametrize("k", [0, -1, 101, "many", "1.5"])
def test_a_bad_k_is_422(client, k):
    response = upload(client, image_bytes(1), k=k)
    assert response.status_code == 422 and response.json()["error"].startswith("k (results wanted): ")


@pytest.mark.parametrize("body,status,words", [
    ({"id": 12}, 404, "no image with id 12"),
    ({"id": -1}, 404, "no image with id -1"),
    ({"id": "3"}, 422, "id: an integer"),
    ({"id": True}, 422, "id: an integer"),
    ({"id": 1.5}, 422, "id: an integer"),
    ({"k": 3}, 422, '{"id": N}'),
    ([1, 2], 422, "a JSON object"),
    ({"url": "http://example.org/a.jpg"}, 400, "--allow-urls"),
])
def test_bad_json_queries(client, body, status, words):
    response = client.post("/api/search", json=body)
    assert response.status_code == status
    assert words in response.json()["error"]


def test_a_body_that_is_not_json_or_multipart(client):
    assert client.post("/api/search", content=b"{", headers={"content-type": "application/json"}).json() == {
        "error": "body: not valid JSON"}
    response = client.post("/api/search", content=b"id=3", headers={"content-type": "text/plain"})
    assert response.status_code == 415 and "multipart/form-data" in response.json()["error"]


def test_a_multipart_body_without_the_image_field(client):
    response = client.post("/api/search", files={"photo": ("a.png", image_bytes(1), "image/png")})
    assert response.status_code == 422 and "'image'" in response.json()["error"]


def test_images_are_served_by_id_only(client, tiny_files):
    _, _, image_dir = tiny_files
    original = client.get("/api/images/4")
    assert original.status_code == 200 and original.headers["content-type"] == "image/png"
    assert original.content == (image_dir / "img004.png").read_bytes()
    thumb = client.get("/api/images/4/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:3] == b"\xff\xd8\xff"
    assert client.get("/api/images/4/thumbnail").content == thumb.content  # cached: the same bytes
    assert client.get("/api/images/12").status_code == 404
    assert client.get("/api/images/-3/thumbnail").status_code == 404
    for bad in ("abc", "1.5", "..%2F..%2Fetc%2Fpasswd", "img004.png"):
        response = client.get(f"/api/images/{bad}")
        assert response.status_code in (404, 422) and "error" in response.json()


def test_a_missing_image_file_is_404_not_500(client, tiny_files):
    (tiny_files[2] / "img006.png").unlink()
    for path in ("/api/images/6", "/api/images/6/thumbnail"):
        response = client.get(path)
        assert response.status_code == 404 and "missing" in response.json()["error"]


def test_health_and_stats(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["count"] == 12 and health["model"] == "tiny"
    assert health["index"] == "flat" and health["allow_urls"] is False and health["allow_writes"] is False
    for _ in range(3):
        upload(client, image_bytes(0))
    client.post("/api/search", json={"id": 1})
    stats = client.get("/api/stats").json()
    assert stats["requests"]["upload"]["count"] == 3 and stats["requests"]["id"]["count"] == 1
    upload_stats = stats["requests"]["upload"]
    assert 0 < upload_stats["p50_ms"] <= upload_stats["p95_ms"] <= upload_stats["p99_ms"]
    assert stats["mean_batch_size"] == 1.0 and stats["errors"] == 0


def test_unknown_paths_and_methods_are_json_errors(client):
    assert client.get("/api/nothing").json() == {"error": "Not Found"}
    response = client.put("/api/health")
    assert response.status_code == 405 and response.json() == {"error": "Method Not Allowed"}
    off = client.delete("/api/images/1")  # writes are off: said, not a bare 405
    assert off.status_code == 405 and "--allow-writes" in off.json()["error"]
    assert "--allow-writes" in client.post("/api/images", files={"images": ("a.png", b"x")}).json()["error"]
    head = client.head("/")
    assert head.status_code == 200 and head.headers["content-type"].startswith("text/html")


def test_an_id_and_a_url_together_are_refused(client):
    response = client.post("/api/search", json={"id": 1, "url": "http://example.org/x.jpg"})
    assert response.status_code == 422 and response.json()["error"] == "body: give one of id, url or text, not id and url"
    bad_k = client.post("/api/search", json={"id": 1, "k": 0})
    assert bad_k.status_code == 422 and bad_k.json()["error"].startswith("k (results wanted): between 1 and")


def test_an_internal_error_is_json_without_a_stack_trace(client, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("secret detail /srv/db.npy line 3")

    monkeypatch.setattr(client.engine, "search_id", broken)
    response = client.post("/api/search", json={"id": 1})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (see the server log)"}
    assert "secret" not in response.text and "Traceback" not in response.text
    assert "secret detail" in caplog.text  # the log keeps the details
    assert client.get("/api/stats").json()["errors"] == 1


def test_the_page_and_its_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page.text and "http" not in page.text.split("<body>")[0].replace(
        'name="viewport"', "")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert client.get("/static/../engine.py").status_code == 404


def test_openapi_and_docs(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/search", "/api/images/{image_id}", "/api/images/{image_id}/thumbnail", "/api/health",
            "/api/stats"} <= set(spec["paths"])
    content = spec["paths"]["/api/search"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(content)
    for page, asset in [("/docs", "/static/docs/swagger-ui-bundle.js"), ("/redoc", "/static/docs/redoc.standalone.js")]:
        html = client.get(page)
        assert html.status_code == 200 and asset in html.text
        assert "cdn" not in html.text.lower() and "fonts.googleapis" not in html.text  # nothing from outside
        assert client.get(asset).status_code == 200


def test_duplicates_of_an_id(client):
    from similar_images.duplicates import duplicates_of

    db = client.engine.db
    no_default = client.get("/api/images/5/duplicates")  # the tiny test model has no calibrated threshold
    assert no_default.status_code == 422 and "threshold" in no_default.json()["error"]
    body = client.get("/api/images/5/duplicates", params={"threshold": 0.5, "k": 11}).json()
    expected = duplicates_of(db, 5, threshold=0.5, k=11)
    assert expected  # pattern images of the tiny model score above 0.5 with several others
    assert body["id"] == 5 and body["threshold"] == 0.5
    assert [(h["id"], h["score"]) for h in body["results"]] == [(r.id, pytest.approx(r.score)) for r in expected]
    assert all(h["id"] != 5 and h["score"] >= 0.5 for h in body["results"])
    assert client.get("/api/images/99/duplicates", params={"threshold": 0.5}).status_code == 404
    assert client.get("/api/images/5/duplicates", params={"threshold": 2}).status_code == 422
