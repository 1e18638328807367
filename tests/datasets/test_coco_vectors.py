"""get_ms_coco_vectors.sh against a local HTTP server, and similar_images.coco_vectors."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from _coco_fakes import (
    IMAGE_NAMES,
    VECTORS_SCRIPT,
    needs_tools,
    server,  # noqa: F401  (a fixture)
)
from _coco_fakes import (
    run_script as _run,
)

pytestmark = needs_tools


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
    from similar_images.db.vectors import load_vectors_manifest, open_vectors

    server, work, vectors, digest, env = vectors_site
    result = _run(VECTORS_SCRIPT, "--sha256", digest, cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(open_vectors(_output(work)), vectors)
    manifest = load_vectors_manifest(_output(work), with_names=True)
    assert manifest["names"] == sorted(IMAGE_NAMES)
    assert (manifest["count"], manifest["dimension"]) == (5, 1280)
    assert manifest["model"]["name"] == "efficientnet-lite0"
    assert manifest["model"]["weights"].startswith("pretrained")
    assert manifest["source"] == {"url": env["COCO_VECTORS_URL"], "sha256": digest}
    assert "Next: similar-images build -d 1280" in result.stderr
    assert sorted(p.name for p in work.iterdir()) == [
        "ms_coco_file_list.txt", _output(work).name, _output(work).name + ".catalog.sqlite",
        _output(work).name + ".catalog.sqlite.verified.json", _output(work).name + ".lock",
        _output(work).name + ".manifest.json", _output(work).name + ".verified.json"]

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


# --- similar_images.datasets.coco_vectors ----------------------------------------------------------


def test_model_description_matches_the_efficientnet_extractor():
    from similar_images.datasets.coco_vectors import model_description
    from similar_images.features import get_extractor

    assert model_description("efficientnet-lite0") == get_extractor("efficientnet-lite0").describe()
    with pytest.raises(ValueError, match="unknown model"):
        model_description("resnet")


@pytest.mark.slow
def test_model_description_matches_the_vgg16_extractor():
    from similar_images.datasets.coco_vectors import model_description
    from similar_images.features import get_extractor

    described = model_description("vgg16", weights="none")
    assert described == get_extractor("vgg16", weights="none").describe()
    assert model_description("vgg16")["weights"] == "imagenet"


def test_install_refuses_non_finite_vectors_and_existing_output(tmp_path):
    from similar_images.datasets.coco_vectors import install_vectors
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


def test_installed_vectors_build_and_search(vectors_site, monkeypatch):
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
