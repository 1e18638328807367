"""server.py: loopback by default, a warning when exposed without a token, warm-up before the port opens."""

from __future__ import annotations

import logging

import pytest

from similar_images.service import server
from similar_images.service.config import ServiceConfig


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                           ("127.0.0.2", True), ("0.0.0.0", False), ("::", False),
                                           ("192.168.1.4", False), ("example.org", False)])
def test_is_loopback(host, loopback):
    assert server.is_loopback(host) is loopback


@pytest.fixture
def runs(monkeypatch):
    import uvicorn

    started = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: started.append(self.config))
    return started


def test_serving_beyond_loopback_without_a_token_warns(make_engine, runs, caplog):
    db = make_engine().db
    with caplog.at_level(logging.WARNING, logger="similar_images.service.server"):
        server.serve(db, ServiceConfig(), host="0.0.0.0", port=8123)
    assert "without --token" in caplog.text
    assert runs[0].host == "0.0.0.0" and runs[0].port == 8123


def test_the_model_is_warmed_before_the_port_opens(make_engine, runs, caplog):
    db = make_engine().db
    calls = db.extractor.calls
    with caplog.at_level(logging.WARNING, logger="similar_images.service.server"):
        server.serve(db, ServiceConfig(token="t"), host="127.0.0.1", port=8124)
    assert db.extractor.calls == calls + 1 and "without --token" not in caplog.text
    assert runs[0].host == "127.0.0.1"
