"""The notebook app with a box for words, for databases whose model has a text tower (CLIP).

:func:`search_app` picks the app for a database: :class:`WordsAndImagesApp` for a CLIP
database (words find pictures through the text tower, in the images' space), the plain
:class:`~similar_images.ui.image_app.SimilarImagesApp` for the others::

    app = search_app(db, k=8)
    app.search_text("a red bicycle")   # or type the words in the box, then Enter
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from similar_images.thumbnails import placeholder_jpeg
from similar_images.ui.image_app import SimilarImagesApp


def has_text_tower(db: Any) -> bool:
    """Whether the database's model can embed words (its description lists a text tower)."""
    return "text" in (getattr(db, "model", None) or {}).get("towers", ())


def search_app(db: Any, **options) -> SimilarImagesApp:
    """The notebook app for ``db``: with the box for words when its model has a text tower."""
    return (WordsAndImagesApp if has_text_tower(db) else SimilarImagesApp)(db, **options)


class WordsAndImagesApp(SimilarImagesApp):
    """:class:`SimilarImagesApp` plus a box: type words, press Enter, see the images they describe.

    Attributes:
        text_box: the box for words.
    """

    def search_text(self, text: str) -> list:
        """Search the images that match ``text`` (the model's text tower; no picture to show)."""
        text = " ".join(str(text).split())
        if not text:
            self._fail("type a few words first")
            return []
        self.url_box.value = ""  # the query is no longer the URL in the box
        results = self._run(f"\u201c{text}\u201d", lambda: placeholder_jpeg("words", self.thumb_size),
                            lambda k: self.db.search_text(text, k=k))
        self._set_query_id(None if self.error is None else self._query_id)  # no duplicates of words
        return results

    def _build(self, k: int, columns: int) -> None:
        super()._build(k, columns)
        self.text_box = w.Text(placeholder="words, e.g. a red bicycle, then Enter", continuous_update=False,
                               layout=w.Layout(width="300px"))
        self.text_box.add_class("similar-images-words")
        self.text_box.observe(self._on_words, names="value")
        controls = next(child for child in self._root.children if self.url_box in getattr(child, "children", ()))
        controls.children = (self.text_box, *controls.children)
        self.status.value = "Describe a picture in words, pick a random image, upload one, or paste a URL."

    def _on_words(self, change) -> None:
        if change["new"].strip():
            self.search_text(change["new"])

    def _set_busy(self, busy: bool, message: str = "") -> None:
        super()._set_busy(busy, message)
        if hasattr(self, "text_box"):  # not yet during the parent's _build
            self.text_box.disabled = busy
