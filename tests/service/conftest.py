"""Fixtures for the service tests: a tiny database, an in-process client, a socket guard."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import pytest
from _index_data import TinyExtractor, tiny_flat_database
from _waiting import patience

from similar_images.search import SimilarImages
from similar_images.service.app import create_app
from similar_images.service.config import ServiceConfig
from similar_images.service.engine import Engine

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright (the browser tests)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} missing: run scripts/install-browser.sh")
        pytest.skip(f"{CHROMIUM} missing: run scripts/install-browser.sh (CI runs this test)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                                     timeout=patience(120) * 1000)  # Chromium starts slowly under load
        yield browser
        browser.close()


@pytest.fixture
def tiny_files(tmp_path, monkeypatch):
    """12 pattern images embedded with the tiny model and a flat index: (vectors, index, image_dir)."""
    return tiny_flat_database(tmp_path, monkeypatch)


@pytest.fixture
def make_engine(tiny_files):
    """``make_engine(**config) -> Engine`` over the tiny database (a TinyExtractor)."""
    vectors, index, image_dir = tiny_files

    def make(**config) -> Engine:
        db = SimilarImages.open(vectors, index, image_dir=image_dir, extractor=TinyExtractor())
        return Engine(db, ServiceConfig(**config))

    return make


@pytest.fixture
def make_client(make_engine):
    """``make_client(**config) -> TestClient`` (in-process, lifespan run); closed after the test."""
    from fastapi.testclient import TestClient

    with contextlib.ExitStack() as stack:

        def make(**config):
            engine = make_engine(**config)
            client = TestClient(create_app(engine), raise_server_exceptions=False)
            stack.enter_context(client)
            client.engine = engine
            return client

        yield make


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def no_connections(monkeypatch):
    """Any socket connection fails the test (and is recorded): refusals must come first."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"a connection was attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", lambda self, address: refuse(address))
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, address: refuse(address))
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.fixture
def loopback_only(monkeypatch):
    """Connections to anything but 127.0.0.1 / ::1 fail the test; the loopback ones are recorded."""
    seen = []
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1"):
            raise AssertionError(f"a connection to {address!r} was attempted")
        seen.append(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


@pytest.fixture
def fake_dns(monkeypatch):
    """``fake_dns({"host": ["addr", ...]})``: socket.getaddrinfo answers from the table, never the network."""
    real = socket.getaddrinfo

    def install(table: dict[str, list[str]]):
        def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
            if host in table:
                return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                         (a, port) if ":" not in a else (a, port, 0, 0)) for a in table[host]]
            try:  # IP literals resolve locally (AI_NUMERICHOST: no lookup is ever sent)
                return real(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
            except socket.gaierror:
                raise socket.gaierror(socket.EAI_NONAME, f"{host}: not in the test's fake DNS") from None

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    return install
