"""get_ms_coco_dataset.sh against a local HTTP server, and the README's COCO steps end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _coco_fakes import (
    DATASET_SCRIPT,
    IMAGE_NAMES,
    make_annotations_zip,
    make_val2014_zip,
    needs_tools,
    server,  # noqa: F401  (a fixture)
)
from _coco_fakes import (
    run_script as _run,
)

pytestmark = needs_tools


@pytest.fixture
def coco_site(server):
    """A fake images.cocodataset.org: zips/val2014.zip and annotations/... ."""
    data = make_val2014_zip(server.folder / "zips" / "val2014.zip")
    make_annotations_zip(server.folder / "annotations" / "annotations_trainval2014.zip")
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
    (answer,) = json.loads(result.stdout)
    assert answer["results"][0]["path"] == IMAGE_NAMES[2]
    assert answer["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
