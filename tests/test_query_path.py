"""One query path: a database image finds itself first (score >= 0.9999) from the CLI,
the Python API and the notebook app, on fp32 and INT8 EfficientNet-Lite0 databases; and an
INT8 database copied elsewhere is searched with an empty model cache."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from click.testing import CliRunner

from similar_images.cli import main
from similar_images.demo import sample_photos
from similar_images.extract import run_extraction
from similar_images.features import get_extractor
from similar_images.search import SimilarImages

pytestmark = pytest.mark.slow

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "hubble", "camera",
          "coins", "brick", "china", "flower", "grace_hopper")
INT8 = {"calibration_size": 24, "holdout_size": 12}


def _build(folder, precision: str):
    image_dir = folder / "images"
    names = sample_photos.write_collection(image_dir, photos=PHOTOS, edits=("crop", "flip"), show_progress=False)
    file_list = folder / "files.txt"
    file_list.write_text("\n".join(names) + "\n")
    vectors = folder / "files.txt.saved_predictions.npy"
    if precision == "int8":
        extractor = get_extractor("efficientnet-lite0", runtime="openvino", precision="int8", batch_size=8,
                                  calibration_paths=[image_dir / n for n in names], show_progress=False, **INT8)
    else:
        extractor = get_extractor("efficientnet-lite0")
    run_extraction(file_list, image_dir, vectors, extractor, batch_size=8, workers=2, show_progress=False)
    return vectors, image_dir, names


@pytest.fixture(scope="module", params=["fp32", "int8"])
def database(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"db-{request.param}")
    vectors, image_dir, names = _build(folder, request.param)
    return request.param, folder, vectors, image_dir, names


@pytest.mark.parametrize("row", [0, 13, 30])
def test_database_image_finds_itself_from_every_front_end(database, row):
    from similar_images.ui.image_app import SimilarImagesApp

    _, _, vectors, image_dir, names = database
    path = image_dir / names[row]
    db = SimilarImages.open(vectors)
    (api,) = [db.search(path, k=3)]
    app = SimilarImagesApp(db, k=3).search_upload(path.read_bytes(), name=names[row])
    cli = CliRunner().invoke(main, ["search", str(path), "--vectors", str(vectors), "-k", "3", "--json"])
    assert cli.exit_code == 0, cli.output
    (answer,) = json.loads(cli.stdout)
    for first_id, score in ((api[0].id, api[0].score), (app[0].id, app[0].score),
                            (answer["results"][0]["id"], answer["results"][0]["score"])):
        assert first_id == row and score >= 0.9999


def test_queries_decode_exactly_as_extraction(database):
    from similar_images.pipeline import decode_one

    _, _, vectors, image_dir, names = database
    db = SimilarImages.open(vectors)
    size = tuple(db.extractor.input_size)
    expected = decode_one(names[5], image_dir, size)
    path = image_dir / names[5]
    for source in (path, str(path), path.read_bytes()):
        assert (db.load_query(source) == expected).all()


def test_manifest_records_the_image_folder_relative_to_the_database(database):
    _, _, vectors, _, _ = database
    manifest = json.loads((vectors.parent / (vectors.name + ".manifest.json")).read_text())
    assert manifest["image_dir"] == "images"


def test_copied_database_searches_with_an_empty_cache(database, tmp_path, monkeypatch):
    precision, folder, vectors, _, names = database
    copy = tmp_path / "elsewhere"
    shutil.copytree(folder, copy)
    shutil.rmtree(folder / "images")  # the copy must not lean on the original's images
    try:
        monkeypatch.setenv("SIMILAR_IMAGES_CACHE", str(tmp_path / "empty-cache"))
        db = SimilarImages.open(copy / vectors.name)
        if precision == "int8":
            assert db.database.model_folder.parent == copy and (db.database.model_folder / "model.xml").exists()
        hits = db.search(copy / "images" / names[7], k=2)
        assert hits[0].id == 7 and hits[0].score >= 0.9999
        assert db.image_path(hits[0]) == copy / "images" / names[7]
        assert not (tmp_path / "empty-cache" / "openvino-int8").exists()  # nothing was re-quantised
    finally:
        shutil.copytree(copy / "images", folder / "images")


def test_missing_image_folder_is_reported(database, tmp_path, caplog):
    _, folder, vectors, _, _ = database
    copy = tmp_path / "no-images"
    copy.mkdir()
    for f in folder.iterdir():
        if f.is_file():
            shutil.copy(f, copy / f.name)
    with caplog.at_level(logging.WARNING, logger="similar_images"):
        SimilarImages.open(copy / vectors.name)
    assert "image folder images" in caplog.text and "is missing" in caplog.text


@pytest.mark.parametrize("database", ["int8"], indirect=True)
def test_int8_database_opened_on_another_isa_is_rechecked(database, monkeypatch, capsys):
    """The database records the ISA it was quantised on; a CPU of another ISA (faked here: the
    kernels stay this CPU's, see tests/models/test_int8_isa.py for real other kernels) re-runs
    the fidelity guard on the held-out images kept with the model, and says so in one line."""
    from similar_images.models import int8_isa

    _, _, vectors, image_dir, names = database
    recorded = SimilarImages.open(vectors).model["calibration"]["isa"]
    assert recorded == int8_isa.cpu_isa()
    assert (SimilarImages.open(vectors).database.model_folder / int8_isa.REFERENCE_FILE).is_file()
    other = "amx" if recorded != "amx" else "avx2"
    monkeypatch.setattr(int8_isa, "cpu_isa", lambda *args, **kwargs: other)
    capsys.readouterr()
    hits = SimilarImages.open(vectors).search(image_dir / names[7], k=2)
    assert hits[0].id == 7 and hits[0].score >= 0.9999
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "re-checked" in x]
    assert f"re-checked on this CPU ({other}, calibrated on {recorded})" in line
