"""The ingress engine, shards, router and writer in one process (Ray's handles stood in for):
the same answers as the one-process service, writes read back, dead replicas as 503s."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from _index_data import TinyExtractor
from _service_data import image_bytes
from fastapi.testclient import TestClient
from ray.exceptions import ActorDiedError

from similar_images.search import SimilarImages
from similar_images.service.config import ServiceConfig
from similar_images.serving.deployments import Shard, Writer, ingress_app, ingress_engine
from similar_images.serving.spec import ServingSpec, shard_ranges

TOKEN = "replica-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Done:
    def __init__(self, value):
        self.value = value

    def result(self, timeout_s=None):
        return self.value


class Dead:
    def result(self, timeout_s=None):
        raise ActorDiedError()


class Local:
    """A deployment handle answered in this process: ``handle.method.remote(*args).result()``."""

    def __init__(self, target=None):
        self.target = target

    def __getattr__(self, name):
        if self.target is None:  # a replica that died
            return SimpleNamespace(remote=lambda *args: Dead())
        method = getattr(self.target, name)
        return SimpleNamespace(remote=lambda *args: Done(method(*args)))


@pytest.fixture
def spec(tiny_files):
    vectors, index, image_dir = tiny_files

    def make(shards=2, max_age_s=1.0, **config):
        return ServingSpec(str(vectors), str(index), str(image_dir), ServiceConfig(**config), shards=shards,
                           ranges=shard_ranges(12, shards), extractor=TinyExtractor, max_age_s=max_age_s)

    return make


def client_of(engine, stack):
    client = TestClient(ingress_app(engine), raise_server_exceptions=False, headers=AUTH)
    stack.append(client.__enter__())
    return client


@pytest.fixture
def clients():
    opened = []
    yield opened
    for client in opened:
        client.__exit__(None, None, None)


def test_the_routed_app_answers_as_the_one_process_service(spec, tiny_files, clients):
    s = spec(shards=2)
    engine = ingress_engine(s, [Local(Shard(s, 0)), Local(Shard(s, 1))])
    client = client_of(engine, clients)
    one = SimilarImages.open(*tiny_files[:2], image_dir=tiny_files[2], extractor=TinyExtractor())
    for query in (image_bytes(7), image_bytes(2)):
        got = client.post("/api/search", files={"image": ("q.png", query, "image/png")}, data={"k": "5"})
        assert got.status_code == 200, got.text
        want = one.search(query, k=5)
        assert [(h["id"], h["name"]) for h in got.json()["results"]] == [(r.id, r.path) for r in want]
    by_id = client.post("/api/search", json={"id": 9, "k": 12}).json()["results"]
    assert [h["id"] for h in by_id] == [r.id for r in one.search(9, k=12)]
    health = client.get("/api/health").json()
    assert health["count"] == 12 and health["index"] == "flat" and health["model"] == "tiny"
    assert client.get("/api/images/3").content == (tiny_files[2] / "img003.png").read_bytes()


def test_a_forwarded_write_is_read_back_at_once_and_by_the_other_replica_within_the_bound(spec, clients):
    s = spec(shards=2, max_age_s=0.3, token=TOKEN, allow_writes=True)
    shards = [Local(Shard(s, 0)), Local(Shard(s, 1))]
    writer = Local(Writer(s))
    first = client_of(ingress_engine(s, shards, writer), clients)
    second = client_of(ingress_engine(s, shards, writer), clients)
    assert second.get("/api/health").json()["count"] == 12
    added = first.post("/api/images", files=[("images", ("a.png", image_bytes(30), "image/png"))])
    assert added.status_code == 200, added.text
    new_id = added.json()["added"][0]["id"]
    assert new_id == 12 and first.get("/api/health").json()["count"] == 13  # its own write, at once
    hits = first.post("/api/search", files={"image": ("q.png", image_bytes(30), "image/png")}).json()["results"]
    assert hits[0]["id"] == 12 and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    time.sleep(0.35)  # past the bound (a lower bound)
    assert second.get("/api/health").json()["count"] == 13
    found = second.post("/api/search", json={"id": 12, "k": 1}).json()["results"]
    assert found[0]["id"] == 12 and found[0]["name"] == added.json()["added"][0]["name"]
    removed = second.delete("/api/images/12")
    assert removed.status_code == 200 and removed.json()["count"] == 12
    assert second.post("/api/search", json={"id": 12}).status_code == 404
    missing = first.delete("/api/images/99")  # the writer's refusal comes back as the same status
    assert missing.status_code == 404 and "no image with id 99" in missing.json()["error"]
    bad = first.post("/api/images", files=[("images", ("a.png", b"not an image", "image/png"))])
    assert bad.status_code == 400


def test_a_dead_shard_replica_is_a_503_to_retry_never_a_partial_answer(spec, clients):
    s = spec(shards=2)
    client = client_of(ingress_engine(s, [Local(Shard(s, 0)), Local()]), clients)
    for response in (client.post("/api/search", json={"id": 2}),
                     client.post("/api/search", files={"image": ("q.png", image_bytes(2), "image/png")})):
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "retry" in response.json()["error"]
    assert client.get("/api/health").status_code == 200  # what needs no shard still answers


def test_a_shard_asked_for_a_state_it_does_not_hold_says_so(spec, clients):
    s = spec(shards=1)
    shard = Shard(s, 0)
    status, held = shard.search(SimilarImages.open(s.vectors).vector(0)[None], 3, ("another", 12, 0))
    assert status == "stale" and len(held) == 1
    client = client_of(ingress_engine(s, [Local(shard)]), clients)
    client.app.state.engine.db.state = ("another", 12, 0)  # an ingress state no shard can serve
    response = client.post("/api/search", json={"id": 2})
    assert response.status_code == 503 and "changed" in response.json()["error"]


def test_the_writer_reads_an_id_in_the_state_on_disk_after_another_writer(spec, tiny_files):
    from _index_data import write_images

    s = spec(shards=1, token=TOKEN, allow_writes=True)
    writer = Writer(s)
    other = SimilarImages.open(*tiny_files[:2], image_dir=tiny_files[2], extractor=TinyExtractor())
    other.add(write_images(tiny_files[2], [12]), show_progress=False)  # e.g. `similar-images add` on the folder
    answer = writer.write("remove", 12)
    assert answer == {"ok": {"removed": ["img012.png"], "count": 12}}
    assert writer.write("remove", 99)["error"][0] == 404
