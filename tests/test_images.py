"""images.py: every source kind, every pixel mode, every failure reason. No model needed."""

from __future__ import annotations

import http.server
import io
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

from similar_images import images
from similar_images.errors import IMAGE_ERROR_REASONS, ImageError
from similar_images.images import (
    load_for_model,
    load_image,
    prepare_batch,
    to_model_input,
)


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, **options)
    return buffer.getvalue()


def png_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def halves(width=40, height=20, left=(255, 0, 0), right=(0, 0, 255)) -> Image.Image:
    """Left half one colour, right half another: shows any rotation or flip."""
    image = Image.new("RGB", (width, height), right)
    image.paste(Image.new("RGB", (width // 2, height), left), (0, 0))
    return image


def expect_error(source, reason: str, **options) -> ImageError:
    with pytest.raises(ImageError) as info:
        load_image(source, **options)
    assert info.value.reason == reason, str(info.value)
    assert info.value.reason in IMAGE_ERROR_REASONS
    assert "\n" not in str(info.value)
    return info.value


# --- sources ----------------------------------------------------------------------------


def test_path_bytes_and_pil_image_give_the_same_pixels(tmp_path):
    original = halves()
    data = png_bytes(original)
    (tmp_path / "a.png").write_bytes(data)
    from_path = load_image(tmp_path / "a.png")
    from_str = load_image(str(tmp_path / "a.png"))
    from_bytes = load_image(data)
    from_pil = load_image(original)
    for loaded in (from_path, from_str, from_bytes, from_pil):
        assert loaded.mode == "RGB" and loaded.size == (40, 20)
        assert np.array_equal(np.asarray(loaded), np.asarray(original))


def test_to_model_input_and_batches():
    array = to_model_input(halves(), (32, 48))
    assert array.shape == (32, 48, 3) and array.dtype == np.uint8
    assert tuple(array[16, 2]) == (255, 0, 0) and tuple(array[16, 45]) == (0, 0, 255)
    batch = prepare_batch([halves(), Image.new("L", (5, 7), 128)], (16, 16))
    assert batch.shape == (2, 16, 16, 3) and batch.dtype == np.uint8
    assert (batch[1] == 128).all()
    assert prepare_batch([], (16, 16)).shape == (0, 16, 16, 3)


# --- pixel modes ------------------------------------------------------------------------


def test_cmyk_jpeg_loads_with_its_colours():
    rgb = Image.new("RGB", (64, 64), (200, 100, 50))
    data = jpeg_bytes(rgb.convert("CMYK"))
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    loaded = np.asarray(load_image(data)).astype(int)
    assert np.abs(loaded - (200, 100, 50)).max() <= 4


def test_16bit_png_is_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 64 * 8).reshape(8, 64).astype(np.uint16)
    data = png_bytes(Image.fromarray(ramp))
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    loaded = np.asarray(load_image(data))[..., 0].astype(int)
    expected = np.rint(ramp / 257.0).astype(int)
    assert np.abs(loaded - expected).max() <= 1
    assert loaded.min() == 0 and loaded.max() == 255
    assert len(np.unique(loaded)) > 200  # clipping at 255 would leave a handful of values


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I", [0, 1000, 65535], [0, 4, 255]),  # 16-bit data stored in 32-bit
        ("I", [0, 100, 255], [0, 100, 255]),  # 8-bit data stored in 32-bit
        ("F", [0.0, 0.5, 1.0], [0, 128, 255]),
        ("F", [-2.0, 0.0, 2.0], [0, 128, 255]),  # other ranges are stretched
    ],
)
def test_wide_grey_modes(mode, values, expected):
    image = Image.fromarray(np.array([values], dtype=np.int32 if mode == "I" else np.float32), mode)
    assert image.mode == mode
    loaded = np.asarray(load_image(image))[0, :, 0].astype(int)
    assert list(loaded) == expected


def test_palette_png_with_transparency_is_composited_on_white():
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (5, 0, 10, 10))  # right half palette index 1 = blue, left half transparent black
    reopened = Image.open(io.BytesIO(png_bytes(image, transparency=0)))
    assert reopened.mode == "P" and "transparency" in reopened.info
    loaded = np.asarray(load_image(png_bytes(image, transparency=0)))
    assert tuple(loaded[5, 1]) == (255, 255, 255)  # transparent -> white, not black
    assert tuple(loaded[5, 8]) == (0, 0, 255)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(mode):
    image = Image.new("RGBA", (4, 1), (0, 0, 0, 0))
    image.putpixel((1, 0), (0, 0, 0, 255))
    image.putpixel((2, 0), (0, 0, 0, 128))
    loaded = np.asarray(load_image(png_bytes(image.convert(mode))))[0, :, 0].astype(int)
    assert loaded[0] == 255 and loaded[1] == 0 and abs(loaded[2] - 127) <= 1


@pytest.mark.parametrize("mode", ["L", "1", "P"])
def test_simple_modes_become_rgb(mode):
    loaded = load_image(png_bytes(halves(8, 4, left=(255, 255, 255), right=(0, 0, 0)).convert(mode)))
    array = np.asarray(loaded)
    assert loaded.mode == "RGB" and tuple(array[0, 0]) == (255, 255, 255) and tuple(array[0, 7]) == (0, 0, 0)


def test_exif_orientation_is_applied():
    stored = halves(40, 20)  # red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = jpeg_bytes(stored, exif=exif)
    loaded = load_image(data)
    assert loaded.size == (20, 40)  # width and height swapped
    array = np.asarray(loaded).astype(int)
    assert np.abs(array[5, 10] - (255, 0, 0)).max() < 40  # red on top
    assert np.abs(array[35, 10] - (0, 0, 255)).max() < 40  # blue at the bottom


def test_jpeg_draft_decodes_at_the_smallest_scale_not_below_the_target():
    big = halves(1600, 1200)
    data = jpeg_bytes(big)
    drafted = load_image(data, target_size=(224, 224))
    assert drafted.size == (400, 300)  # 1/4 scale; 1/8 would give 200x150 < 224
    full = load_image(data)
    assert full.size == (1600, 1200)
    diff = np.abs(to_model_input(drafted, (224, 224)).astype(int) - to_model_input(full, (224, 224)))
    assert diff.mean() < 3


def test_jpeg_draft_accounts_for_exif_rotation():
    exif = Image.Exif()
    exif[0x0112] = 6
    data = jpeg_bytes(halves(1600, 800), exif=exif)  # displayed 800 wide, 1600 tall
    loaded = load_image(data, target_size=(700, 300))  # (height, width)
    width, height = loaded.size
    assert width >= 300 and height >= 700
    assert (width, height) == (400, 800)  # scale 1/2: 1/4 would give 200 wide < 300


# --- failures ---------------------------------------------------------------------------


def test_missing_file(tmp_path):
    error = expect_error(tmp_path / "nope.jpg", "not found")
    assert "nope.jpg" in str(error)


def test_path_with_a_nul_byte_is_not_found():
    error = expect_error("photo\x00.jpg", "not found")
    assert "not a valid file path" in str(error)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may read anything")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.png"
    path.write_bytes(png_bytes(halves()))
    path.chmod(0)
    assert "Permission denied" in str(expect_error(path, "unreadable"))


def test_folder_is_not_an_image(tmp_path):
    expect_error(tmp_path, "not an image")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    error = expect_error(tmp_path / "empty.jpg", "not an image")
    assert "empty.jpg" in str(error) and "empty file" in str(error)


def test_text_named_jpg(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not a picture\n")
    error = expect_error(tmp_path / "notes.jpg", "not an image")
    assert "notes.jpg" in str(error)


def test_truncated_jpeg(tmp_path):
    data = jpeg_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)))
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    error = expect_error(tmp_path / "cut.jpg", "corrupt")
    assert "cut.jpg" in str(error) and "truncated" in str(error)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [40, 100])  # 1600 px: Pillow only warns; 10000 px: Pillow raises
def test_over_the_pixel_cap(tmp_path, monkeypatch, side):
    (tmp_path / "huge.png").write_bytes(png_bytes(Image.new("RGB", (side, side))))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    error = expect_error(tmp_path / "huge.png", "too large")
    assert "huge.png" in str(error)


def test_pixel_cap_still_on_by_default():
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS >= 89_000_000


@pytest.mark.parametrize("url", ["ftp://example.com/a.jpg", "file:///etc/passwd", "gopher://x/y"])
def test_other_url_schemes_are_refused(url):
    expect_error(url, "refused url")


# --- URLs against a local server -----------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    image = png_bytes(halves())

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/ok.png":
            self._send(200, self.image)
        elif self.path == "/slow.png":
            time.sleep(1.5)
            self._send(200, self.image)
        elif self.path == "/big.png":  # honest Content-Length above the cap
            self._send(200, b"x" * 5000)
        elif self.path == "/big-stream.png":  # no Content-Length: the cap applies while reading
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(10):
                self.wfile.write(b"x" * 1000)
        elif self.path == "/broken-chunks.png":  # chunked body cut short mid-chunk
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"400\r\n" + self.image[:100])
        elif self.path == "/drip.png":  # one byte every 0.2 s: each read is quick, the whole is not
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            try:
                for byte in self.image[:100]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass  # the client gave up, as it should
        elif self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/to-ftp":
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/secret.png")
            self.end_headers()
        else:
            self._send(404, b"not here")

    def _send(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_url_ok(server):
    loaded = load_image(f"{server}/ok.png")
    assert np.array_equal(np.asarray(loaded), np.asarray(halves()))
    assert load_for_model(f"{server}/ok.png", (10, 10)).shape == (10, 10, 3)


def test_url_404(server):
    error = expect_error(f"{server}/missing.png", "http error")
    assert "404" in str(error) and "/missing.png" in str(error)


def test_url_timeout(server):
    expect_error(f"{server}/slow.png", "timeout", timeout=0.3)


@pytest.mark.parametrize("path", ["/big.png", "/big-stream.png"])
def test_url_too_big(server, path):
    expect_error(f"{server}{path}", "too large", max_bytes=2000)


def test_url_with_a_truncated_chunked_body_is_an_http_error(server):
    error = expect_error(f"{server}/broken-chunks.png", "http error")
    assert "/broken-chunks.png" in str(error)


def test_url_redirect_to_other_scheme_is_refused(server):
    expect_error(f"{server}/to-ftp", "refused url")


def test_url_total_deadline_stops_a_dripping_server(server):
    started = time.monotonic()
    error = expect_error(f"{server}/drip.png", "timeout", timeout=1.0, deadline=1.0)
    assert time.monotonic() - started < 2.5  # per read 0.2 s: only the total deadline can stop it
    assert str(error) == f"{server}/drip.png: not downloaded within the 1 s deadline"


def test_url_redirect_loop_is_one_line(server):
    error = expect_error(f"{server}/loop", "http error")
    assert str(error) == f"{server}/loop: redirect loop: {server}/loop -> {server}/loop"


def test_url_connection_refused():
    expect_error("http://127.0.0.1:1/a.png", "http error", timeout=2)


def test_resize_policy_is_documented():
    assert images.RESAMPLE == Image.Resampling.BILINEAR
    assert "aspect ratio" in images.__doc__


def test_fit_keeps_the_aspect_ratio_and_crops_the_centre():
    # 300x200 (w x h): left third red, middle green, right third blue. The shorter side goes
    # to 224 (336x224), then the centre 224x224 is cut: 56 columns of red and of blue are lost.
    pixels = np.zeros((200, 300, 3), np.uint8)
    pixels[:, :100, 0] = pixels[:, 100:200, 1] = pixels[:, 200:, 2] = 255
    fit = images.Fit((224, 224), 224)
    out = to_model_input(Image.fromarray(pixels), fit)
    assert out.shape == (224, 224, 3)
    assert out[112, 112].tolist() == [0, 255, 0]
    assert (out[:, :10, 0] > 200).all() and (out[:, -10:, 2] > 200).all()  # red and blue edges kept
    green_columns = int((out[112, :, 1] > 128).sum())
    assert 105 <= green_columns <= 119  # 100 of 300 columns at 336/300: 112 of 224 (red and blue: 56 each)
    plain = to_model_input(Image.fromarray(pixels), (224, 224))  # squashed: a third each
    assert 70 <= int((plain[112, :, 1] > 128).sum()) <= 80
    assert images.fit_of(type("M", (), {"fit": fit, "input_size": (224, 224)})()) == fit
    assert images.fit_of(type("M", (), {"input_size": (32, 48)})()) == (32, 48)
    assert prepare_batch([], fit).shape == (0, 224, 224, 3)
    with pytest.raises(ValueError, match="smaller than the crop"):
        images.Fit((224, 224), 200)
