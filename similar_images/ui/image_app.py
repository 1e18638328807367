"""The notebook app: search a database by a random pick, an upload, a URL or a click.

The app is built from an open database (anything with the :class:`~similar_images.search.
SimilarImages` methods ``search``, ``image_path`` and ``len``), so tests drive it without
a browser::

    app = SimilarImagesApp(db)
    app                      # in a notebook: shows the widgets
    app.search_upload(data)  # or search_url(url), search_random(), search_id(3)
    app.result_buttons[0].click()
    app.search_duplicates()  # the query's near-duplicates (a database image's)

Widget callbacks only parse input and call the database; every failure a user can
cause shows as a one-line message under the controls and the app keeps working.
"""

from __future__ import annotations

import html
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from similar_images.errors import ImageError, SimilarImagesError
from similar_images.thumbnails import placeholder_jpeg, thumbnail_jpeg
from similar_images.ui.duplicates_view import DuplicatesView
from similar_images.ui.results_view import ResultsView
from similar_images.ui.styles import IMAGE_APP_STYLE
from similar_images.ui.styles import caption as _caption

logger = logging.getLogger(__name__)

K_CHOICES = (4, 8, 12, 16, 24, 32)
# A click on "Search" within this many seconds of the same URL being searched by Enter
# (or by leaving the box, which also submits it) is the same request: skip it.
_URL_REPEAT_S = 2.0


class SimilarImagesApp(DuplicatesView, ResultsView):
    """Widgets that query ``db`` and show the query image and a grid of results.

    Args:
        db: an open database (:class:`~similar_images.search.SimilarImages`).
        k: how many results to show at first; the user can change it.
        thumb_size: longest side of a result thumbnail, in pixels.
        columns: most results per row (fewer on a narrow screen).
        url_timeout: seconds allowed to fetch an image URL.
        seed: seed of the "Random image" choice (None: a different pick each run).
        duplicate_threshold: lowest cosine the "Duplicates" view shows, or ``"auto"``
            (the model's calibrated default, see ``similar_images.duplicates``).

    Attributes:
        results: the results shown, best first (``SearchResult(id, path, score)``).
        result_buttons: the "Search" button under each result, in the same order.
        busy: True while a query runs.
        error: the message of the last failed query, or None after a success.
    """

    def __init__(self, db: Any, *, k: int = 8, thumb_size: int = 160, columns: int = 4,
                 url_timeout: float = 10.0, seed: int | None = None, duplicate_threshold: float | str = "auto"):
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.db = db
        self.thumb_size = thumb_size
        self.url_timeout = url_timeout
        self.results: list = []
        self.result_buttons: list[w.Button] = []
        self.busy = False
        self.error: str | None = None
        self._rng = random.Random(seed)
        self._last_query: Callable[[int], list] | None = None
        self._last_url: tuple[str, float] = ("", 0.0)
        self._missing: list[str] = []  # database image files not found while showing results
        self.duplicate_threshold = duplicate_threshold
        self._query_id: int | None = None  # the query, when it is a database image
        self._build(k, columns)

    # --- what users (and tests) do -------------------------------------------------

    def search_random(self) -> list:
        """Search from a database image picked at random."""
        ids = self._ids()
        if not ids:
            self._fail("the database is empty")
            return []
        return self.search_id(self._rng.choice(ids))

    def search_id(self, image_id: int) -> list:
        """Search from database image ``image_id`` (no model run).

        One rule for every query source: a query that is in the database is shown among
        its results (first, score 1.000), whether it was picked, clicked or uploaded; the
        score says the match is exact, and it is what ``search`` and the service return.
        """
        name = str(self.db.names[image_id]) if hasattr(self.db, "names") else f"#{image_id}"
        self.url_box.value = ""  # the query is no longer the URL in the box
        self.upload.value = ()  # nor the file uploaded last (a new upload of it searches again)
        results = self._run(name, lambda: self._db_thumb(image_id, 2 * self.thumb_size),
                            lambda k: self.db.search(int(image_id), k=k))
        self._set_query_id(int(image_id) if self.error is None else self._query_id)
        return results

    def search_upload(self, data: bytes, name: str = "uploaded image") -> list:
        """Search from the bytes of an uploaded image file."""
        self.url_box.value = ""
        return self._run_image(name, lambda: bytes(data))

    def search_url(self, url: str) -> list:
        """Search from the image at an http(s) URL (downloaded once)."""
        from similar_images.images import fetch_url

        url = url.strip()
        if not url:
            self._fail("type or paste an image URL first")
            return []
        result = self._run_image(url, lambda: fetch_url(url, timeout=self.url_timeout))
        self._last_url = (url, time.monotonic())
        return result

    @property
    def widget(self) -> w.VBox:
        """The whole app, ready to ``display``."""
        return self._root

    def _repr_mimebundle_(self, **kwargs):
        return self._root._repr_mimebundle_(**kwargs)

    # --- running a query -----------------------------------------------------------

    def _run_image(self, label: str, read: Callable[[], bytes]) -> list:
        """Search from an image file's bytes: ``read()`` once, then the database decodes
        them exactly as the extraction decoded its files (an uploaded copy of a database
        image scores 1.0)."""
        data: list[bytes] = []

        def thumb() -> bytes:
            from similar_images.images import load_image

            data.append(read())
            size = 2 * self.thumb_size
            try:
                image = load_image(data[0], target_size=(size, size))
            except ImageError as exc:  # name the file or URL, not "<123 bytes>"
                message = str(exc)
                if message.startswith("<") and ">" in message:
                    message = label + message[message.index(">") + 1:]
                raise ImageError(message, exc.reason) from None
            return thumbnail_jpeg(image, size=size)

        results = self._run(label, thumb, lambda k: self.db.search(data[0], k=k))
        self._set_query_id(None if self.error is None else self._query_id)
        return results

    def _run(self, label: str, thumb: Callable[[], bytes], query: Callable[[int], list], *,
             prefix: str = "query:") -> list:
        """Show the query's ``thumb()`` and the results of ``query(k)``; report failures."""
        done = self._guarded(f"Searching from {label} …", lambda: (thumb(), query(self.k)))
        if done is None:
            return []
        (query_thumb, results), seconds = done
        self._last_query = query
        self._show(results, seconds)
        self.query_image.value = query_thumb
        self.query_label.value = _caption(label, prefix)
        return results

    def _rerun(self, change) -> None:
        """A new k: search the last query again."""
        if self._last_query is None or self.busy:
            return
        last = self._last_query
        done = self._guarded(f"Searching again for {self.k} results …", lambda: last(self.k))
        if done is not None:
            self._show(*done)

    def _guarded(self, message: str, work: Callable[[], Any]) -> tuple[Any, float] | None:
        """Run ``work()`` with the busy indicator on: ``(value, seconds)``, or None
        after showing why it failed."""
        self._set_busy(True, message)
        start = time.perf_counter()
        try:
            return work(), time.perf_counter() - start
        except (SimilarImagesError, ValueError, OSError) as exc:
            self._fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - the app must keep working
            logger.debug("query failed", exc_info=True)
            self._fail(f"{type(exc).__name__}: {exc}")
        finally:
            self._set_busy(False)
        return None

    def _ids(self) -> list[int]:
        ids = getattr(self.db, "ids", None)
        return list(ids) if ids is not None else list(range(len(self.db)))

    @property
    def k(self) -> int:
        return int(self.k_choice.value)

    # --- showing things ------------------------------------------------------------

    def _set_busy(self, busy: bool, message: str = "") -> None:
        self.busy = busy
        for control in (self.random_button, self.upload, self.url_box, self.url_button,
                        self.k_choice, *self.result_buttons):
            control.disabled = busy
        self.duplicates_button.disabled = busy or self._query_id is None
        if busy:  # a CSS spinner: no emoji font needed
            self.status.value = (f"<span class='similar-images-busy'><span class='similar-images-spinner'>"
                                 f"</span> {html.escape(message)}</span>")

    def _fail(self, message: str) -> None:
        self.error = message.splitlines()[0] if message else "failed"
        self.status.value = f"<span style='color:#b42318'>error: {html.escape(self.error)}</span>"
        self._mark_stale(bool(self.results))  # what is shown is not the answer to this input

    # --- layout --------------------------------------------------------------------

    def _build(self, k: int, columns: int) -> None:
        auto = {"layout": w.Layout(width="auto")}  # buttons as wide as their label: one row at 1280 px
        self.random_button = w.Button(description="Random image", icon="random", **auto)
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="Upload")
        self.url_box = w.Text(placeholder="https://… image URL, then Enter",
                              continuous_update=False, layout=w.Layout(width="260px"))
        self.url_button = w.Button(description="Search URL", icon="search", **auto)
        self.duplicates_button = w.Button(description="Duplicates", icon="clone", disabled=True, **auto,
                                          tooltip="Near-duplicates of the query (a database image)")
        options = sorted(set(K_CHOICES) | {k})
        self.k_choice = w.Dropdown(options=options, value=k, description="results",
                                   style={"description_width": "initial"},
                                   layout=w.Layout(width="130px"))
        self.status = w.HTML("Pick a random image, upload one, or paste a URL.")
        self.query_image = w.Image(value=placeholder_jpeg("no query", self.thumb_size),
                                   format="jpeg")
        self.query_label = w.HTML("")
        self.grid = w.GridBox(layout=w.Layout(
            # as many columns as fit (one on a phone), at most `columns`
            grid_template_columns=f"repeat(auto-fill, {self.thumb_size + 24}px)", width="100%",
            max_width=f"{columns * (self.thumb_size + 32)}px",
            grid_gap="8px"))

        self.random_button.on_click(lambda _b: self.search_random())
        self.upload.observe(self._on_upload, names="value")
        self.url_box.observe(self._on_url_enter, names="value")
        self.url_button.on_click(self._on_url_button)
        self.k_choice.observe(self._rerun, names="value")
        self.duplicates_button.on_click(lambda _b: self.search_duplicates())

        controls = w.HBox([self.random_button, self.upload, self.url_box, self.url_button,
                           self.k_choice, self.duplicates_button], layout=w.Layout(flex_flow="row wrap"))
        query = w.VBox([self.query_label, self.query_image])
        answer = w.HBox([query, self.grid], layout=w.Layout(flex_flow="row wrap", grid_gap="8px"))  # wraps on a phone
        self._root = w.VBox([w.HTML(IMAGE_APP_STYLE), controls, self.status, answer])
        # class names the browser test (and custom CSS) can find
        for widget, name in ((self._root, "app"), (self.grid, "results"),
                             (self.query_image, "query-image"), (self.query_label, "query-label"),
                             (self.status, "status")):
            widget.add_class(f"similar-images-{name}")

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:  # cleared by another query
            return
        item = files[0]
        self.search_upload(bytes(item["content"]), name=item.get("name") or "uploaded image")
        # The value stays (the button reads "Upload (1)"); the next random, id or URL query clears
        # it, so the same file uploaded again after one of those searches again.

    def _on_url_enter(self, change) -> None:
        if change["new"].strip():
            self.search_url(change["new"])

    def _on_url_button(self, _button) -> None:
        url = self.url_box.value.strip()
        last, when = self._last_url
        if url and url == last and time.monotonic() - when < _URL_REPEAT_S:
            return  # leaving the box to click here already searched this URL
        self.search_url(url)
