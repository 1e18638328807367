"""The notebook app driven from Python against a real (small) database."""

from __future__ import annotations

import datetime
import functools
import http.server
import io
import threading

import pytest
from PIL import Image

from similar_images.ui.image_app import SimilarImagesApp
from similar_images.ui.notebook import open_database


@pytest.fixture
def app(db):
    return SimilarImagesApp(db, k=8, seed=0)


@pytest.fixture(scope="module")
def http_root(db_files):
    """A local HTTP server serving the test images (plus a text file); yields its URL."""
    root = db_files["folder"]
    (root / "notes.txt").write_text("not an image")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _names(results):
    return [r.path for r in results]


def _check_grid(app, k):
    """The grid shows k cells, each with a small JPEG thumbnail, a name, a score (with its
    verdict: EfficientNet-Lite0's scores are measured) and a button."""
    assert len(app.grid.children) == k == len(app.result_buttons)
    for cell, result in zip(app.grid.children, app.results):
        thumb, name, score, button = cell.children
        img = Image.open(io.BytesIO(thumb.value))
        assert img.format == "JPEG" and max(img.size) <= app.thumb_size
        assert result.path.split("/")[-1][-20:] in name.value
        assert f"{result.score:.3f}" in score.value
        assert score.value.endswith(("same photo", "similar", "unrelated"))
        assert button.description == "More like this" and not button.disabled
        assert "similar-images-caption" in name.value  # one even line, cut with an ellipsis


def test_upload_of_a_database_image_finds_it_first(app, db, db_files):
    name = "astronaut.jpg"  # 512 x 512: decoded at reduced scale, as in the extraction
    data = (db_files["image_dir"] / name).read_bytes()
    results = app.search_upload(data, name="my photo.jpg")
    assert len(results) == 8, app.error
    assert results[0].path == name
    assert results[0].score == pytest.approx(1.0, abs=1e-5)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert app.error is None and "8 most similar" in app.status.value
    assert "my photo.jpg" in app.query_label.value
    assert Image.open(io.BytesIO(app.query_image.value)).format == "JPEG"
    _check_grid(app, 8)


def test_upload_through_the_file_upload_widget(app, db, db_files):
    name = db.names[0]
    data = (db_files["image_dir"] / name).read_bytes()
    app.upload.value = ({
        "name": "upload.jpg", "type": "image/jpeg", "size": len(data),
        "content": memoryview(data),
        "last_modified": datetime.datetime.now(datetime.UTC),
    },)
    assert app.results[0].path == name
    assert len(app.upload.value) == 1  # the button reads "Upload (1)", not "Upload (0)"
    app.search_random()
    assert app.upload.value == ()  # another query clears it, so the same file can be uploaded again


def test_url_on_enter_and_search_button(app, db, http_root):
    name = db.names[3]
    calls = []
    app.db = _Spy(db, calls)
    app.url_box.value = f"{http_root}/images/{name}"  # what Enter sends
    assert app.results[0].path == name and len(calls) == 1
    assert name in app.query_label.value
    app.url_button.click()  # the click that blurred the box: already searched
    assert len(calls) == 1
    app.url_box.value = f"{http_root}/images/{db.names[7]}"
    assert app.results[0].path == db.names[7] and len(calls) == 2


def test_url_errors_are_one_line_and_the_app_keeps_working(app, http_root):
    for url, words in [
        (f"{http_root}/images/missing.jpg", "404"),
        (f"{http_root}/notes.txt", "not an image"),
        ("ftp://example.org/cat.jpg", "ftp"),
        ("http://127.0.0.1:9/cat.jpg", "127.0.0.1"),  # nothing listens on port 9
    ]:
        assert app.search_url(url) == []
        assert app.error.startswith(url) and "\n" not in app.error
        assert "Traceback" not in app.status.value
        assert words in app.error, app.error
        assert not app.busy and not app.random_button.disabled
    assert len(app.search_random()) == 8 and app.error is None


def test_bad_upload_keeps_the_previous_results(app):
    before = app.search_random()
    assert app.search_upload(b"this is not an image", name="notes.txt") == []
    assert app.error.startswith("notes.txt: not an image") and "\n" not in app.error
    assert app.results == before and len(app.grid.children) == 8
    assert app.search_upload(b"") == [] and app.error


def test_random_then_click_on_a_result_searches_from_it(app, db):
    first = app.search_random()
    query_id = _query_id(app, db)
    # one rule for picks and uploads: a query in the database shows itself first, 1.000
    assert first[0].id == query_id and first[0].score >= 0.9999
    clicked = first[2]
    app.result_buttons[2].click()
    assert clicked.path in app.query_label.value
    assert _names(app.results) == _names(db.search(clicked.id, k=8))
    assert app.results[0].id == clicked.id
    assert app.results[0].score <= 1.0 + 1e-5
    _check_grid(app, 8)


def test_random_picks_differ(db):
    app = SimilarImagesApp(db, seed=1)
    queries = set()
    for _ in range(6):
        app.search_random()
        queries.add(app.query_label.value)
    assert len(queries) > 1


def test_changing_k_searches_again(app, db):
    app.search_random()
    app.k_choice.value = 4
    assert len(app.results) == 4
    _check_grid(app, 4)
    app.k_choice.value = 24
    assert len(app.results) == len(db)  # everything, the query first


def test_busy_while_a_query_runs(app, db):
    seen = []

    class Watch(_Spy):
        def search(self, *args, **kwargs):
            seen.append((app.busy, app.random_button.disabled, app.upload.disabled,
                         app.url_button.disabled, app.status.value))
            return db.search(*args, **kwargs)

    app.db = Watch(db, [])
    app.search_random()
    busy, random_off, upload_off, url_off, status = seen[0]
    assert busy and random_off and upload_off and url_off and "Searching" in status
    assert not app.busy and not app.random_button.disabled
    assert all(not b.disabled for b in app.result_buttons)


def test_an_unexpected_failure_shows_a_message_not_a_traceback(app, db):
    class Broken(_Spy):
        def search(self, *args, **kwargs):
            raise RuntimeError("index exploded")

    shown = app.search_random()
    app.db = Broken(db, [])
    assert app.search_random() == []
    assert app.error == "RuntimeError: index exploded"
    assert "Traceback" not in app.status.value and not app.busy
    app.k_choice.value = 4  # searching again for a new k fails the same way
    assert app.error == "RuntimeError: index exploded" and app.results == shown
    app.db = db
    assert len(app.search_random()) == 4 and app.error is None


def test_a_missing_image_file_shows_a_placeholder(app, db, tmp_path):
    from similar_images.thumbnails import placeholder_jpeg

    gone = app.search_id(0)[0]
    path = db.image_path(gone)
    path.rename(tmp_path / "moved.jpg")
    try:
        results = app.search_id(0)
        assert results[0] == gone and app.error is None
        assert f"1 image file(s) not found, e.g. {path}" in app.status.value
        assert app.grid.children[0].children[0].value == placeholder_jpeg("image missing", 160)
        query = db.names.index(gone.path)
        assert len(app.search_id(query)) == 8 and app.error is None  # the query's file is gone
    finally:
        (tmp_path / "moved.jpg").rename(path)


def test_the_app_displays_as_one_widget(app):
    bundle = app._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == app.widget.model_id


def test_k_must_be_positive(db):
    with pytest.raises(ValueError, match="k must be"):
        SimilarImagesApp(db, k=0)


def test_open_database_reports_what_it_opened(db_files, tmp_path):
    said = []
    db = open_database(db_files["vectors"], db_files["index"], say=said.append)
    assert len(db) == 24 and "24 images" in said[0] and f"with the index {db_files['index']} (flat)" in said[0]
    db = open_database(db_files["vectors"], tmp_path / "none.index", say=said.append)
    assert "searching the vectors exactly" in said[1] and "exactly (no index)" in said[2] and len(db) == 24


def test_open_database_without_fallback_names_the_missing_file(tmp_path):
    from similar_images.errors import DatabaseError

    with pytest.raises(DatabaseError, match="missing.npy"):
        open_database(tmp_path / "missing.npy", None, fallback=False)


def _query_id(app, db):
    return next(i for i, n in enumerate(db.names) if f"query: {n}" in app.query_label.value)


class _Spy:
    """Wraps the real database, recording the queries it gets."""

    def __init__(self, db, calls):
        self._db, self._calls = db, calls

    def __getattr__(self, name):
        return getattr(self._db, name)

    def __len__(self):
        return len(self._db)

    def search(self, *args, **kwargs):
        self._calls.append(args)
        return self._db.search(*args, **kwargs)


def test_labels_busy_indicator_and_url_box_follow_the_query(app, db, db_files):
    from similar_images.ui.styles import IMAGE_APP_STYLE

    assert app.url_button.description == "Search URL"  # distinct from the results' buttons
    seen = []
    app.status.observe(lambda change: seen.append(change["new"]), names="value")
    app.url_box.value = ""
    app.search_upload((db_files["image_dir"] / db.names[3]).read_bytes(), name="x.jpg")
    busy = [v for v in seen if "similar-images-busy" in v]
    assert busy and "similar-images-spinner" in busy[0] and "\u23f3" not in busy[0]  # no emoji glyph
    assert "@keyframes" in IMAGE_APP_STYLE and app.widget.children[0].value == IMAGE_APP_STYLE
    app.url_box.value = "http://127.0.0.1:9/none.jpg"  # fails: nothing listens on port 9
    app.search_random()
    assert app.url_box.value == ""  # the box no longer shows a URL that is not the query


def test_results_are_dimmed_after_an_error_and_restored_by_a_success(app, db):
    app.search_id(1)
    assert "similar-images-stale" not in app.grid._dom_classes
    app.search_upload(b"not an image", name="notes.txt")
    assert app.error and app.status.value.startswith("<span style='color:#b42318'>error: ")
    assert all("similar-images-stale" in w._dom_classes for w in (app.grid, app.query_image))
    app.search_id(2)
    assert app.error is None and "similar-images-stale" not in app.grid._dom_classes


def test_an_unrelated_photo_finds_no_close_match(app):
    from skimage import data

    page = io.BytesIO()
    Image.fromarray(data.page()).convert("RGB").save(page, format="PNG")  # a scanned page of text
    results = app.search_upload(page.getvalue(), name="page.png")
    assert results and app.error is None
    assert "no close match in this collection" in app.status.value
    assert all(cell.children[2].value.endswith("unrelated") for cell in app.grid.children)
    app.search_id(0)
    assert "no close match" not in app.status.value and app.grid.children[0].children[2].value.endswith("same photo")


def test_the_grid_wraps_on_a_narrow_screen(app):
    """Columns as many as fit, at most `columns`; the query and the grid wrap (390 px phones)."""
    assert app.grid.layout.grid_template_columns.startswith("repeat(auto-fill,")
    assert app.widget.children[-1].layout.flex_flow == "row wrap"
    assert app.random_button.layout.width == "auto" and app.duplicates_button.layout.width == "auto"
