"""A database records its descriptor recipe, and queries use it: the one query path holds for
every recipe, whitening included, and an old database keeps its own recipe when the default changes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from similar_images import features
from similar_images.cli import main
from similar_images.demo import sample_photos
from similar_images.errors import ModelError
from similar_images.extract import run_extraction
from similar_images.features import get_extractor
from similar_images.models.descriptors import Descriptor
from similar_images.search import SimilarImages

pytestmark = pytest.mark.slow

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "china", "flower")
RECIPE = ["--pooling", "gem", "--gem-p", "3", "--scales", "1,0.707", "--whiten"]


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recipes")
    names = sample_photos.write_collection(folder / "images", photos=PHOTOS, edits=("crop",), show_progress=False)
    (folder / "files.txt").write_text("\n".join(names) + "\n")
    return folder, names


def _cli_extract(folder, output, *options):
    result = CliRunner().invoke(main, ["extract", "-l", str(folder / "files.txt"), "-d", str(folder / "images"),
                                       "-o", str(output), "--model", "efficientnet-lite0", "--no-progress",
                                       "-b", "8", *options])
    assert result.exit_code == 0, result.output
    return json.loads(output.with_name(output.name + ".manifest.json").read_text())


@pytest.fixture(scope="module")
def whitened(collection):
    folder, names = collection
    vectors = folder / "gem.npy"
    return vectors, _cli_extract(folder, vectors, *RECIPE)


def test_the_recipe_and_its_whitening_are_recorded_in_the_model_description(whitened):
    vectors, manifest = whitened
    model = manifest["model"]
    assert model["descriptor"] == {"pooling": "gem", "gem_p": 3.0, "scales": [1.0, 0.707], "whiten": True}
    assert (vectors.parent / model["whitening"]["file"]).is_file()
    assert model["whitening"]["fitted_on"] == manifest["count"]


def test_a_query_gets_the_vector_extraction_stored(collection, whitened):
    folder, names = collection
    vectors, _ = whitened
    db = SimilarImages.open(vectors)
    assert db.extractor.describe()["descriptor"]["pooling"] == "gem"
    for row in (0, 5, len(names) - 1):
        query = db.embed([folder / "images" / names[row]])[0]
        stored = db.vector(row)
        assert float(query @ stored / np.linalg.norm(query) / np.linalg.norm(stored)) >= 0.9999
        (first, *_) = db.search(folder / "images" / names[row], k=3)
        assert first.id == row and first.score >= 0.9999
    cli = CliRunner().invoke(main, ["search", str(folder / "images" / names[3]), "--vectors", str(vectors),
                                    "-k", "2", "--json"])
    assert cli.exit_code == 0, cli.output
    (answer,) = json.loads(cli.stdout)
    assert answer["results"][0]["id"] == 3 and answer["results"][0]["score"] >= 0.9999


def test_the_stored_vectors_are_whitened_and_queries_are_whitened_alike(collection, whitened):
    from similar_images.models import whitening

    folder, names = collection
    vectors, manifest = whitened
    raw = get_extractor("efficientnet-lite0", descriptor=Descriptor("gem", scales=(1.0, 0.707), whiten=True))
    batch = np.stack([SimilarImages.open(vectors).load_query(folder / "images" / names[2])])
    mean, projection = whitening.load(vectors.parent, manifest["model"]["whitening"])
    expected = whitening.apply(raw.embed(batch), mean, projection)[0]
    stored = SimilarImages.open(vectors).vector(2)
    assert float(expected @ stored / np.linalg.norm(expected) / np.linalg.norm(stored)) >= 0.9999
    # the extraction's own (unwhitened) model is whitened when it opens the database
    assert SimilarImages.open(vectors, extractor=raw).extractor.describe()["whitening"] == manifest["model"]["whitening"]


def test_an_added_image_is_whitened_with_the_stored_whitening(collection, whitened, tmp_path):
    import shutil

    folder, _ = collection
    vectors, _ = whitened
    copy = tmp_path / "db"
    shutil.copytree(vectors.parent, copy, ignore=shutil.ignore_patterns("*.partial"))
    db = SimilarImages.open(copy / vectors.name)
    new = copy / "images" / "extra.jpg"
    sample_photos.save_jpeg(sample_photos.load_photo("grace_hopper"), new)
    db.add([new], show_progress=False)
    db = SimilarImages.open(copy / vectors.name)
    (first, *_) = db.search(new, k=2)
    assert db.names[first.id].endswith("extra.jpg") and first.score >= 0.9999


def test_a_missing_whitening_file_is_one_clear_error(collection, whitened, tmp_path):
    import shutil

    vectors, manifest = whitened
    copy = tmp_path / "db"
    shutil.copytree(vectors.parent, copy)
    (copy / manifest["model"]["whitening"]["file"]).unlink()
    with pytest.raises(ModelError, match="whitening file .* is missing"):
        SimilarImages.open(copy / vectors.name).extractor  # noqa: B018


def test_a_model_without_the_recipe_is_refused(whitened):
    vectors, _ = whitened
    with pytest.raises(ModelError, match="descriptor"):
        SimilarImages.open(vectors, extractor=get_extractor("efficientnet-lite0"))


def test_an_old_database_keeps_its_recipe_when_the_default_changes(collection, monkeypatch):
    folder, names = collection
    vectors = folder / "classic.npy"
    run_extraction(folder / "files.txt", folder / "images", vectors, get_extractor("efficientnet-lite0"),
                   batch_size=8, workers=2, show_progress=False)
    monkeypatch.setitem(features.DEFAULT_DESCRIPTORS, "efficientnet-lite0", Descriptor("rmac", scales=(1.0, 0.707)))
    assert get_extractor("efficientnet-lite0").describe()["descriptor"]["pooling"] == "rmac"  # new databases
    db = SimilarImages.open(vectors)
    assert "descriptor" not in db.model and "descriptor" not in db.extractor.describe()
    for row in (1, 6):
        (first, *_) = db.search(folder / "images" / names[row], k=3)
        assert first.id == row and first.score >= 0.9999


def test_bad_recipe_options_are_one_line(collection, tmp_path):
    folder, _ = collection
    result = CliRunner().invoke(main, ["extract", "-l", str(folder / "files.txt"), "-d", str(folder / "images"),
                                       "-o", str(tmp_path / "v.npy"), "--model", "efficientnet-lite0",
                                       "--scales", "1,zero"])
    assert result.exit_code != 0 and "scales" in result.output and "Traceback" not in result.output


def test_a_model_without_recipes_refuses_them_instead_of_ignoring_them(collection, tmp_path):
    folder, _ = collection
    result = CliRunner().invoke(main, ["extract", "-l", str(folder / "files.txt"), "-d", str(folder / "images"),
                                       "-o", str(tmp_path / "v.npy"), "--model", "clip-vit-b-32", "--pooling", "gem"])
    assert result.exit_code == 2 and "has no descriptor recipes" in result.output
