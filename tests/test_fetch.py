"""images/fetch.py and images/addresses.py: one deadline per fetch, refusals before any lookup,
redirect messages that say what happened. Servers on 127.0.0.1 only, started here."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from _hostile_servers import HostileServer, redirect
from click.testing import CliRunner

from similar_images.errors import ImageError
from similar_images.images import fetch as fetching
from similar_images.images import fetch_url, load_image

DEADLINE, SILENCE = 2.0, 5.0  # the per-read timeout alone would let every hostile server run past the deadline
SLACK = 2.0  # "ends within the deadline + 2 s"


@pytest.fixture(scope="module")
def hostile():
    with HostileServer(drip_s=1.0) as server:
        yield server


def timed_failure(call) -> tuple[ImageError, float]:
    started = time.monotonic()
    with pytest.raises(ImageError) as info:
        call()
    return info.value, time.monotonic() - started


@pytest.mark.parametrize("path", ["/drip-headers", "/drip-body", "/stall", "/endless", "/slow-redirect/0"])
def test_every_slow_server_is_cut_at_the_deadline(hostile, path):
    url = hostile.url(path)
    error, elapsed = timed_failure(lambda: fetch_url(url, timeout=SILENCE, deadline=DEADLINE))
    assert error.reason == "timeout"
    assert str(error) == f"{url}: not downloaded within the 2 s deadline"
    assert DEADLINE - 0.1 <= elapsed <= DEADLINE + SLACK


def test_an_endless_fast_body_is_cut_by_the_byte_cap(hostile):
    error, elapsed = timed_failure(lambda: fetch_url(hostile.url("/endless-fast"), max_bytes=1_000_000,
                                                     timeout=SILENCE, deadline=DEADLINE))
    assert error.reason == "too large" and "more than 1000000 bytes" in str(error)
    assert elapsed <= DEADLINE + SLACK


def test_the_silence_timeout_still_ends_a_stalled_server_first(hostile):
    error, elapsed = timed_failure(lambda: fetch_url(hostile.url("/stall"), timeout=0.5, deadline=10))
    assert error.reason == "timeout" and str(error).endswith("timed out: no answer from the server for 0.5 s")
    assert elapsed < 0.5 + SLACK


def test_a_good_url_still_loads(hostile):
    assert load_image(hostile.url("/ok.png"), deadline=DEADLINE).size == (16, 16)


def test_cancel_ends_a_fetch_blocked_in_a_read_at_once(hostile):
    deadline = fetching.Deadline(30, 30)
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(
        timed_failure(lambda: fetching.fetch(hostile.url("/stall"), fetching.FetchPolicy(allow_private=True),
                                             deadline))))
    worker.start()
    time.sleep(0.5)  # the fetch is now blocked reading the stalled response
    deadline.cancel()
    worker.join(timeout=5)
    assert not worker.is_alive()
    error, elapsed = outcome[0]
    assert error.reason == "timeout" and "cancelled" in str(error) and elapsed < 0.5 + SLACK


def test_the_cli_search_of_a_dripping_url_ends_at_the_deadline(hostile, tmp_path, monkeypatch):
    from _index_data import tiny_flat_database

    from similar_images.cli import main

    vectors, index, _ = tiny_flat_database(tmp_path, monkeypatch)
    monkeypatch.setattr(fetching, "DEFAULT_DEADLINE", DEADLINE)  # read at call time, as the CLI has no option
    monkeypatch.setattr(fetching, "DEFAULT_TIMEOUT", SILENCE)
    # The fetch's own time, not the command's start (opening the database is not the fetch:
    # on a loaded machine it alone can take seconds, issue 26).
    real_fetch, fetches = fetching.fetch, []

    def timed_fetch(*args, **kwargs):
        started = time.monotonic()
        try:
            return real_fetch(*args, **kwargs)
        finally:
            fetches.append(time.monotonic() - started)

    monkeypatch.setattr(fetching, "fetch", timed_fetch)
    url = hostile.url("/drip-headers")
    result = CliRunner().invoke(main, ["search", "--vectors", str(vectors), "--index", str(index), url])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == f"error: {url}: not downloaded within the 2 s deadline"
    assert len(fetches) == 1 and DEADLINE - 0.1 <= fetches[0] <= DEADLINE + SLACK, fetches


@pytest.mark.slow
def test_the_default_deadline_cuts_headers_dripped_every_two_seconds():
    """The adversarial run's case with today's defaults: 20 s, not 329 s."""
    with HostileServer(drip_s=2.0) as server:
        url = server.url("/drip-headers")
        error, elapsed = timed_failure(lambda: fetch_url(url))
    assert str(error) == f"{url}: not downloaded within the 20 s deadline"
    assert 19.9 <= elapsed <= 20 + SLACK


# --- HTTPS: the same deadline through TLS ---------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for photos.test, made with the openssl command."""
    import subprocess

    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=photos.test",
                    "-addext", "subjectAltName=DNS:photos.test", "-keyout", str(folder / "key.pem"),
                    "-out", str(folder / "cert.pem")], check=True, capture_output=True)
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def tls_hostile(certificate, monkeypatch):
    """A hostile HTTPS server on 127.0.0.1 named photos.test; the fetcher trusts its certificate
    (and only for this test)."""
    import ssl

    real_lookup = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real_lookup(
        "127.0.0.1" if host == "photos.test" else host, *a, **k))

    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    client_side = ssl.create_default_context(cafile=str(cert))
    client_side.sslsocket_class = fetching._TimedSSLSocket  # as the fetcher's own context
    monkeypatch.setattr(fetching, "_tls_context", lambda: client_side)
    with HostileServer(drip_s=1.0, tls=server_side) as server:
        yield f"https://photos.test:{server.port}"


def test_https_loads_and_checks_the_certificate_name(tls_hostile, certificate):
    assert load_image(tls_hostile + "/ok.png", deadline=DEADLINE).size == (16, 16)
    error, _ = timed_failure(lambda: fetch_url(tls_hostile.replace("photos.test", "127.0.0.1") + "/ok.png"))
    assert error.reason == "http error" and "CERTIFICATE_VERIFY_FAILED" in str(error)


@pytest.mark.parametrize("path", ["/drip-headers", "/drip-body", "/stall"])
def test_https_slow_servers_are_cut_at_the_deadline(tls_hostile, path):
    error, elapsed = timed_failure(lambda: fetch_url(tls_hostile + path, timeout=SILENCE, deadline=DEADLINE))
    assert str(error) == f"{tls_hostile}{path}: not downloaded within the 2 s deadline"
    assert DEADLINE - 0.1 <= elapsed <= DEADLINE + SLACK


def test_a_tls_handshake_that_never_comes_is_cut_at_the_deadline(hostile):
    url = hostile.url("/").replace("http://", "https://")  # a plain-HTTP server: it waits for a request forever
    error, elapsed = timed_failure(lambda: fetch_url(url, timeout=SILENCE, deadline=DEADLINE))
    assert str(error) == f"{url}: not downloaded within the 2 s deadline"
    assert DEADLINE - 0.1 <= elapsed <= DEADLINE + SLACK


# --- refusals before any lookup ------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Any name lookup or connection fails the test."""
    def forbidden(*args, **kwargs):
        raise AssertionError(f"the network was used: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", forbidden)
    monkeypatch.setattr(socket, "gethostbyname", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    monkeypatch.setattr(socket.socket, "connect_ex", forbidden)


@pytest.mark.parametrize("url", ["http://user:pw@127.0.0.1:8000/x.jpg", "http://user@127.0.0.1/x.jpg",
                                 "https://:pw@photos.example/x.jpg", "http://127.0.0.1:80@evil.example/x.jpg"])
def test_credentials_in_a_url_are_refused_before_any_lookup(no_network, url):
    error, _ = timed_failure(lambda: fetch_url(url))
    assert error.reason == "refused url"
    assert str(error) == f"{url}: refused URL: user names and passwords in URLs are not allowed"


# --- redirects --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redirects():
    routes = {"/no-location": redirect(None), "/to-file": redirect("file:///etc/passwd"),
              "/to-ftp": redirect("ftp://127.0.0.1/a.png", 301), "/a": redirect("/b"), "/b": redirect("/a"),
              "/self": redirect("/self", 307), "/to-credentials": redirect("http://user:pw@127.0.0.1:9/x.jpg")}
    routes.update({f"/hop{i}": redirect(f"/hop{i + 1}") for i in range(10)})
    with HostileServer(routes=routes) as server:
        yield server


@pytest.mark.parametrize("path, reason, says", [
    ("/no-location", "http error", "HTTP 302 redirect without a Location header"),
    ("/to-file", "refused url", "refused URL: HTTP 302 redirect to a file: URL (file:///etc/passwd); "
                                "only http and https are allowed"),
    ("/to-ftp", "refused url", "refused URL: HTTP 301 redirect to a ftp: URL (ftp://127.0.0.1/a.png); "
                               "only http and https are allowed"),
    ("/to-credentials", "refused url", "refused URL: user names and passwords in URLs are not allowed"),
    ("/a", "http error", "redirect loop: {base}/a -> {base}/b -> {base}/a"),
    ("/self", "http error", "redirect loop: {base}/self -> {base}/self"),
    ("/hop0", "refused url", "refused URL: more than 5 redirects ({base}/hop0 -> {base}/hop1 -> {base}/hop2 -> "
                             "{base}/hop3 -> {base}/hop4 -> {base}/hop5 -> {base}/hop6)"),
])
def test_redirect_messages_say_what_happened(redirects, path, reason, says):
    base = redirects.url("")
    error, _ = timed_failure(lambda: fetch_url(base + path))
    assert error.reason == reason
    assert str(error) == f"{base}{path}: " + says.format(base=base)


def test_a_redirect_that_comes_as_the_deadline_ends_gives_the_deadline_error(redirects, monkeypatch):
    """The next hop starts with no time left (a loaded machine made a slow redirect chain do
    this): the deadline's one line, as for any other slow server, not a raw exception."""
    deadline = fetching.Deadline(DEADLINE, SILENCE)
    real_next_hop = fetching._next_hop

    def next_hop_as_time_runs_out(*args):
        deadline.end = time.monotonic()
        return real_next_hop(*args)

    monkeypatch.setattr(fetching, "_next_hop", next_hop_as_time_runs_out)
    policy = fetching.FetchPolicy(allow_private=True, timeout=SILENCE, deadline=DEADLINE)
    error, _ = timed_failure(lambda: fetching.fetch(redirects.url("/hop0"), policy, deadline))
    assert error.reason == "timeout" and str(error) == "not downloaded within the 2 s deadline"
