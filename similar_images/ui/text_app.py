"""The text search notebook's user interface (ipywidgets 8).

:class:`TextSearchApp` takes an open text database (anything with ``search(query, k)``
returning ``[TextResult(id, text, score)]``, ``text(id)`` and ``len()``, such as
:class:`similar_images.text.database.TextDatabase`): a text box, a Search button, a
"Random text" button that searches from a corpus text by its id, and a table of results
with scores. Errors show as one short line; the app keeps working.
"""

from __future__ import annotations

import html
import logging
import random
from collections.abc import Sequence

from similar_images.errors import SimilarImagesError

log = logging.getLogger(__name__)


def text_results_html(results: Sequence, *, query: str | None = None) -> str:
    """An HTML table of ranked results: rank, score, id, text."""
    head = f"<p><b>Query:</b> {html.escape(query)}</p>" if query else ""
    rows = "".join(
        f"<tr><td>{rank}</td><td>{r.score:.3f}</td><td>{r.id}</td>"
        f"<td style='text-align:left'>{html.escape(r.text)}</td></tr>"
        for rank, r in enumerate(results, start=1)
    )
    return (
        f"{head}<table class='text-results'><thead><tr><th>#</th><th>score</th><th>id</th>"
        f"<th style='text-align:left'>text</th></tr></thead><tbody>{rows}</tbody></table>"
    )


class TextSearchApp:
    """Search box, buttons and a results table over a text database.

    Args:
        db: an open text database.
        k: results per search.
        seed: seed of the "Random text" button.
    """

    def __init__(self, db, *, k: int = 8, seed: int = 0):
        import ipywidgets as widgets

        self.db = db
        self._random = random.Random(seed)
        self.query = widgets.Text(
            placeholder="Type a sentence and press Enter", continuous_update=False,
            layout=widgets.Layout(width="60%"),
        )
        self.k = widgets.Dropdown(options=[4, 8, 16, 32], value=k if k in (4, 8, 16, 32) else 8, description="k",
                                  layout=widgets.Layout(width="120px"))
        self.search_button = widgets.Button(description="Search", button_style="primary", icon="search")
        self.random_button = widgets.Button(description="Random text", icon="random")
        self.status = widgets.HTML()
        self.results = widgets.HTML()
        self.search_button.on_click(lambda _: self.search_text(self.query.value))
        self.random_button.on_click(lambda _: self.search_random())
        # With continuous_update=False the value changes on Enter (or leaving the box).
        self.query.observe(lambda change: self.search_text(change["new"]), names="value")
        self.widget = widgets.VBox([
            widgets.HBox([self.query, self.k, self.search_button, self.random_button]),
            self.status,
            self.results,
        ])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def search_text(self, query: str) -> list:
        """Search by free text; shows and returns the results."""
        if not query.strip():
            self._show_error("type a sentence to search for")
            return []
        return self._run(query, lambda: query)

    def search_id(self, text_id: int) -> list:
        """Search from the corpus text ``text_id`` (its stored vector; no model run)."""
        return self._run(text_id, lambda: f"#{text_id}: {self.db.text(text_id)}")

    def search_random(self) -> list:
        """Search from a random corpus text."""
        return self.search_id(self._random.randrange(len(self.db)))

    def _run(self, query, label) -> list:
        self.status.value = "<i>searching…</i>"
        for button in (self.search_button, self.random_button):
            button.disabled = True
        try:
            heading = label()  # may fail too (an id out of range)
            results = self.db.search(query, k=self.k.value)
        except (SimilarImagesError, ValueError) as exc:
            self._show_error(str(exc))
            return []
        except Exception as exc:  # the app must survive anything; the log has the details
            log.exception("text search failed")
            self._show_error(f"search failed: {type(exc).__name__}: {exc}")
            return []
        finally:
            for button in (self.search_button, self.random_button):
                button.disabled = False
        self.status.value = f"{len(results)} most similar of {len(self.db)} texts"
        self.results.value = text_results_html(results, query=heading)
        return results

    def _show_error(self, message: str) -> None:
        first = message.strip().splitlines()[0] if message.strip() else "error"
        self.status.value = f"<span style='color:#b00020'>{html.escape(first)}</span>"
        self.results.value = ""
