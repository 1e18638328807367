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


# --- get_ms_coco_vectors.sh -------------------------------------------------------------


@pytest.fixture
def vectors_site(server, tmp_path):
    """A work folder with a 5-image file list and a server holding matching vectors."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "ms_coco_file_list.txt").write_text("\n".join(sorted(IMAGE_NAMES)) + "\n")
    vectors = np.random.default_rng(0).random((len(IMAGE_NAMES), 1280), dtype=np.float32)
    path = server.folder / "vectors.npy"
    np.save(path, vectors)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    env = {"PYTHON": sys.executable, "COCO_VECTORS_URL": f"{server.url}/vectors.npy"}
    return server, work, vectors, digest, env


def _output(work: Path) -> Path:
    return work / "ms_coco_file_list.txt.saved_predictions.npy"


def test_vectors_without_url_explains_how_to_compute(tmp_path):
    result = _run(VECTORS_SCRIPT, cwd=tmp_path, env={"COCO_VECTORS_URL": ""})
    assert result.returncode == 1
    assert "similar-images extract --model efficientnet-lite0" in result.stderr
    assert "minutes" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_vectors_download_check_install(vectors_site):
    from similar_images.store import load_vectors_manifest, open_vectors

    server, work, vectors, digest, env = vectors_site
    result = _run(VECTORS_SCRIPT, "--sha256", digest, cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(open_vectors(_output(work)), vectors)
    manifest = load_vectors_manifest(_output(work))
    assert manifest["names"] == sorted(IMAGE_NAMES)
    assert (manifest["count"], manifest["dimension"]) == (5, 1280)
    assert manifest["model"]["name"] == "efficientnet-lite0"
    assert manifest["model"]["weights"].startswith("pretrained")
    assert manifest["source"] == {"url": env["COCO_VECTORS_URL"], "sha256": digest}
    assert "Next: similar-images build -d 1280" in result.stderr
    assert sorted(p.name for p in work.iterdir()) == [
        "ms_coco_file_list.txt", _output(work).name, _output(work).name + ".manifest.json"]

    before = len(server.requests)
    again = _run(VECTORS_SCRIPT, "--sha256", digest, cwd=work, env=env)
    assert again.returncode == 0 and "already in place" in again.stderr
    assert len(server.requests) == before


def test_vectors_checksum_published_beside_the_url(vectors_site):
    server, work, _, digest, env = vectors_site
    (server.folder / "vectors.npy.sha256").write_text(f"{digest.upper()}  vectors.npy\n")
    result = _run(VECTORS_SCRIPT, cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    assert _output(work).exists()


def test_vectors_without_checksum_are_refused(vectors_site):
    _, work, _, _, env = vectors_site
    result = _run(VECTORS_SCRIPT, cwd=work, env=env)
    assert result.returncode == 1
    assert "no valid sha256" in result.stderr
    assert not _output(work).exists()


def test_vectors_sha_mismatch_is_rejected(vectors_site):
    _, work, _, digest, env = vectors_site
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    result = _run(VECTORS_SCRIPT, "--sha256", wrong, cwd=work, env=env)
    assert result.returncode == 1
    assert "does not match" in result.stderr
    assert sorted(p.name for p in work.iterdir()) == ["ms_coco_file_list.txt"]


def test_vectors_interrupted_download_resumes(vectors_site):
    server, work, vectors, digest, env = vectors_site
    size = (server.folder / "vectors.npy").stat().st_size
    server.drop_after["/vectors.npy"] = size // 3
    first = _run(VECTORS_SCRIPT, "--sha256", digest, cwd=work, env=env)
    assert first.returncode == 1 and "re-run" in first.stderr
    assert not _output(work).exists()
    second = _run(VECTORS_SCRIPT, "--sha256", digest, cwd=work, env=env)
    assert second.returncode == 0, second.stderr
    assert server.gets("vectors.npy")[-1][2] == f"bytes={size // 3}-"
    np.testing.assert_array_equal(np.load(_output(work)), vectors)


def test_vectors_for_another_file_list_are_rejected(vectors_site):
    server, work, _, _, env = vectors_site
    np.save(server.folder / "vectors.npy", np.ones((4, 1280), np.float32))
    digest = hashlib.sha256((server.folder / "vectors.npy").read_bytes()).hexdigest()
    result = _run(VECTORS_SCRIPT, "--sha256", digest, cwd=work, env=env)
    assert result.returncode == 1
    assert "has 4 vectors but the file list names 5 images" in result.stderr
    assert not _output(work).exists()
    assert "download is kept" in result.stderr


def test_vectors_of_the_wrong_dimension_are_rejected(vectors_site):
    _, work, _, digest, env = vectors_site
    result = _run(VECTORS_SCRIPT, "--sha256", digest, "--model", "vgg16", cwd=work, env=env)
    assert result.returncode == 1
    assert "1280-d vectors, the model makes 4096-d" in result.stderr
    assert not _output(work).exists()


def test_vectors_manifest_published_beside_the_url(vectors_site):
    import json

    server, work, _, digest, env = vectors_site
    model = {"name": "efficientnet-lite0", "weights": "file:sha256=abc", "dim": 1280,
             "input_size": [224, 224], "runtime": "native", "precision": "fp32"}
    (server.folder / "vectors.npy.manifest.json").write_text(
        json.dumps({"model": model, "names": sorted(IMAGE_NAMES)}))
    result = _run(VECTORS_SCRIPT, "--sha256", digest, cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    written = json.loads(Path(str(_output(work)) + ".manifest.json").read_text())
    assert written["model"] == model


def test_vectors_need_the_file_list(tmp_path, vectors_site):
    _, _, _, digest, env = vectors_site
    result = _run(VECTORS_SCRIPT, "--sha256", digest, cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "get_ms_coco_dataset.sh first" in result.stderr


# --- similar_images.coco_vectors ----------------------------------------------------------


def test_model_description_matches_the_efficientnet_extractor():
    from similar_images.coco_vectors import model_description
    from similar_images.features import get_extractor

    assert model_description("efficientnet-lite0") == get_extractor("efficientnet-lite0").describe()
    with pytest.raises(ValueError, match="unknown model"):
        model_description("resnet")


@pytest.mark.slow
def test_model_description_matches_the_vgg16_extractor():
    from similar_images.coco_vectors import model_description
    from similar_images.features import get_extractor

    described = model_description("vgg16", weights="none")
    assert described == get_extractor("vgg16", weights="none").describe()
    assert model_description("vgg16")["weights"] == "imagenet"


def test_install_refuses_non_finite_vectors_and_existing_output(tmp_path):
    from similar_images.coco_vectors import install_vectors
    from similar_images.errors import DatabaseError

    (tmp_path / "list.txt").write_text("a.jpg\nb.jpg\n")
    bad = np.ones((2, 1280), np.float32)
    bad[1, 3] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(DatabaseError, match="NaN"):
        install_vectors(tmp_path / "bad.npy", file_list=tmp_path / "list.txt")
    assert not (tmp_path / "list.txt.saved_predictions.npy").exists()
    np.save(tmp_path / "good.npy", np.ones((2, 1280), np.float64))
    manifest = install_vectors(tmp_path / "good.npy", file_list=tmp_path / "list.txt", image_dir="imgs")
    assert manifest["image_dir"] == "imgs" and manifest["dimension"] == 1280
    assert np.load(tmp_path / "list.txt.saved_predictions.npy").dtype == np.float32
    with pytest.raises(FileExistsError, match="already exists"):
        install_vectors(tmp_path / "good.npy", file_list=tmp_path / "list.txt")
    (tmp_path / "text.npy").write_text("hello")
    with pytest.raises(DatabaseError, match="not a .npy array"):
        install_vectors(tmp_path / "text.npy", file_list=tmp_path / "list.txt", force=True)


# --- the README's COCO steps, end to end, on a tiny fake COCO ------------------------------------


@pytest.mark.slow
def test_readme_coco_steps_end_to_end(tmp_path, coco_site, monkeypatch):
    from click.testing import CliRunner

    from similar_images.cli import main

    _, _, env = coco_site
    assert _run(DATASET_SCRIPT, cwd=tmp_path, env=env).returncode == 0
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    steps = [
        ["extract", "--model", "efficientnet-lite0", "--no-progress"],
        ["build", "-d", "1280", "--no-progress"],
        ["search", "ms_coco/val2014/" + IMAGE_NAMES[2], "-k", "3", "--json"],
    ]
    for step in steps:
        result = runner.invoke(main, step)
        assert result.exit_code == 0, (step, result.output)
    import json

    (answer,) = json.loads(result.stdout)
    assert answer["results"][0]["path"] == IMAGE_NAMES[2]
    assert answer["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_installed_vectors_build_and_search(vectors_site, monkeypatch):
    import json

    from click.testing import CliRunner

    from similar_images.cli import main

    _, work, vectors, digest, env = vectors_site
    assert _run(VECTORS_SCRIPT, "--sha256", digest, cwd=work, env=env).returncode == 0
    monkeypatch.chdir(work)
    runner = CliRunner()
    built = runner.invoke(main, ["build", "-d", "1280", "--no-progress"])
    assert built.exit_code == 0, built.output
    found = runner.invoke(main, ["search", "--id", "3", "-k", "5", "--json"])
    assert found.exit_code == 0, found.output
    (answer,) = json.loads(found.stdout)
    exact = np.argsort(-(vectors / np.linalg.norm(vectors, axis=1, keepdims=True)) @ (vectors[3] / np.linalg.norm(vectors[3])))
    assert [r["id"] for r in answer["results"]] == list(exact[:5])
    assert answer["results"][0]["path"] == sorted(IMAGE_NAMES)[3]
