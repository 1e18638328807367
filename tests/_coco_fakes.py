"""Fakes for the COCO script tests: a local HTTP server with Range support, small archives.

The server (127.0.0.1, a thread) serves files from a folder, honours Range requests
(needed to resume) and can be told to drop the connection half way through a file.
"""

from __future__ import annotations

import http.server
import io
import os
import re
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _waiting import patience
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DATASET_SCRIPT = ROOT / "get_ms_coco_dataset.sh"
VECTORS_SCRIPT = ROOT / "get_ms_coco_vectors.sh"

needs_tools = pytest.mark.skipif(
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


def start_server(folder: Path) -> RangeServer:
    server = RangeServer(folder)
    server.thread.start()
    return server


def stop_server(server: RangeServer) -> None:
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    """A local Range-capable HTTP server over an empty folder ``tmp_path / "www"``."""
    folder = tmp_path / "www"
    folder.mkdir()
    srv = start_server(folder)
    yield srv
    stop_server(srv)


def jpeg_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


IMAGE_NAMES = [f"COCO_val2014_{i:012d}.jpg" for i in (42, 7, 133, 73, 1000)]


def make_val2014_zip(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for i, name in enumerate(IMAGE_NAMES):
            zf.writestr(f"val2014/{name}", jpeg_bytes(i))
        zf.writestr("README.txt", "not part of val2014/")
    return path.read_bytes()


def make_annotations_zip(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("annotations/instances_val2014.json", '{"images": [], "annotations": [], "categories": []}')
        zf.writestr("annotations/captions_val2014.json", "{}")


def run_script(script: Path, *args: str, cwd: Path, env: dict[str, str] | None = None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        ["bash", str(script), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
        timeout=patience(300),
    )
