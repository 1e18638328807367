"""``serve --watch FOLDER`` through the HTTP API on 127.0.0.1: a photo copied into the folder is
found by an upload search within 10 s, a deleted one disappears within 10 s, and a new photo's
thumbnail is served (ids past the count are valid)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from _index_data import free_port, register_tiny
from _waiting import patience
from _waiting import wait_until as _wait_until
from click.testing import CliRunner

from similar_images.cli import main

TESTS = Path(__file__).resolve().parents[1]
DEADLINE_S = 10.0

SERVE = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/sync"]
from similar_images import features
features.MODELS["tiny"] = "_index_data:create_tiny"
from similar_images.cli import main
main(sys.argv[2:])
"""


def wait_until(condition, deadline_s: float = DEADLINE_S) -> float:
    return _wait_until(condition, deadline_s, poll_s=0.1)


def first_hit(base: str, image: Path) -> dict | None:
    with image.open("rb") as f:
        answer = httpx.post(f"{base}/api/search", files={"image": (image.name, f, "image/png")}, data={"k": "1"},
                            timeout=patience(30))
    answer.raise_for_status()
    results = answer.json()["results"]
    return results[0] if results and results[0]["score"] >= 0.9999 else None


def test_serve_watch_finds_a_new_photo_and_forgets_a_deleted_one(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS / "sync"))
    from _sync_data import CountingTiny, make_folder

    from similar_images.sync import sync_folder

    register_tiny(monkeypatch)
    folder = tmp_path / "photos"
    make_folder(folder, range(5))
    sync_folder(folder, extractor=CountingTiny(), show_progress=False)  # a tiny-model database beside it
    incoming = tmp_path / "incoming"
    make_folder(incoming, [40])
    script = tmp_path / "serve.py"
    script.write_text(SERVE)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, str(script), str(TESTS), "serve", "--watch", str(folder), "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()

    def up() -> bool:
        assert proc.poll() is None, "".join(lines)
        try:
            return httpx.get(f"{base}/api/health", timeout=patience(5)).status_code == 200
        except httpx.HTTPError:
            return False
    try:
        wait_until(up, patience(180))
        assert httpx.get(f"{base}/api/health", timeout=patience(30)).json()["count"] == 5
        shutil.copy(incoming / "img040.png", folder / "arrived.png")
        wait_until(lambda: (first_hit(base, incoming / "img040.png") or {}).get("name") == "arrived.png")
        hit = first_hit(base, incoming / "img040.png")
        assert hit["id"] >= 5 and httpx.get(f"{base}{hit['thumbnail_url']}", timeout=patience(30)).status_code == 200
        kept = tmp_path / "img001-kept.png"
        shutil.copy(folder / "img001.png", kept)
        (folder / "img001.png").unlink()
        wait_until(lambda: first_hit(base, kept) is None)
        assert httpx.get(f"{base}/api/health", timeout=patience(30)).json()["count"] == 5
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=patience(60))
    assert proc.returncode == 0, "".join(lines)


def test_poll_needs_watch(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--poll", "2"])
    assert result.exit_code == 2 and "--poll needs --watch FOLDER" in result.output
