"""URL queries against hostile servers: one deadline per fetch, a bounded number of fetch
threads that end with their requests; and bodies that must never become a 500.
Servers on 127.0.0.1 only, started here."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from _hostile_servers import HostileServer, redirect
from _live import live_server
from _service_data import image_bytes

from similar_images.service.app import create_app

DEADLINE, SILENCE = 2.0, 5.0
SLACK = 2.0  # "ends within the deadline + 2 s"


@pytest.fixture(scope="module")
def hostile():
    routes = {"/pattern.png": _ok(image_bytes(3)), "/no-location": redirect(None),
              "/to-file": redirect("file:///etc/passwd"), "/loop": redirect("/loop")}
    with HostileServer(drip_s=1.0, routes=routes) as server:
        yield server


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def url_config(**extra) -> dict:
    return {"allow_urls": True, "allow_private_urls": True, "url_timeout": SILENCE, "url_deadline": DEADLINE,
            **extra}


@pytest.mark.parametrize("path", ["/drip-headers", "/drip-body", "/stall", "/endless", "/slow-redirect/0"])
def test_each_slow_server_gets_a_504_at_the_deadline(make_client, hostile, path):
    client = make_client(**url_config())
    started = time.monotonic()
    response = client.post("/api/search", json={"url": hostile.url(path)})
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json() == {"error": "not downloaded within the 2 s deadline"}
    assert DEADLINE - 0.1 <= elapsed <= DEADLINE + SLACK


def service_threads() -> list[threading.Thread]:
    """The threads of the service under test: not the test's clients, not the hostile server's."""
    return [t for t in threading.enumerate() if not t.name.startswith(("hostile-", "client"))]


def test_thirty_slow_fetches_keep_threads_bounded_and_give_them_back(make_engine, hostile):
    engine = make_engine(**url_config(request_timeout=3.0, max_url_fetches=8))
    import httpx

    with live_server(create_app(engine, warm_up=False)) as base:
        with httpx.Client(base_url=base, timeout=30) as warm:  # every code path once: the pools reach their idle size
            assert warm.post("/api/search", json={"url": hostile.url("/pattern.png")}).status_code == 200
            assert warm.post("/api/search", json={"id": 1}).status_code == 200
        time.sleep(0.5)
        idle = len(service_threads())
        peak, stop = [0], threading.Event()

        def watch():
            while not stop.wait(0.02):
                peak[0] = max(peak[0], sum(t.name == "url-fetch" for t in threading.enumerate()))

        shared = httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(max_connections=40))

        def slow_query(_):
            started = time.monotonic()
            response = shared.post("/api/search", json={"url": hostile.url("/drip-headers")})
            return response.status_code, response.json()["error"], time.monotonic() - started

        watcher = threading.Thread(target=watch, name="client-watch")
        watcher.start()
        with shared, ThreadPoolExecutor(30, thread_name_prefix="client") as clients:
            answers = list(clients.map(slow_query, range(30)))
        finished = time.monotonic()
        while len(service_threads()) > idle and time.monotonic() - finished < 10:
            time.sleep(0.1)
        settled = len(service_threads())
        stop.set()
        watcher.join()
    assert {status for status, _, _ in answers} <= {503, 504}, answers
    assert sum(status == 504 for status, _, _ in answers) >= 8  # the first fetches ran to their deadline
    assert all(elapsed <= 3.0 + SLACK for _, _, elapsed in answers), answers
    assert 1 <= peak[0] <= 8
    assert settled <= idle, (idle, [t.name for t in service_threads()])


def test_a_request_that_times_out_ends_its_fetch_thread(make_client, hostile):
    client = make_client(**url_config(url_timeout=60, url_deadline=60, request_timeout=1.0))
    response = client.post("/api/search", json={"url": hostile.url("/stall")})
    assert response.status_code == 503 and "1 s limit" in response.json()["error"]
    ended = time.monotonic() + 2.0  # the fetch's own deadline is 60 s away: only the cancel ends it this soon
    while any(t.name == "url-fetch" for t in threading.enumerate()) and time.monotonic() < ended:
        time.sleep(0.05)
    assert not any(t.name == "url-fetch" for t in threading.enumerate())
    assert client.engine.urls.running == 0


@pytest.mark.parametrize("path, status, says", [
    ("/no-location", 502, "HTTP 302 redirect without a Location header"),
    ("/to-file", 400, "refused URL: HTTP 302 redirect to a file: URL (file:///etc/passwd); only http and https are allowed"),
    ("/loop", 502, "redirect loop: {url} -> {url}"),
])
def test_redirect_errors_say_what_happened(make_client, hostile, path, status, says):
    url = hostile.url(path)
    response = make_client(**url_config()).post("/api/search", json={"url": url})
    assert response.status_code == status
    assert response.json() == {"error": says.format(url=url)}


# --- credentials: refused before any lookup -------------------------------------------------


def test_credentials_in_a_url_are_refused_before_any_lookup(make_client, monkeypatch):
    client = make_client(**url_config())

    def forbidden(*args, **kwargs):
        raise AssertionError(f"the network was used: {args!r}")

    for name in ("getaddrinfo", "gethostbyname", "create_connection"):
        monkeypatch.setattr(socket, name, forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    response = client.post("/api/search", json={"url": "http://user:pw@127.0.0.1:8000/x.jpg"})
    assert response.status_code == 400
    assert response.json() == {"error": "refused URL: user names and passwords in URLs are not allowed"}


# --- malformed bodies: 4xx at any depth -----------------------------------------------------


@pytest.mark.parametrize("body", [
    "[" * 100_000 + "]" * 100_000,  # 200 KB, 100,000 levels
    "[" * 100_000,  # unclosed as well
    '{"a":' * 50_000 + "1" + "}" * 50_000,
    '{"url": ' + "[" * 100_000 + "]" * 100_000 + "}",
])
def test_deeply_nested_json_is_a_422_not_a_500(client, body):
    response = client.post("/api/search", content=body.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json() == {"error": "body: JSON nested too deeply"}
    assert client.get("/api/health").status_code == 200
