"""The newcomer's path, walked in a fresh folder with the messages it relies on: the demo,
the search command it prints, one's own photos extracted, built without -d and searched,
a text database and the search command `text build` prints; and a moved demo database."""

from __future__ import annotations

import json
import re
import shlex
import shutil

import pytest
from click.testing import CliRunner
from test_docs import newcomer_folder

from similar_images.cli import main
from similar_images.search import SimilarImages

pytestmark = pytest.mark.slow


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def printed_command(output: str, start: str) -> list[str]:
    (line,) = [line.strip() for line in output.splitlines() if line.strip().startswith(start)]
    return shlex.split(line)[1:]  # without "similar-images"


def test_newcomer_path(tmp_path, monkeypatch):
    folder = newcomer_folder(tmp_path)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("SIMILAR_IMAGES_CACHE", str(tmp_path / "cache"))

    demo = run("demo", "--no-progress", "-k", "8")
    assert "images of 'chelsea'" in demo.output and "rank first" in demo.output
    search = printed_command(demo.output, "similar-images search PHOTO.jpg")
    assert search[:2] == ["search", "PHOTO.jpg"] and "--vectors" in search
    found = run(*[("my_photo.jpg" if word == "PHOTO.jpg" else word) for word in search], "--json")
    (answer,) = json.loads(found.stdout)
    assert answer["results"][0]["path"].startswith("chelsea")  # the cat's copies first

    (folder / "my_list.txt").write_text("\n".join(sorted(p.name for p in (folder / "my_photos").glob("*.jpg"))))
    extracted = run("extract", "-l", "my_list.txt", "-d", "my_photos", "--model", "efficientnet-lite0",
                    "-o", "my_photos.npy", "--no-progress")
    assert "done 6, skipped 0" in extracted.output
    built = run("build", "-i", "my_photos.npy", "--no-progress")  # no -d: the manifest's dimension
    assert "6 vectors of dimension 1280" in built.output and "recall@" in built.output
    mine = json.loads(run("search", "my_photos/rocket.jpg", "--vectors", "my_photos.npy", "--json").stdout)
    first = mine[0]["results"][0]
    assert first["path"] == "rocket.jpg" and first["score"] >= 0.9999
    # Full precision in JSON: every score is the API's own to 1e-6 (a rounded print would be off by up to
    # 5e-6 or more). Not the digits of one score: a self-match can be exactly 1.0 on some CPUs.
    api = SimilarImages.open("my_photos.npy").search("my_photos/rocket.jpg", k=len(mine[0]["results"]))
    assert [r["path"] for r in mine[0]["results"]] == [hit.path for hit in api]
    assert [r["score"] for r in mine[0]["results"]] == pytest.approx([hit.score for hit in api], abs=1e-6)
    assert all(isinstance(r["score"], float) for r in mine[0]["results"])

    (folder / "my_texts.csv").write_text('text\n"Sunny day at the beach"\n"My laptop crashed again"\n'
                                          'Rain all week, so no beach\n"New phone, great camera"\n')
    texts = run("text", "build", "my_texts.csv", "--index-type", "flat", "--no-progress")
    assert "line 4 skipped: malformed row: 2 fields, the header has 1" in texts.output
    text_search = printed_command(texts.output, "search it: similar-images text search")[2:]
    assert text_search[:2] == ["text", "search"]
    answers = run(*text_search, "-k", "1", "--json")
    (hit,) = json.loads(answers.stdout)[0]["results"]
    assert hit["text"] in ("Sunny day at the beach", "My laptop crashed again", "New phone, great camera")


def test_moved_demo_database_finds_its_images_or_says_they_are_missing(tmp_path, monkeypatch, caplog):
    folder = newcomer_folder(tmp_path)
    monkeypatch.chdir(folder)
    demo = run("demo", "--no-progress", "--photos", "chelsea,coffee,rocket,china", "-k", "3")
    vectors = printed_command(demo.output, "similar-images search PHOTO.jpg")[-1]
    moved = tmp_path / "moved"
    shutil.move(str(folder / "demo_output"), moved)
    found = json.loads(run("search", "--id", "0", "--vectors", moved / vectors.split("/", 1)[1], "--json").stdout)
    assert found[0]["results"][0]["file"].startswith(str(moved / "photos"))
    shutil.rmtree(moved / "photos")
    CliRunner().invoke(main, ["search", "--id", "0", "--vectors", str(moved / vectors.split("/", 1)[1])])
    assert re.search(r"the image folder \S*photos .* is missing", caplog.text)
