"""CLI: build, search, add, remove (output, JSON, exit codes) and build_search_db.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _index_data import image_db, register_tiny, vector_db, write_images
from click.testing import CliRunner

from similar_images.cli import main

ROOT = Path(__file__).resolve().parents[2]
VECTORS = "ms_coco_file_list.txt.saved_predictions.npy"
INDEX = "ms_coco_file_list.faiss.index"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def coco_named_db(tmp_path, monkeypatch):
    """A 1,200 x 64 vector database under the README's default names, in the current folder."""
    monkeypatch.chdir(tmp_path)
    vector_db(tmp_path, 1200, 64, name=VECTORS)
    return tmp_path


@pytest.fixture
def tiny_db(tmp_path, monkeypatch):
    """Pattern images under the default names, tiny model registered, current folder = tmp_path."""
    monkeypatch.chdir(tmp_path)
    register_tiny(monkeypatch)
    vectors, image_dir = image_db(tmp_path, 12)
    vectors.rename(VECTORS)
    Path(str(vectors) + ".manifest.json").rename(VECTORS + ".manifest.json")
    Path(str(vectors) + ".catalog.sqlite").rename(VECTORS + ".catalog.sqlite")  # a database moves whole
    assert run("build", "-d", "48").exit_code == 0
    return image_dir


def test_build_uses_the_default_names_and_reports(coco_named_db):
    result = run("build", "-d", "64")
    assert result.exit_code == 0, result.output
    assert (coco_named_db / INDEX).exists() and (coco_named_db / (INDEX + ".manifest.json")).exists()
    for expected in ("build time:", "index size:", "recall@10 vs exact", "with re-ranking", "lists instead of 100"):
        assert expected in result.stdout
    assert "re-ranking pool" not in result.stdout  # our tuning detail: -v shows it
    verbose = run("build", "-d", "64", "--force", "-v")
    assert verbose.exit_code == 0 and "re-ranking pool:" in verbose.stdout


def test_build_refuses_an_existing_index_then_force_replaces_it(coco_named_db):
    assert run("build", "-d", "64").exit_code == 0
    refused = run("build", "-d", "64")
    assert refused.exit_code == 1
    assert refused.stderr.strip() == f"error: {INDEX} already exists; use --force to replace it"
    forced = run("build", "-d", "64", "--index-type", "flat", "--force")
    assert forced.exit_code == 0 and "flat" in forced.stdout


def test_build_errors(coco_named_db, tmp_path):
    wrong_dim = run("build", "-d", "4096")  # the original's -d, checked
    assert wrong_dim.exit_code == 1
    assert wrong_dim.stderr.strip().splitlines()[-1].endswith(
        "holds 64-dimensional vectors (synthetic), not 4096: use -d 64, "
        "or leave -d out (the manifest's dimension is the default)")
    assert run("build", "--index-type", "annoy").exit_code == 2
    missing = run("build", "-i", tmp_path / "none.npy", "-d", "64")
    assert missing.exit_code == 1 and "none.npy: vectors file not found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_build_search_db_script(coco_named_db):
    help_text = subprocess.run([sys.executable, str(ROOT / "build_search_db.py"), "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "--input_vectors" in help_text and "--output_filename" in help_text and "--dimension" in help_text
    done = subprocess.run([sys.executable, str(ROOT / "build_search_db.py"), "-i", VECTORS, "-o", "x.index",
                           "-d", "64", "--index-type", "flat"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (coco_named_db / "x.index").exists()


def test_search_by_id_json(coco_named_db):
    assert run("build", "-d", "64").exit_code == 0
    result = run("search", "--id", "3", "--id", "10", "-k", "4", "--json")
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)
    assert [a["query"] for a in answers] == ["id:3", "id:10"]
    first = answers[0]["results"]
    assert len(first) == 4 and set(first[0]) >= {"id", "path", "score"}
    assert first[0]["id"] == 3 and first[0]["path"] == "v00003.jpg" and first[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_search_images_text_output_and_a_failed_query(tiny_db):
    result = run("search", tiny_db / "img004.png", "nowhere.png", "-k", "2")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{tiny_db / 'img004.png'}:" and lines[1].startswith("   1. 1.0000") and lines[1].endswith("img004.png")
    assert "error: nowhere.png: not found" in result.stderr
    as_json = json.loads(run("search", "nowhere.png", tiny_db / "img001.png", "--json").stdout)
    assert as_json[0]["results"][0]["path"] == "img001.png" and as_json[1] == {"query": "nowhere.png",
                                                                             "error": "nowhere.png: not found"}


def test_top_level_help_says_each_command_whole(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = run("--help")
    commands = result.output.split("Commands:")[1]
    assert result.exit_code == 0 and "..." not in commands
    from similar_images.cli import COMMANDS, SUMMARIES

    assert set(SUMMARIES) <= set(COMMANDS)
    words = " ".join(result.output.split())
    assert all(" ".join(summary.split()) in words for summary in SUMMARIES.values())


def test_a_missing_file_is_said_before_the_model_loads(tiny_db, monkeypatch):
    import similar_images.features as features

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded for a file that does not exist")

    monkeypatch.setattr(features, "get_extractor", no_model)
    result = run("search", "nowhere.png", "gone/photo.jpg")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.splitlines() == ["error: nowhere.png: not found", "error: gone/photo.jpg: not found"]
    as_json = run("search", "nowhere.png", "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout) == [{"query": "nowhere.png",
                                                                     "error": "nowhere.png: not found"}]


def test_search_usage_errors(tiny_db, tmp_path):
    assert run("search").exit_code == 2
    assert run("search", "--id", "1", "-k", "0").exit_code == 2
    assert run("search", "--id", "1", "--exact", "--index", INDEX).exit_code == 2
    bad_id = run("search", "--id", "99")
    assert bad_id.exit_code == 1 and "out of range" in bad_id.stderr
    missing = run("search", "--id", "1", "--vectors", tmp_path / "none.npy")
    assert missing.exit_code == 1
    # the databases it can find, each with the option that selects it
    assert missing.stderr.strip() == (f"error: {tmp_path / 'none.npy'}: no such database (found: "
                                      f"--vectors {VECTORS} (12 images, tiny))")
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    nothing = run("text", "search", "hello", "--vectors", elsewhere / "t.npy")
    assert "no other database found; make one with `similar-images text build CSV`" in nothing.stderr


def test_search_without_an_index_searches_exactly(tiny_db):
    Path(INDEX).unlink()
    result = run("search", "--id", "2", "-k", "1")
    assert result.exit_code == 0 and "searching the vectors exactly" in result.stderr
    assert result.stdout.splitlines()[1].endswith("img002.png")


def test_add_then_remove(tiny_db, tmp_path):
    new_dir = tmp_path / "new"
    write_images(new_dir, [300, 301], prefix="n")
    added = run("add", new_dir, "--no-progress")
    assert added.exit_code == 0, added.output
    assert "added 2 image(s); 0 already present; 0 skipped; the database now holds 14" in added.stdout
    found = json.loads(run("search", new_dir / "n301.png", "-k", "1", "--json").stdout)
    assert found[0]["results"][0]["path"].endswith("new/n301.png")
    (new_dir / "bad.jpg").write_text("text")
    partly = run("add", new_dir, "--no-progress")
    assert partly.exit_code == 1 and "2 already present; 1 skipped" in partly.stdout and "bad.jpg" in partly.stderr
    removed = run("remove", new_dir / "n301.png", "img000.png")
    assert removed.exit_code == 0 and "removed 2 image(s); the database now holds 12" in removed.stdout
    hits = json.loads(run("search", new_dir / "n301.png", "-k", "20", "--json").stdout)[0]["results"]
    assert not {"img000.png"} & {h["path"] for h in hits} and not any(h["path"].endswith("n301.png") for h in hits)
    unknown = run("remove", "img000.png")
    assert unknown.exit_code == 1 and "not in the database: img000.png" in unknown.stderr
    assert run("remove", "img000.png", "--missing-ok").exit_code == 0


@pytest.mark.slow
def test_vgg16_end_to_end_extract_build_search_add(tmp_path, monkeypatch):
    """The README's steps with VGG16 (random seeded weights): extract, build, search, add."""
    monkeypatch.chdir(tmp_path)
    images = write_images(tmp_path / "ms_coco" / "val2014", range(6))
    Path("ms_coco_file_list.txt").write_text("\n".join(p.name for p in images) + "\n")
    extracted = run("extract", "--weights", "none", "--no-progress")
    assert extracted.exit_code == 0, extracted.output
    assert run("build").exit_code == 0  # -d 4096 default: the VGG16 dimension
    result = json.loads(run("search", images[2], "-k", "3", "--json").stdout)
    assert result[0]["results"][0]["path"] == images[2].name
    assert result[0]["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    extra = write_images(tmp_path / "extra", [50], prefix="e")
    assert run("add", extra[0], "--no-progress").exit_code == 0
    again = json.loads(run("search", extra[0], "-k", "1", "--json").stdout)
    assert again[0]["results"][0]["path"].endswith("extra/e050.png")
