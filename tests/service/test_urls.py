"""URL queries and SSRF: every refusal happens before any connection.

The DNS is faked (socket.getaddrinfo answers from a table; no lookup ever leaves the
machine), and the socket guards fail the test on any connection attempt, or on any
connection to something other than 127.0.0.1 / ::1.
"""

from __future__ import annotations

import http.server
import threading
import time

import pytest
from _service_data import image_bytes

from similar_images.errors import ImageError
from similar_images.images import addresses
from similar_images.images import fetch as fetching


@pytest.fixture
def url_client(make_client):
    return make_client(allow_urls=True, url_timeout=30.0)  # the silence allowed: not what these tests check


def search_url(client, url: str):
    return client.post("/api/search", json={"url": url, "k": 3})


class LoopbackServer:
    """An HTTP server on 127.0.0.1; ``routes[path] = (status, headers, body)`` or a callable."""

    def __init__(self, routes):
        self.routes, self.requests = routes, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Host")))
                answer = outer.routes.get(self.path, (404, {}, b""))
                if callable(answer):
                    answer = answer()
                status, headers, body = answer
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that gave up (the timeout test) is expected


REFUSED = [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.9", "private"), ("192.168.1.1", "private"), ("fc00::5", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.251", "multicast"), ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("240.0.0.1", "reserved"), ("100.64.0.1", "non-public"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"), ("::ffff:169.254.169.254", "link-local"),
    ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
    ("64:ff9b::a00:1", "private"),  # NAT64 around 10.0.0.1 (reserved for translation)
]


@pytest.mark.parametrize("address,kind", REFUSED)
def test_each_refused_address_class_is_named(address, kind):
    reason = addresses.refused_reason(address)
    assert reason is not None
    if kind != "private" or not address.startswith("64:"):
        assert kind in reason


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2001:4860:4860::8888"])
def test_public_addresses_pass(address):
    assert addresses.refused_reason(address) is None


@pytest.mark.parametrize("address,kind", REFUSED)
def test_a_host_resolving_to_a_refused_address_is_refused_before_connecting(url_client, fake_dns, no_connections,
                                                                             address, kind):
    fake_dns({"photos.example": [address]})
    response = search_url(url_client, "http://photos.example/cat.jpg")
    assert response.status_code == 400
    assert "refused URL" in response.json()["error"]
    assert no_connections == []


@pytest.mark.parametrize("url", ["http://127.0.0.1/a.jpg", "http://[::1]:8080/a.jpg", "http://[::ffff:127.0.0.1]/",
                                 "http://2130706433/", "http://0x7f000001/", "https://localhost./a.jpg",
                                 "http://169.254.169.254/latest/meta-data/"])
def test_literal_and_disguised_loopback_urls_are_refused_before_connecting(url_client, fake_dns, no_connections, url):
    fake_dns({"localhost.": ["127.0.0.1", "::1"]})
    response = search_url(url_client, url)
    assert response.status_code == 400 and "refused URL" in response.json()["error"]
    assert no_connections == []


def test_one_private_address_among_public_ones_is_enough_to_refuse(url_client, fake_dns, no_connections):
    fake_dns({"mixed.example": ["8.8.8.8", "10.0.0.7"]})
    response = search_url(url_client, "https://mixed.example/a.jpg")
    assert response.status_code == 400 and "10.0.0.7" in response.json()["error"]
    assert no_connections == []


@pytest.mark.parametrize("url,words", [
    ("ftp://example.org/a.jpg", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("gopher://example.org/", "only http and https"),
    ("http://user:pw@example.org/a.jpg", "passwords"),
    ("http:///a.jpg", "no host"),
    ("http://example.org:99999/", "malformed"),
])
def test_refused_url_forms(url_client, fake_dns, no_connections, url, words):
    fake_dns({})
    response = search_url(url_client, url)
    assert response.status_code == 400 and words in response.json()["error"]
    assert no_connections == []


def test_url_queries_are_off_by_default(client, no_connections):
    response = search_url(client, "http://example.org/a.jpg")
    assert response.status_code == 400 and "--allow-urls" in response.json()["error"]
    assert no_connections == []


def test_a_host_that_does_not_resolve_is_refused(url_client, fake_dns, no_connections):
    fake_dns({})
    response = search_url(url_client, "http://nowhere.example/a.jpg")
    assert response.status_code == 400 and "cannot resolve" in response.json()["error"]


@pytest.fixture
def pinned_to(monkeypatch):
    """Stand the loopback test server in for a public host: the connection function is
    asked for the checked public address and connects to the test server instead."""
    asked = []

    real = fetching.open_connection

    def install(server: LoopbackServer):
        def open_connection(scheme, host, address, port, deadline):
            asked.append((host, address, port))
            return real("http", host, "127.0.0.1", server.port, deadline)

        monkeypatch.setattr(fetching, "open_connection", open_connection)
        return asked

    return install


def test_a_redirect_to_loopback_is_refused_before_following_it(url_client, fake_dns, loopback_only, pinned_to):
    fake_dns({"public.example": ["8.8.8.8"], "sneaky.example": ["127.0.0.1"]})
    routes = {"/start.jpg": (302, {"Location": "http://sneaky.example:9/admin"}, b"")}
    with LoopbackServer(routes) as server:
        asked = pinned_to(server)
        response = search_url(url_client, "http://public.example/start.jpg")
    assert response.status_code == 400 and "loopback address 127.0.0.1" in response.json()["error"]
    assert asked == [("public.example", "8.8.8.8", 80)]  # the second hop was never opened
    assert [path for path, _ in server.requests] == ["/start.jpg"]
    assert server.requests[0][1] == "public.example"  # spoke to the checked host by name


def test_the_connection_goes_to_the_address_that_was_checked(url_client, fake_dns, loopback_only, pinned_to,
                                                             monkeypatch):
    """DNS rebinding: a second lookup would say 127.0.0.1; there is no second lookup."""
    answers = iter([["8.8.8.8"], ["127.0.0.1"]])
    fake_dns({})
    import socket

    table_lookup = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.example":
            fake_dns({"rebind.example": next(answers)})
            return socket.getaddrinfo(host, port, *args, **kwargs)
        return table_lookup(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with LoopbackServer({"/a.png": (200, {"Content-Type": "image/png"}, image_bytes(5))}) as server:
        asked = pinned_to(server)
        response = search_url(url_client, "http://rebind.example/a.png")
    assert response.status_code == 200, response.text
    assert asked == [("rebind.example", "8.8.8.8", 80)]
    assert response.json()["results"][0]["id"] == 5


def test_at_most_three_redirects(make_client, loopback_only):
    client = make_client(allow_urls=True, allow_private_urls=True)
    routes = {f"/r{i}": (302, {"Location": f"/r{i + 1}"}, b"") for i in range(10)}
    with LoopbackServer(routes) as server:
        response = search_url(client, f"http://127.0.0.1:{server.port}/r0")
    assert response.status_code == 400 and "more than 3 redirects" in response.json()["error"]
    assert [path for path, _ in server.requests] == ["/r0", "/r1", "/r2", "/r3"]


def test_a_loopback_server_is_reached_only_with_allow_private_urls(make_client, loopback_only):
    routes = {"/a.png": (302, {"Location": "/b.png"}, b""),
              "/b.png": (200, {"Content-Type": "text/plain"}, image_bytes(8))}  # the type is not trusted
    with LoopbackServer(routes) as server:
        url = f"http://127.0.0.1:{server.port}/a.png"
        refused = search_url(make_client(allow_urls=True), url)
        assert refused.status_code == 400 and server.requests == []
        allowed = search_url(make_client(allow_urls=True, allow_private_urls=True), url)
    assert allowed.status_code == 200, allowed.text
    body = allowed.json()
    assert body["query"]["kind"] == "url" and body["query"]["url"] == url
    assert body["results"][0]["id"] == 8 and body["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert loopback_only and all(address[0] == "127.0.0.1" for address in loopback_only)


def test_the_download_has_a_byte_cap(make_client, loopback_only):
    client = make_client(allow_urls=True, allow_private_urls=True, url_max_bytes=1000)
    big = image_bytes(1, size=(400, 300))
    assert len(big) > 1000
    with LoopbackServer({"/big.png": (200, {}, big)}) as server:
        response = search_url(client, f"http://127.0.0.1:{server.port}/big.png")
    assert response.status_code == 400 and "too large" in response.json()["error"]


def test_a_url_that_is_not_an_image_or_fails(make_client, loopback_only):
    client = make_client(allow_urls=True, allow_private_urls=True)
    routes = {"/page.html": (200, {"Content-Type": "image/jpeg"}, b"<html>hi</html>"), "/gone": (404, {}, b"")}
    with LoopbackServer(routes) as server:
        base = f"http://127.0.0.1:{server.port}"
        assert "not an image" in search_url(client, base + "/page.html").json()["error"]
        gone = search_url(client, base + "/gone")
    assert gone.status_code == 502 and "HTTP 404" in gone.json()["error"]


def test_a_slow_server_times_out(make_client, loopback_only):
    client = make_client(allow_urls=True, allow_private_urls=True, url_timeout=0.3)

    def slow():
        time.sleep(4)  # far past deadline + 2 s, so a loaded machine's slowness cannot pass for the cut
        return 200, {}, image_bytes(1)

    with LoopbackServer({"/slow.png": slow}) as server:
        started = time.monotonic()
        response = search_url(client, f"http://127.0.0.1:{server.port}/slow.png")
        elapsed = time.monotonic() - started
    assert response.status_code == 504 and "timed out" in response.json()["error"]
    assert elapsed < 0.3 + 2  # the deadline + 2 s (issue 26), not the server's 4 s


def test_fetch_refuses_without_a_resolver_call_for_bad_schemes(monkeypatch):
    def no_lookup(*args, **kwargs):
        raise AssertionError("resolved a refused URL")

    monkeypatch.setattr("socket.getaddrinfo", no_lookup)
    with pytest.raises(ImageError, match="only http and https"):
        fetching.fetch("file:///etc/passwd", fetching.FetchPolicy())
