"""The notebook app's results grid: a cell per result with its thumbnail, name, score and
what the score means (``similar_images.models.score_bands``), and the status line."""

from __future__ import annotations

import html
import logging

import ipywidgets as w

from similar_images.errors import SimilarImagesError
from similar_images.models.score_bands import NO_CLOSE_MATCH, bands_for, no_close_match, verdict
from similar_images.thumbnails import placeholder_jpeg, thumbnail_jpeg
from similar_images.ui.styles import caption as _caption

logger = logging.getLogger(__name__)


class ResultsView:
    """Mixed into :class:`~similar_images.ui.image_app.SimilarImagesApp` (its widgets and ``db``)."""

    def _show(self, results: list, seconds: float) -> None:
        self.error = None
        self._mark_stale(False)
        self.results = list(results)
        for cell in self.grid.children:
            cell.close()
        self.result_buttons, self._missing = [], []
        bands = bands_for(getattr(self.db, "model", None))  # None: the model's scores were never measured
        cells = [self._cell(rank, r, verdict(float(r.score), bands)) for rank, r in enumerate(self.results, 1)]
        self.grid.children = cells
        found = f"{len(self.results)} most similar images" if self.results else "no results"
        self.status.value = f"<span style='color:#1a7f37'>{found}</span> ({seconds:.2f} s)"
        if self.results and no_close_match([r.score for r in self.results], bands):
            self.status.value += f"; <b>{NO_CLOSE_MATCH}</b> (even the first result is unrelated)"
        if self._missing:  # one note, not a warning per thumbnail
            self.status.value += html.escape(
                f"; {len(self._missing)} image file(s) not found, e.g. {self._missing[0]}")

    def _db_thumb(self, image_id: int, size: int) -> bytes:
        """Thumbnail of a database image; a placeholder if its file is gone."""
        try:
            return thumbnail_jpeg(self.db.image_path(image_id), size=size)
        except SimilarImagesError as exc:
            logger.debug("no thumbnail: %s", exc)
            self._missing.append(str(self.db.image_path(image_id)))
            return placeholder_jpeg("image missing", size=size)

    def _cell(self, rank: int, result, said: str | None = None) -> w.VBox:
        thumb = self._db_thumb(result.id, self.thumb_size)
        button = w.Button(description="More like this", icon="search",
                          tooltip=f"Search from {result.path}",
                          layout=w.Layout(width="auto"))
        button.on_click(lambda _b, image_id=result.id: self.search_id(image_id))
        self.result_buttons.append(button)
        return w.VBox(
            [
                w.Image(value=thumb, format="jpeg", layout=w.Layout(max_width="100%")),
                w.HTML(_caption(str(result.path), f"#{rank}")),
                w.HTML(f"score <b>{result.score:.3f}</b>" + (f" &middot; {said}" if said else "")),
                button,
            ],
            layout=w.Layout(width=f"{self.thumb_size + 16}px", align_items="center",
                            padding="4px", border="1px solid #ddd"),
        )

    def _mark_stale(self, stale: bool) -> None:
        for widget in (self.grid, self.query_image, self.query_label):
            (widget.add_class if stale else widget.remove_class)("similar-images-stale")

