"""Limits and access: upload cap while streaming, sniffing, pixel cap, token, CORS, time limit."""

from __future__ import annotations

import asyncio
import http.client
import time

import pytest
from _live import live_server
from _service_data import bomb_png, image_bytes

from similar_images.errors import ImageError
from similar_images.service.app import create_app
from similar_images.service.limits import BodySizeLimit, check_pixels, sniff_image, token_ok


def upload(client, data: bytes, **kwargs):
    return client.post("/api/search", files={"image": ("a.png", data, "image/png")}, **kwargs)


# --- content sniffing and the pixel cap --------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_sniffing_reads_the_format_from_the_bytes(fmt):
    assert sniff_image(image_bytes(1, fmt=fmt)) == fmt


@pytest.mark.parametrize("data", [b"", b"GIF8", b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"%PDF-1.4", b"RIFF1234WAVE"])
def test_sniffing_refuses_what_is_not_a_supported_image(data):
    with pytest.raises(ImageError) as caught:
        sniff_image(data)
    assert caught.value.reason == "not an image"


def test_limits_are_said_in_units_people_read():
    from similar_images.service.limits import readable_bytes, readable_pixels

    assert readable_bytes(20 * 1024 * 1024) == "20 MB" and readable_bytes(512) == "512 bytes"
    assert readable_pixels(89_478_485) == "89.5 megapixels" and readable_pixels(1200) == "1200 pixels"
    with pytest.raises(ImageError, match=r"too large \(4000 x 4000, 16 megapixels; the limit is 1 megapixels\)"):
        check_pixels(bomb_png(4000, 4000), 1_000_000)


def test_a_text_file_is_named_as_text_not_as_bytes():
    with pytest.raises(ImageError, match='it starts with the text "hello, t"') as caught:
        sniff_image(b"hello, this is text")
    assert "b'" not in str(caught.value)
    with pytest.raises(ImageError, match="its first bytes are 00 01 02"):
        sniff_image(bytes(range(10)))


def test_the_pixel_cap_reads_only_the_header():
    assert check_pixels(image_bytes(0, size=(40, 30)), 1200) == (40, 30)
    with pytest.raises(ImageError, match="too large") as caught:
        check_pixels(image_bytes(0, size=(40, 30)), 1199)
    assert caught.value.reason == "too large"


def test_a_decompression_bomb_is_400(make_client, recwarn):
    client = make_client(max_pixels=1_000_000)
    bomb = bomb_png(4000, 4000)  # 16 M pixels in a few kB
    assert len(bomb) < 20_000
    response = upload(client, bomb)
    assert response.status_code == 400 and "too large" in response.json()["error"]
    from PIL import Image

    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]  # no log noise


def test_a_bomb_over_pillows_own_cap_is_400(client):
    bomb = bomb_png(15_000, 15_000)  # 225 M pixels: over Pillow's 2x limit, DecompressionBombError
    response = upload(client, bomb)
    assert response.status_code == 400 and "too large" in response.json()["error"]


@pytest.mark.parametrize("data,words", [
    (b"plain text", "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt"),
    (image_bytes(2, fmt="JPEG")[:200], "corrupt"),
])
def test_non_images_and_broken_images_are_400(client, data, words):
    response = upload(client, data)
    assert response.status_code == 400 and words in response.json()["error"]


# --- the upload cap ------------------------------------------------------------------------


def test_a_body_over_the_cap_is_413_by_its_length(make_client):
    client = make_client(max_upload_bytes=10_000)
    response = upload(client, b"\xff\xd8\xff" + b"0" * 20_000)
    assert response.status_code == 413 and response.json() == {"error": "request body too large (the limit is 9.77 kB)"}
    assert upload(client, image_bytes(1)).status_code == 200  # a small one still passes


def test_the_cap_stops_reading_a_streamed_body_at_the_cap():
    """No Content-Length: chunks are counted as they arrive; nothing past the cap is read."""
    chunks = [b"x" * 1000 for _ in range(50)]
    pulled, sent, app_saw = [], [], []

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": chunks[len(pulled) - 1], "more_body": len(pulled) < len(chunks)}

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        while True:
            message = await receive()
            app_saw.append(message["type"])
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"too late"})

    scope = {"type": "http", "method": "POST", "path": "/api/search", "headers": []}
    asyncio.run(BodySizeLimit(app, max_bytes=4500)(scope, receive, send))
    assert len(pulled) == 5  # 5000 bytes: the first chunk past the cap; the other 45 never read
    assert app_saw[-1] == "http.disconnect"
    assert sent[0]["status"] == 413 and b"too large" in sent[1]["body"]
    assert len(sent) == 2  # the app's late answer was dropped


def test_a_chunked_upload_to_a_live_server_gets_413(make_engine):
    app = create_app(make_engine(max_upload_bytes=100_000), warm_up=False)
    with live_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.putrequest("POST", "/api/search")
        connection.putheader("Content-Type", "multipart/form-data; boundary=b")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n\xff\xd8\xff'
        try:
            for chunk in [head] + [b"0" * 16_384] * 64:  # 1 MB, ten times the cap
                connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close the connection once it has answered
        response = connection.getresponse()
        assert response.status == 413 and b"too large" in response.read()
        connection.close()


# --- access ------------------------------------------------------------------------------


def test_token_check_is_exact():
    assert token_ok("Bearer s3cret", "s3cret")
    assert not token_ok("Bearer s3cret2", "s3cret") and not token_ok("s3cret", "s3cret")
    assert not token_ok(None, "s3cret") and not token_ok("Basic s3cret", "s3cret")


def test_with_a_token_every_api_call_needs_it(make_client):
    client = make_client(token="s3cret")
    for method, path in [("get", "/api/health"), ("get", "/api/stats"), ("get", "/api/images/1"),
                         ("get", "/api/images/1/thumbnail"), ("post", "/api/search"), ("get", "/openapi.json")]:
        response = getattr(client, method)(path)
        assert response.status_code == 401, path
        assert "bearer token" in response.json()["error"] and response.headers["www-authenticate"] == "Bearer"
        wrong = getattr(client, method)(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
    good = {"Authorization": "Bearer s3cret"}
    assert client.get("/api/health", headers=good).status_code == 200
    assert client.post("/api/search", json={"id": 2}, headers=good).status_code == 200
    assert client.get("/").status_code == 200  # the page holds no data; it asks for the token


def test_no_cors_unless_asked(make_client):
    preflight = {"Origin": "https://other.example", "Access-Control-Request-Method": "POST"}
    plain = make_client()
    assert "access-control-allow-origin" not in plain.get("/api/health", headers={"Origin": "https://other.example"}).headers
    assert "access-control-allow-origin" not in plain.options("/api/search", headers=preflight).headers
    allowed = make_client(cors_origins=("https://app.example",))
    answer = allowed.get("/api/health", headers={"Origin": "https://app.example"})
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in allowed.get("/api/health", headers={"Origin": "https://evil.example"}).headers


def test_a_slow_request_gets_503_at_the_time_limit(make_client, monkeypatch):
    client = make_client(request_timeout=0.5)

    def slow(*args):
        time.sleep(8)  # far past the limit, so a loaded machine's slowness cannot pass for the cut

    monkeypatch.setattr(client.engine, "search_id", slow)
    started = time.monotonic()
    response = client.post("/api/search", json={"id": 1})
    assert response.status_code == 503 and "0.5 s limit" in response.json()["error"]
    assert time.monotonic() - started < 6  # cut at 0.5 s, not after the 8 s


def test_config_refuses_writes_without_a_token():
    from similar_images.service.config import ServiceConfig

    with pytest.raises(ValueError, match="--token"):
        ServiceConfig(allow_writes=True)
    with pytest.raises(ValueError, match="--allow-urls"):
        ServiceConfig(allow_private_urls=True)
