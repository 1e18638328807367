"""Writes through the API (--allow-writes, token): crash-safe add/remove, old-or-new state."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from _index_data import TinyExtractor, register_tiny
from _live import free_port, live_server
from _service_data import image_bytes
from _waiting import patience

from similar_images.search import SimilarImages
from similar_images.service.app import create_app

TOKEN = "write-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def writer(make_client):
    return make_client(token=TOKEN, allow_writes=True)


def add(client, *datas, filename="../../etc/evil.png"):
    files = [("images", (filename, data, "image/png")) for data in datas]
    return client.post("/api/images", files=files, headers=AUTH)


def test_writes_are_off_unless_enabled(client):
    response = client.post("/api/images", files=[("images", ("a.png", image_bytes(20), "image/png"))])
    assert response.status_code in (404, 405) and "error" in response.json()
    assert client.delete("/api/images/1").status_code == 405


def test_writes_need_the_token(writer):
    assert writer.post("/api/images", files=[("images", ("a.png", image_bytes(20), "image/png"))]).status_code == 401
    assert writer.delete("/api/images/1").status_code == 401
    assert writer.delete("/api/images/1", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert writer.get("/api/health", headers=AUTH).json()["count"] == 12


def test_an_added_upload_is_stored_under_its_hash_and_found(writer, tiny_files):
    vectors, index, image_dir = tiny_files
    response = add(writer, image_bytes(20))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 13 and len(body["added"]) == 1
    added = body["added"][0]
    assert added["id"] == 12 and added["name"].startswith("uploads/") and added["name"].endswith(".png")
    assert "evil" not in added["name"] and ".." not in added["name"]  # the client's file name is never used
    assert (image_dir / added["name"]).read_bytes() == image_bytes(20)
    hits = writer.post("/api/search", files={"image": ("q.png", image_bytes(20), "image/png")}, headers=AUTH).json()
    assert hits["results"][0]["id"] == 12 and hits["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert len(SimilarImages.open(vectors, index)) == 13  # committed on disk
    assert writer.engine.db.database.known_norms.shape == (13,)  # the new state is warm: norms of every row
    again = add(writer, image_bytes(20)).json()
    assert again["added"] == [] and again["already_present"][0]["id"] == 12 and again["count"] == 13


def test_a_bad_upload_adds_nothing(writer, tiny_files):
    vectors, index, image_dir = tiny_files
    response = add(writer, image_bytes(21), b"not an image at all")
    assert response.status_code == 400 and "not an image" in response.json()["error"]
    assert not (image_dir / "uploads").exists()
    assert len(SimilarImages.open(vectors, index)) == 12


def test_remove_by_id(writer, tiny_files):
    vectors, index, _ = tiny_files
    response = writer.delete("/api/images/0", headers=AUTH)
    assert response.status_code == 200 and response.json() == {"removed": ["img000.png"], "count": 11}
    db = SimilarImages.open(vectors, index)
    assert "img000.png" not in [db.names[i] for i in db.database.live_ids()] and len(db) == 11
    results = writer.post("/api/search", json={"id": 1, "k": 11}, headers=AUTH).json()["results"]  # 0 is gone
    assert "img000.png" not in [h["name"] for h in results]
    # ids are stable until a compaction: 11 still names img011.png, 0 is gone, 12 never was
    assert writer.get("/api/images/11", headers=AUTH).status_code == 200
    assert writer.delete("/api/images/0", headers=AUTH).status_code == 404
    assert writer.delete("/api/images/12", headers=AUTH).status_code == 404
    assert writer.delete("/api/images/x", headers=AUTH).status_code == 422


def test_searches_during_writes_see_the_old_or_the_new_state(make_engine, tiny_files):
    """Each state is its items' ids and names; a search mixing two states would pair an id with a
    removed item, or a name with another id."""
    engine = make_engine(token=TOKEN, allow_writes=True)
    states = [dict(enumerate(engine.db.names))]
    seen, stop = [], threading.Event()
    with live_server(create_app(engine, warm_up=False)) as url:
        def reader():
            with httpx.Client(base_url=url, headers=AUTH, timeout=patience(60)) as http:
                while not stop.is_set():
                    answer = http.post("/api/search", json={"id": 5, "k": 6})
                    if answer.status_code == 404:
                        continue  # id 5 gone in a state with fewer images
                    seen.append([(h["id"], h["name"]) for h in answer.json()["results"]])

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for thread in threads:
            thread.start()
        with httpx.Client(base_url=url, headers=AUTH, timeout=patience(60)) as http:
            for _ in range(4):  # the first live item; a compaction may renumber the rest
                assert http.delete(f"/api/images/{int(engine.db.database.live_ids()[0])}").status_code == 200
                states.append({int(i): engine.db.names[i] for i in engine.db.database.live_ids()})
                time.sleep(0.05)
        stop.set()
        for thread in threads:
            thread.join()
    failures = [pairs for pairs in seen if not any(all(state.get(i) == name for i, name in pairs) for state in states)]
    assert seen and failures == []
    assert len(states[-1]) == 8


RUNNER = """
import sys
sys.path.insert(0, {tests!r})
from similar_images import features
features.MODELS["tiny"] = "_index_data:create_tiny"
from similar_images.search import SimilarImages
from similar_images.service.config import ServiceConfig
from similar_images.service.server import serve
db = SimilarImages.open({vectors!r}, {index!r}, image_dir={image_dir!r})
serve(db, ServiceConfig(token={token!r}, allow_writes=True), port={port})
"""


def start_server(folder: Path, port: int) -> subprocess.Popen:
    code = RUNNER.format(tests=str(TESTS), vectors=str(folder / "db.npy"), index=str(folder / "db.faiss.index"),
                         image_dir=str(folder / "images"), token=TOKEN, port=port)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + patience(180)  # start-up under load (issue 26): slower, not broken
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", headers=AUTH, timeout=5).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {process.stderr.read().decode()[-2000:]}")
    process.kill()
    raise RuntimeError("the server did not start")


def commit_started(folder: Path) -> bool:
    return any(folder.glob("*.journal.json")) or any(folder.glob(".db.*.staged")) or any(folder.glob(".db.*.tmp"))


# 0.3 s: still storing the uploads (old state); 1.5 s: committed (new state); the third
# kills between the staged files and the journal's rename (old state, staged leftovers).
@pytest.mark.parametrize("kill_when", ["after 0.3 s", "after 1.5 s", "when the commit starts"])
def test_kill_9_during_an_api_add_leaves_the_old_or_the_new_database(tiny_files, tmp_path, monkeypatch, kill_when):
    vectors, _, _ = tiny_files
    folder = tmp_path / "served"
    shutil.copytree(vectors.parent, folder, ignore=shutil.ignore_patterns("served"))
    uploads = [image_bytes(100 + i) for i in range(150)]
    port = free_port()
    process = start_server(folder, port)

    def post():
        files = [("images", (f"u{i}.png", data, "image/png")) for i, data in enumerate(uploads)]
        try:
            httpx.post(f"http://127.0.0.1:{port}/api/images", files=files, headers=AUTH, timeout=patience(60))
        except httpx.TransportError:
            pass  # killed mid-request

    sender = threading.Thread(target=post)
    sender.start()
    started = time.monotonic()
    if kill_when.startswith("after"):
        time.sleep(float(kill_when.split()[1]))
    else:
        while not commit_started(folder) and time.monotonic() - started < 30:
            time.sleep(0.001)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=patience(10))
    sender.join(timeout=patience(60))

    register_tiny(monkeypatch)
    db = SimilarImages.open(folder / "db.npy", folder / "db.faiss.index", image_dir=folder / "images",
                            extractor=TinyExtractor())
    assert len(db) in (12, 12 + len(uploads))
    assert db.names[:12] == [f"img{i:03d}.png" for i in range(12)]
    assert db.search(image_bytes(3), k=1)[0].id == 3
    if len(db) > 12:
        assert db.search(uploads[7], k=1)[0].path == db.names[12 + 7]
    # the database still takes writes after the crash
    report = db.add([folder / "images" / "img000.png"], show_progress=False)
    assert report.already_present and len(db) in (12, 12 + len(uploads))


def test_the_last_image_cannot_be_removed(writer):
    for _ in range(11):  # the lowest live id each time: removed ids keep their number until a compaction
        assert writer.delete(f"/api/images/{_lowest_live(writer)}", headers=AUTH).status_code == 200
    response = writer.delete(f"/api/images/{_lowest_live(writer)}", headers=AUTH)
    assert response.status_code == 422 and "remove every item" in response.json()["error"]
    assert writer.get("/api/health", headers=AUTH).json()["count"] == 1
    response = writer.post("/api/search", files={"image": ("q.png", image_bytes(1), "image/png")}, headers=AUTH)
    assert response.status_code == 200 and len(response.json()["results"]) == 1


def _lowest_live(writer) -> int:
    """The lowest id the service still holds (the app's engine is the one state it serves)."""
    return int(writer.app.state.engine.db.database.live_ids()[0])

