"""``similar-images sync``: the summary line, the next command, `search` without --vectors
afterwards, --dry-run, skipped files (exit 1) and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from _index_data import register_tiny
from click.testing import CliRunner

from similar_images.cli import main

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def photos(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS / "sync"))
    from _sync_data import CountingTiny, make_folder

    from similar_images.sync import sync_folder

    register_tiny(monkeypatch)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "my_photos"
    make_folder(folder, range(4))
    sync_folder(folder, extractor=CountingTiny(), show_progress=False)  # created with the tiny model
    make_folder(folder, [10, 11])
    return folder


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_sync_then_search_without_vectors(photos):
    dry = run("sync", "my_photos", "--dry-run")
    assert dry.exit_code == 0 and "add     img010.png" in dry.output and "dry run: would add 2" in dry.output
    result = run("sync", "my_photos/", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "2 added, 0 removed, 0 changed, 0 renamed, 0 skipped, 4 unchanged" in result.output
    assert "next: similar-images search photo.jpg" in result.output  # the only database here: no --vectors
    found = run("search", "my_photos/img011.png", "-k", "1")
    assert found.exit_code == 0, found.output
    assert "my_photos/img011.png" in found.output and "1.0000" in found.output
    assert "using my_photos.saved_predictions.npy, the only image database in this folder" in found.stderr


def test_skipped_files_exit_1_and_errors_are_one_line(photos, tmp_path):
    (photos / "broken.png").write_bytes(b"not a png")
    result = run("sync", photos, "--no-progress")
    assert result.exit_code == 1 and "1 skipped" in result.output
    assert "skipped broken.png:" in result.stderr
    missing = run("sync", tmp_path / "nowhere")
    assert missing.exit_code == 1 and missing.stderr.strip() == f"error: {tmp_path / 'nowhere'}: no such folder"
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    wrong = run("sync", elsewhere, "--vectors", "my_photos.saved_predictions.npy")
    assert wrong.exit_code == 1 and "holds the images of" in wrong.stderr and len(wrong.stderr.splitlines()) == 1


def test_the_commands_are_listed():
    result = run("--help")
    assert "sync" in result.output and "watch" in result.output
