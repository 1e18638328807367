"""get_ms_coco_dataset.sh and get_ms_coco_vectors.sh against a local HTTP server.

The server (127.0.0.1, a thread) serves files from a folder, honours Range requests
(needed to resume) and can be told to drop the connection half way through a file.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DATASET_SCRIPT = ROOT / "get_ms_coco_dataset.sh"
VECTORS_SCRIPT = ROOT / "get_ms_coco_vectors.sh"

pytestmark = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("curl") and shutil.which("unzip")),
    reason="needs bash, curl and unzip",
)


class RangeServer:
    """Serves ``folder`` over HTTP with Range support; records every request.

    Attributes:
        requests: ``(method, path, range header or None)`` per request.
        drop_after: ``{url path: n}``: the next GET of that path sends ``n`` bytes of
            the body, then closes the connection (the entry is used once).
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.requests: list[tuple[str, str, str | None]] = []
        self.drop_after: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, body: bool):
                rng = self.headers.get("Range")
                server.requests.append((self.command, self.path, rng))
                path = server.folder / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start, status = 0, 200
                if rng:
                    match = re.fullmatch(r"bytes=(\d+)-", rng)
                    start = int(match.group(1)) if match else 0
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(data) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if not body:
                    return
                limit = server.drop_after.pop(self.path, None) if body else None
                chunk = data[start:] if limit is None else data[start : start + limit]
                self.wfile.write(chunk)
                if limit is not None:
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # the client sees a short body

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def gets(self, suffix: str) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if r[0] == "GET" and r[1].endswith(suffix)]


@pytest.fixture
def server(tmp_path):
    folder = tmp_path / "www"
    folder.mkdir()
    srv = RangeServer(folder)
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _jpeg_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


IMAGE_NAMES = [f"COCO_val2014_{i:012d}.jpg" for i in (42, 7, 133, 73, 1000)]


def _make_val2014_zip(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for i, name in enumerate(IMAGE_NAMES):
            zf.writestr(f"val2014/{name}", _jpeg_bytes(i))
        zf.writestr("README.txt", "not part of val2014/")
    return path.read_bytes()


def _make_annotations_zip(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("annotations/instances_val2014.json", '{"images": [], "annotations": [], "categories": []}')
        zf.writestr("annotations/captions_val2014.json", "{}")


def _run(script: Path, *args: str, cwd: Path, env: dict[str, str] | None = None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        ["bash", str(script), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def coco_site(server):
    """A fake images.cocodataset.org: zips/val2014.zip and annotations/... ."""
    data = _make_val2014_zip(server.folder / "zips" / "val2014.zip")
    _make_annotations_zip(server.folder / "annotations" / "annotations_trainval2014.zip")
    env = {"COCO_BASE_URL": server.url, "COCO_VAL2014_SIZE": str(len(data)), "COCO_ANNOTATIONS_SIZE": ""}
    return server, data, env


def _assert_dataset_in_place(work: Path) -> None:
    images = work / "ms_coco" / "val2014"
    assert sorted(p.name for p in images.iterdir()) == sorted(IMAGE_NAMES)
    listed = (work / "ms_coco_file_list.txt").read_text().splitlines()
    assert listed == sorted(IMAGE_NAMES)
    assert [p.name for p in (work / "ms_coco").iterdir() if p.name != "val2014"] == []  # zip, .part gone


# --- get_ms_coco_dataset.sh -------------------------------------------------------------


def test_dataset_download_extract_list(tmp_path, coco_site):
    server, _, env = coco_site
    work = tmp_path / "work"
    work.mkdir()
    result = _run(DATASET_SCRIPT, cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    _assert_dataset_in_place(work)
    assert "listed 5 images" in result.stderr
    assert len(server.gets("val2014.zip")) == 1


def test_dataset_rerun_does_nothing(tmp_path, coco_site):
    server, _, env = coco_site
    assert _run(DATASET_SCRIPT, "--dir", str(tmp_path / "w"), cwd=tmp_path, env=env).returncode == 0
    listing = tmp_path / "w" / "ms_coco_file_list.txt"
    stamp = listing.stat().st_mtime_ns
    before = len(server.requests)
    result = _run(DATASET_SCRIPT, "--dir", str(tmp_path / "w"), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "already in place" in result.stderr
    assert len(server.requests) == before, "a re-run with everything in place must not download"
    assert listing.stat().st_mtime_ns == stamp


def test_dataset_interrupted_download_resumes(tmp_path, coco_site):
    server, data, env = coco_site
    half = len(data) // 2
    server.drop_after["/zips/val2014.zip"] = half
    first = _run(DATASET_SCRIPT, "--dir", str(tmp_path), cwd=tmp_path, env=env)
    assert first.returncode != 0
    assert "re-run" in first.stderr
    part = tmp_path / "ms_coco" / "val2014.zip.part"
    assert part.stat().st_size == half
    assert not (tmp_path / "ms_coco_file_list.txt").exists()

    second = _run(DATASET_SCRIPT, "--dir", str(tmp_path), cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert server.gets("val2014.zip")[-1][2] == f"bytes={half}-", "the second run must resume"
    _assert_dataset_in_place(tmp_path)


def test_dataset_resumes_a_partial_file_left_in_place(tmp_path, coco_site):
    server, data, env = coco_site
    part = tmp_path / "ms_coco" / "val2014.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])
    result = _run(DATASET_SCRIPT, "--dir", str(tmp_path), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert [r[2] for r in server.gets("val2014.zip")] == ["bytes=1000-"]
    _assert_dataset_in_place(tmp_path)


def test_dataset_complete_part_without_known_size(tmp_path, coco_site):
    # Killed after the last byte arrived but before the rename: the server answers 416.
    server, data, env = coco_site
    part = tmp_path / "ms_coco" / "val2014.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data)
    result = _run(DATASET_SCRIPT, "--dir", str(tmp_path), cwd=tmp_path, env={**env, "COCO_VAL2014_SIZE": ""})
    assert result.returncode == 0, result.stderr
    assert [r[:2] for r in server.requests] == [("GET", "/zips/val2014.zip"), ("HEAD", "/zips/val2014.zip")]
    _assert_dataset_in_place(tmp_path)


def test_dataset_corrupt_archive_is_rejected(tmp_path, server):
    garbage = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    (server.folder / "zips").mkdir()
    (server.folder / "zips" / "val2014.zip").write_bytes(garbage)
    env = {"COCO_BASE_URL": server.url, "COCO_VAL2014_SIZE": "5000"}
    result = _run(DATASET_SCRIPT, "--dir", str(tmp_path), cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert "not a valid zip archive" in result.stderr
    assert not (tmp_path / "ms_coco" / "val2014").exists()
    assert not (tmp_path / "ms_coco_file_list.txt").exists()
    assert not (tmp_path / "ms_coco" / "val2014.zip.part").exists()
    assert not (tmp_path / "ms_coco" / "val2014.zip").exists()


def test_dataset_wrong_size_is_rejected(tmp_path, coco_site):
    _, data, env = coco_site
    env = {**env, "COCO_VAL2014_SIZE": str(len(data) - 10)}
    result = _run(DATASET_SCRIPT, "--dir", str(tmp_path), cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert f"expected {len(data) - 10}" in result.stderr
    assert not (tmp_path / "ms_coco" / "val2014").exists()


def test_dataset_http_error(tmp_path, server):
    result = _run(DATASET_SCRIPT, "--dir", str(tmp_path), cwd=tmp_path, env={"COCO_BASE_URL": server.url})
    assert result.returncode != 0
    assert "stopped" in result.stderr and "val2014.zip" in result.stderr
    assert not (tmp_path / "ms_coco_file_list.txt").exists()


def test_dataset_annotations(tmp_path, coco_site):
    server, _, env = coco_site
    result = _run(DATASET_SCRIPT, "--dir", str(tmp_path), "--annotations", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    annotations = tmp_path / "ms_coco" / "annotations"
    assert [p.name for p in annotations.iterdir()] == ["instances_val2014.json"]
    assert '"categories"' in (annotations / "instances_val2014.json").read_text()
    _assert_dataset_in_place_with_annotations(tmp_path)
    before = len(server.requests)
    again = _run(DATASET_SCRIPT, "--dir", str(tmp_path), "--annotations", cwd=tmp_path, env=env)
    assert again.returncode == 0 and len(server.requests) == before


def _assert_dataset_in_place_with_annotations(work: Path) -> None:
    assert (work / "ms_coco_file_list.txt").read_text().splitlines() == sorted(IMAGE_NAMES)
    assert sorted(p.name for p in (work / "ms_coco").iterdir()) == ["annotations", "val2014"]


def test_dataset_bad_option(tmp_path):
    result = _run(DATASET_SCRIPT, "--frobnicate", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown option: --frobnicate (see --help)"
