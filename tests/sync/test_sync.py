"""sync_folder with the tiny model: a first sync creates the database; later ones add, remove,
re-embed changed files, move renamed ones without the model, and leave an unchanged folder
unread; the catalog then equals the folder."""

from __future__ import annotations

import os

import numpy as np
import pytest
from _index_data import register_tiny
from _sync_data import CountingTiny, catalog_hashes, db_state, folder_hashes, make_folder, touch_later, write_pattern

from similar_images import features
from similar_images.db.database import Database
from similar_images.errors import DatabaseError
from similar_images.search import SimilarImages
from similar_images.sync import default_vectors, sync_folder
from similar_images.sync import plan as plan_module


@pytest.fixture
def photos(tmp_path, monkeypatch):
    register_tiny(monkeypatch)
    folder = tmp_path / "photos"
    make_folder(folder, range(10))
    return folder


def no_model(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the model was loaded")
    monkeypatch.setattr(features, "get_extractor", refuse)
    monkeypatch.setattr(features, "extractor_for", refuse)


def test_first_sync_creates_a_searchable_database_beside_the_folder(photos):
    model = CountingTiny()
    report = sync_folder(photos, extractor=model, show_progress=False, commit_every=4)
    vectors = default_vectors(photos)
    assert vectors == photos.parent / "photos.saved_predictions.npy" and report.vectors == vectors and report.created
    assert report.applied.added == 10 and model.images == 10 and report.applied.batches == 3 and report.count == 10
    assert "10 added, 0 removed, 0 changed, 0 renamed, 0 skipped, 0 unchanged" in report.summary()
    assert catalog_hashes(vectors) == folder_hashes(photos)
    db = SimilarImages.open(vectors)
    assert db.image_dir.resolve() == photos.resolve()
    for name in ("img000.png", "img007.png"):
        (hit,) = db.search(str(photos / name), k=1)
        assert hit.path == name and hit.score == pytest.approx(1.0, abs=1e-5)


def test_add_delete_modify_rename_then_sync(photos, monkeypatch):
    sync_folder(photos, extractor=CountingTiny(), show_progress=False)
    vectors = default_vectors(photos)
    before = db_state(vectors)
    make_folder(photos, range(20, 25))  # add 5
    for i in (0, 1, 2):  # delete 3
        (photos / f"img{i:03d}.png").unlink()
    for i, picture in ((3, 40), (4, 41)):  # modify 2
        write_pattern(photos, f"img{i:03d}.png", picture)
    (photos / "img005.png").rename(photos / "renamed5.png")  # rename 2, one into a sub-folder
    (photos / "trips").mkdir()
    (photos / "img006.png").rename(photos / "trips" / "img006.png")
    model = CountingTiny()
    report = sync_folder(photos, extractor=model, show_progress=False, commit_every=3)
    assert "5 added, 3 removed, 2 changed, 2 renamed, 0 skipped, 3 unchanged" in report.summary()
    assert model.images == 7  # the new and the changed files only
    assert catalog_hashes(vectors) == folder_hashes(photos)
    after = db_state(vectors)
    assert after["renamed5.png"][0] == before["img005.png"][0] and after["trips/img006.png"][0] == before["img006.png"][0]
    db = SimilarImages.open(vectors)
    for name in ("img003.png", "img004.png"):
        (hit,) = db.search(str(photos / name), k=1)
        assert hit.path == name and hit.score >= 0.9999
    assert len(db) == 12


def test_an_unchanged_folder_is_not_read_and_loads_no_model(photos, monkeypatch):
    sync_folder(photos, extractor=CountingTiny(), show_progress=False)
    no_model(monkeypatch)
    monkeypatch.setattr(plan_module, "file_stat", lambda *a: pytest.fail("a file was read"))
    report = sync_folder(photos, show_progress=False)
    assert report.plan.empty and report.plan.unchanged == 10 and not report.model_loaded and report.applied.batches == 0


def test_a_touched_file_is_hashed_once_and_not_embedded(photos, monkeypatch):
    sync_folder(photos, extractor=CountingTiny(), show_progress=False)
    touch_later(photos / "img002.png")
    no_model(monkeypatch)
    report = sync_folder(photos, show_progress=False)
    assert report.plan.restamp == ["img002.png"] and report.plan.unchanged == 10 and not report.model_loaded
    assert catalog_hashes(default_vectors(photos)) == folder_hashes(photos)
    assert db_state(default_vectors(photos))["img002.png"][2] == (photos / "img002.png").stat().st_mtime_ns
    again = sync_folder(photos, show_progress=False)
    assert again.plan.empty and again.applied.batches == 0


def test_a_copy_of_a_known_file_reuses_its_vector(photos, monkeypatch):
    sync_folder(photos, extractor=CountingTiny(), show_progress=False)
    (photos / "again.png").write_bytes((photos / "img001.png").read_bytes())
    no_model(monkeypatch)
    report = sync_folder(photos, show_progress=False)
    assert report.plan.copy == [("img001.png", "again.png")] and report.applied.copied == 1
    state = db_state(default_vectors(photos))
    assert state["again.png"][0] == state["img001.png"][0]


def test_dry_run_lists_and_writes_nothing(photos):
    sync_folder(photos, extractor=CountingTiny(), show_progress=False)
    vectors = default_vectors(photos)
    before = db_state(vectors)
    make_folder(photos, [30])
    (photos / "img001.png").unlink()
    (photos / "img002.png").rename(photos / "two.png")
    report = sync_folder(photos, dry_run=True, show_progress=False)
    assert report.plan.lines() == ["add     img030.png", "rename  img002.png -> two.png", "remove  img001.png"]
    assert report.summary().startswith("dry run: would add 1, remove 1, change 0, rename 1")
    assert db_state(vectors) == before


def test_broken_files_are_skipped_counted_and_retried_without_the_model(photos, monkeypatch):
    sync_folder(photos, extractor=CountingTiny(), show_progress=False)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    first = sync_folder(photos, extractor=CountingTiny(), show_progress=False)
    assert [s["path"] for s in first.skipped] == ["broken.jpg"] and "1 skipped" in first.summary()
    no_model(monkeypatch)
    second = sync_folder(photos, show_progress=False)  # retried by decoding alone: still broken, no model
    assert [s["path"] for s in second.skipped] == ["broken.jpg"] and not second.model_loaded
    monkeypatch.undo()
    register_tiny(monkeypatch)
    write_pattern(photos, "broken.jpg", 50)  # repaired: added by the next sync
    third = sync_folder(photos, show_progress=False)
    assert third.applied.added == 1 and not third.skipped
    assert catalog_hashes(default_vectors(photos)) == folder_hashes(photos)


def test_hidden_files_symlinks_and_other_files_are_not_images(photos):
    (photos / ".hidden.png").write_bytes((photos / "img001.png").read_bytes())
    (photos / ".cache").mkdir()
    make_folder(photos / ".cache", [60])
    (photos / "notes.txt").write_text("not an image")
    (photos / "link.png").symlink_to(photos / "img001.png")
    (photos / "UPPER.PNG").write_bytes((photos / "img002.png").read_bytes())
    report = sync_folder(photos, extractor=CountingTiny(), show_progress=False)
    names = set(db_state(default_vectors(photos)))
    assert names == {f"img{i:03d}.png" for i in range(10)} | {"UPPER.PNG"} and report.count == 11


def test_a_database_made_from_a_file_list_is_adopted_without_the_model(tmp_path, monkeypatch):
    from _index_data import image_db

    register_tiny(monkeypatch)
    vectors, images = image_db(tmp_path, 6)  # extract-made: no file stats
    no_model(monkeypatch)
    report = sync_folder(images, vectors, show_progress=False)
    assert report.plan.unchanged == 6 and len(report.plan.restamp) == 6 and not report.model_loaded
    assert catalog_hashes(vectors) == folder_hashes(images)


def test_refusals(tmp_path, photos):
    with pytest.raises(DatabaseError, match="no such folder"):
        sync_folder(tmp_path / "missing", show_progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatabaseError, match="no image files to index"):
        sync_folder(empty, extractor=CountingTiny(), show_progress=False)
    assert not default_vectors(empty).exists()
    sync_folder(photos, extractor=CountingTiny(), show_progress=False)
    with pytest.raises(DatabaseError, match="holds the images of"):
        sync_folder(empty, default_vectors(photos), show_progress=False)


def test_an_emptied_folder_empties_the_database(photos):
    sync_folder(photos, extractor=CountingTiny(), show_progress=False)
    for path in photos.iterdir():
        path.unlink()
    report = sync_folder(photos, show_progress=False)
    assert report.applied.removed == 10 and report.count == 0
    assert len(Database.open(default_vectors(photos), None)) == 0
    make_folder(photos, [1])
    assert sync_folder(photos, extractor=CountingTiny(), show_progress=False).count == 1
    assert os.path.exists(default_vectors(photos))
    db = SimilarImages.open(default_vectors(photos))
    assert np.isfinite(db.vector(db.ids_of(["img001.png"])["img001.png"])).all()


def test_items_under_a_folder_that_cannot_be_listed_are_kept(photos, monkeypatch):
    from similar_images.sync import walk

    (photos / "album").mkdir()
    make_folder(photos / "album", [70, 71])
    sync_folder(photos, extractor=CountingTiny(), show_progress=False)
    real = os.scandir

    def scandir(path):
        if str(path).endswith("album"):
            raise PermissionError(13, "Permission denied")
        return real(path)
    monkeypatch.setattr(walk.os, "scandir", scandir)
    report = sync_folder(photos, show_progress=False)
    assert not report.plan.remove and [s["path"] for s in report.skipped] == ["album"]
    assert "album/img070.png" in db_state(default_vectors(photos))
