"""The proxy's middleware: a request no replica answered is a JSON 503 with Retry-After;
every answer that was started passes untouched."""

from __future__ import annotations

import asyncio

import pytest

from similar_images.serving.proxy import CALLBACK, CALLBACK_VARIABLE, NoAnswerIs503, proxy_environment, proxy_middlewares


def call(app, scope_type: str = "http"):
    """Run ``NoAnswerIs503(app)`` on one request; the messages it sent."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(NoAnswerIs503(app)({"type": scope_type, "method": "POST", "path": "/api/search"}, receive, send))
    return sent


async def returns_without_answer(scope, receive, send):  # what Ray's proxy does for a dead replica
    return None


async def raises_before_answer(scope, receive, send):
    raise RuntimeError("the proxy failed")


async def answers_500(scope, receive, send):  # the app's own error: a started response
    await send({"type": "http.response.start", "status": 500, "headers": []})
    await send({"type": "http.response.body", "body": b'{"detail": "internal error"}'})


def test_a_request_no_replica_answered_is_a_json_503_with_retry_after():
    import json

    for app in (returns_without_answer, raises_before_answer):
        start, body = call(app)
        headers = dict(start["headers"])
        assert start["status"] == 503 and headers[b"retry-after"] == b"1"
        assert headers[b"content-type"] == b"application/json"
        assert "retry" in json.loads(body["body"])["detail"]
        assert int(headers[b"content-length"]) == len(body["body"])


def test_a_started_answer_passes_untouched_even_a_500():
    sent = call(answers_500)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"] and sent[0]["status"] == 500


def test_a_failure_after_the_answer_started_is_not_hidden():
    async def fails_midway(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("the replica died mid-body")

    with pytest.raises(RuntimeError, match="mid-body"):
        call(fails_midway)


def test_other_scopes_pass_through():
    assert call(returns_without_answer, "websocket") == []


def test_ray_serve_accepts_the_callback():
    from ray.serve._private.http_util import validate_http_proxy_callback_return
    from ray.serve._private.utils import call_function_from_import_path

    assert proxy_environment() == {CALLBACK_VARIABLE: CALLBACK}
    middlewares = validate_http_proxy_callback_return(call_function_from_import_path(CALLBACK))
    assert [m.cls for m in middlewares] == [NoAnswerIs503] and len(proxy_middlewares()) == 1
