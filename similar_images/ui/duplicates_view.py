"""The notebook app's "duplicates of this image" view: the query's neighbours above the
duplicate threshold (see :mod:`similar_images.duplicates`)."""

from __future__ import annotations

import html


class DuplicatesView:
    """Mixed into :class:`~similar_images.ui.image_app.SimilarImagesApp` (its widgets and ``_run``)."""

    def search_duplicates(self, image_id: int | None = None) -> list:
        """Show the near-duplicates of database image ``image_id`` (default: the query,
        when it is a database image): its neighbours at least ``duplicate_threshold``."""
        from similar_images.duplicates import duplicates_of

        image_id = self._query_id if image_id is None else int(image_id)
        if image_id is None:
            self._fail("search from a database image first (Random image, or a result's More like this)")
            return []
        name = str(self.db.names[image_id]) if hasattr(self.db, "names") else f"#{image_id}"
        results = self._run(name, lambda: self._db_thumb(image_id, 2 * self.thumb_size),
                            lambda k: duplicates_of(self.db, image_id, threshold=self.duplicate_threshold,
                                                    k=max(self.k_choice.options)), prefix="duplicates of")
        if self.error is None:
            found = (f"{len(results)} near-duplicate{'s' if len(results) > 1 else ''}" if results
                     else "no near-duplicates")
            self.status.value = f"<span style='color:#1a7f37'>{found}</span> of {html.escape(name)}"
        return results

    def _set_query_id(self, image_id: int | None) -> None:
        self._query_id = image_id
        self.duplicates_button.disabled = image_id is None

