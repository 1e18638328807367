"""The notebook app's "Duplicates" view, driven from Python against the small real
database of tests/_widget_db.py (photos and a cropped copy of each)."""

from __future__ import annotations

from similar_images.duplicates.threshold import resolve_threshold
from similar_images.ui.image_app import SimilarImagesApp


def test_duplicates_button_shows_the_query_images_copies(db, db_files):
    app = SimilarImagesApp(db, k=8, seed=0)
    assert app.duplicates_button.disabled  # no database image searched yet
    app.search_upload((db_files["image_dir"] / "coffee.jpg").read_bytes())
    assert app.duplicates_button.disabled  # an upload is not a database image
    coffee = db.names.index("coffee.jpg")
    app.search_id(coffee)
    assert not app.duplicates_button.disabled
    app.duplicates_button.click()
    threshold = resolve_threshold("auto", db.model)
    assert [r.path for r in app.results] == ["coffee__crop.jpg"], app.error
    assert all(r.score >= threshold for r in app.results) and coffee not in [r.id for r in app.results]
    assert len(app.grid.children) == 1 and "1 near-duplicate<" in app.status.value  # not "near-duplicate(s)"
    assert "duplicates of coffee.jpg" in app.query_label.value


def test_duplicates_of_an_explicit_image_and_a_high_threshold(db):
    app = SimilarImagesApp(db, k=8, seed=0, duplicate_threshold=0.9999)
    assert app.search_duplicates(db.names.index("rocket.jpg")) == []
    assert "no near-duplicates" in app.status.value and app.error is None


def test_duplicates_failures_are_one_line_messages(db):
    app = SimilarImagesApp(db, k=8, seed=0)
    assert app.search_duplicates() == [] and "database image first" in app.error
    app = SimilarImagesApp(db, k=8, seed=0, duplicate_threshold="high")
    app.search_id(0)
    assert app.search_duplicates() == [] and "neither a cosine nor 'auto'" in app.error
    assert not app.busy and not app.duplicates_button.disabled  # the app keeps working
