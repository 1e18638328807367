"""One set of input rules for extract and add (db/inputs.py): duplicates, names outside the
image folder, URL lines and non-UTF-8 file names are skipped with their reason; the rest works."""

from __future__ import annotations

import os
import socket
import sys

import numpy as np
import pytest
from _extract_data import PixelExtractor
from _index_data import TinyExtractor, image_db, write_images

from similar_images.db.inputs import INPUT_SKIP_REASONS, check_names
from similar_images.db.vectors import load_vectors_manifest
from similar_images.extract import run_extraction
from similar_images.search import SimilarImages


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def reasons(skipped) -> dict[str, str]:
    return {item["path"]: item["reason"] for item in skipped}


def test_check_names_applies_each_rule(tmp_path):
    folder = tmp_path / "images"
    write_images(folder, range(2))
    (tmp_path / "secret.png").write_bytes(b"x")
    absolute = str(folder / "img001.png")
    names = ["img000.png", "./img000.png", "../images/img000.png", absolute, "img001.png",
             "../secret.png", "http://127.0.0.1:1/x.png", "bad\udcff.png"]
    checked = check_names(names, folder)
    assert checked.names == ["img000.png", absolute]
    assert reasons(checked.skipped) == {
        "./img000.png": "duplicate", "../images/img000.png": "duplicate", "img001.png": "duplicate",
        "../secret.png": "outside image folder", "http://127.0.0.1:1/x.png": "refused url",
        "bad\\xff.png": "not utf-8"}
    assert {item["reason"] for item in checked.skipped} <= set(INPUT_SKIP_REASONS)
    assert all("\n" not in item["message"] for item in checked.skipped)
    assert check_names(["http://127.0.0.1:1/x.png"], folder, allow_urls=True).names == ["http://127.0.0.1:1/x.png"]


def test_extract_skips_repeats_escapes_and_urls_with_reasons(tmp_path, no_network):
    folder = tmp_path / "images"
    write_images(folder, range(3))
    (tmp_path / "outside.png").write_bytes((folder / "img000.png").read_bytes())
    file_list = tmp_path / "list.txt"
    file_list.write_bytes(b"img000.png\nimg001.png\n./img000.png\n" + str(folder / "img001.png").encode()
                          + b"\n../outside.png\nhttp://127.0.0.1:9/x.png\nimg002.png\nbad\xff.png\n")
    output = tmp_path / "v.npy"
    manifest = run_extraction(file_list, folder, output, PixelExtractor(), batch_size=2, show_progress=False)
    assert manifest["names"] == ["img000.png", "img001.png", "img002.png"]
    assert reasons(manifest["skipped"]) == {
        "./img000.png": "duplicate", str(folder / "img001.png"): "duplicate", "../outside.png": "outside image folder",
        "http://127.0.0.1:9/x.png": "refused url", "bad\\xff.png": "not utf-8"}
    assert load_vectors_manifest(output, with_names=True)["count"] == 3


def test_extract_allow_urls_fetches_from_a_local_server(tmp_path):
    import http.server
    import threading

    folder = tmp_path / "images"
    write_images(folder, range(1))
    body = (folder / "img000.png").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/a.png"
        file_list = tmp_path / "list.txt"
        file_list.write_text(f"img000.png\n{url}\n")
        manifest = run_extraction(file_list, folder, tmp_path / "v.npy", PixelExtractor(), show_progress=False,
                                  allow_urls=True)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert manifest["names"] == ["img000.png", url] and manifest["skipped"] == []


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS refuses file names that are not UTF-8")
def test_add_skips_a_non_utf8_file_name_and_adds_the_rest(tmp_path, monkeypatch):
    from _index_data import register_tiny

    register_tiny(monkeypatch)
    vectors, image_dir = image_db(tmp_path, n=4)
    new = tmp_path / "new"
    write_images(new, [50, 51])
    os.rename(new / "img051.png", os.fsencode(new) + b"/bad\xff.png")
    db = SimilarImages.open(vectors, index=None, extractor=TinyExtractor())
    report = db.add([new, new / "img050.png"])
    assert len(report.added) == 1 and report.added[0].endswith("img050.png")
    assert reasons(report.skipped) == {str(new / "bad\\xff.png"): "not utf-8", str(new / "img050.png"): "duplicate"}
    assert len(db) == 5 and np.isfinite(db.vector(4)).all()


class NaNOnce(PixelExtractor):
    """A model that returns NaN for the first image it sees (as a broken model could)."""

    def embed(self, batch):
        out = super().embed(batch)
        if self.calls == 1:
            out[0, 3] = np.nan
        return out


def test_extract_skips_a_non_finite_vector_with_a_reason(tmp_path):
    folder = tmp_path / "images"
    write_images(folder, range(3))
    file_list = tmp_path / "list.txt"
    file_list.write_text("img000.png\nimg001.png\nimg002.png\n")
    manifest = run_extraction(file_list, folder, tmp_path / "v.npy", NaNOnce(), batch_size=1, workers=1,
                              show_progress=False)
    assert len(manifest["names"]) == 2 and [s["reason"] for s in manifest["skipped"]] == ["non-finite"]
    assert manifest["skipped"][0]["path"] not in manifest["names"]
    from similar_images.db.database import Database

    assert np.isfinite(Database.open(tmp_path / "v.npy", fresh=True).vectors).all()


def test_disk_full_during_extraction_is_one_line_and_leaves_no_output(tmp_path, monkeypatch):
    import errno

    from similar_images.db import checkpoint
    from similar_images.errors import DatabaseError

    folder = tmp_path / "images"
    write_images(folder, range(2))
    file_list = tmp_path / "list.txt"
    file_list.write_text("img000.png\nimg001.png\n")

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_bytes_atomic", full)
    with pytest.raises(DatabaseError, match=r"chunk-0+\.npz: disk full while saving a checkpoint; the output is "
                                            "unchanged") as info:
        run_extraction(file_list, folder, tmp_path / "v.npy", PixelExtractor(), show_progress=False)
    assert "\n" not in str(info.value) and not (tmp_path / "v.npy").exists()
