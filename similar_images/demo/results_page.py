"""Results people look at: an HTML page with thumbnails and a PNG contact sheet.

Both show the query and its ranked results with scores; a result can be marked (for
example "an edited copy of the query photo") so the page says at a glance whether the
ranking is right. The HTML embeds its thumbnails as data URIs, so the page is one file
that can be moved or mailed.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont

from similar_images.errors import ImageError
from similar_images.fileio.files import atomic_path, write_bytes_atomic
from similar_images.thumbnails import placeholder_jpeg, thumbnail_jpeg

log = logging.getLogger(__name__)

THUMB = 180  # pixels, longest side
MARK_COLOUR = (34, 139, 34)  # green frame for marked results


class ShownResult(NamedTuple):
    """One ranked result as the report shows it.

    Attributes:
        rank: 1 for the best match.
        name: the image's name in the database.
        path: where the image file is.
        score: cosine similarity.
        marked: highlight it (for example: an edited copy of the query photo).
        verdict: what the score means for the model ("same photo", "similar",
            "unrelated"; ``similar_images.models.score_bands``), None if unmeasured.
    """

    rank: int
    name: str
    path: Path
    score: float
    marked: bool = False
    verdict: str | None = None


def _thumbnail(path: str | os.PathLike, size: int) -> bytes:
    try:
        return thumbnail_jpeg(path, size)
    except ImageError as exc:
        log.warning("no thumbnail: %s", exc)
        return placeholder_jpeg("missing", size)


def _data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; padding: 6px; border: 3px solid #ddd; border-radius: 6px; width: 190px; }
figure.marked { border-color: rgb(34, 139, 34); }
figure.query { border-color: #3465a4; }
img { display: block; max-width: 180px; max-height: 180px; margin: auto; }
figcaption { font-size: 13px; margin-top: 4px; word-break: break-all; }
.score { font-weight: bold; }
.verdict { color: #555; }
"""


def _figure(jpeg: bytes, caption: str, css_class: str = "") -> str:
    return (
        f'<figure class="{css_class}"><img src="{_data_uri(jpeg)}" alt="{html.escape(caption)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def results_html(
    query: str | os.PathLike,
    results: Sequence[ShownResult],
    *,
    title: str = "Similar images",
    notes: Sequence[str] = (),
    mark_label: str = "same photo",
) -> str:
    """The results page as an HTML string (thumbnails embedded)."""
    cards = []
    for r in results:
        label = f" &middot; {html.escape(mark_label)}" if r.marked else ""
        said = f' <span class="verdict">{html.escape(r.verdict)}</span>' if r.verdict else ""
        caption = (
            f'#{r.rank} <span class="score">{r.score:.3f}</span>{said}{label}<br>{html.escape(r.name)}'
        )
        cards.append(_figure(_thumbnail(r.path, THUMB), caption, "marked" if r.marked else ""))
    query_card = _figure(_thumbnail(query, THUMB), f"query<br>{html.escape(Path(query).name)}", "query")
    items = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<h2>Query</h2><div class="grid">{query_card}</div>'
        f"<h2>Top {len(results)} results (cosine similarity)</h2>"
        f'<div class="grid">{"".join(cards)}</div>'
        + (f"<ul>{items}</ul>" if items else "")
        + "</body></html>\n"
    )


def write_results_html(path: str | os.PathLike, query, results, **options) -> Path:
    """Write :func:`results_html` to ``path`` atomically; returns ``path``."""
    write_bytes_atomic(path, results_html(query, results, **options).encode("utf-8"))
    return Path(path)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def contact_sheet(
    query: str | os.PathLike,
    results: Sequence[ShownResult],
    *,
    columns: int = 5,
    title: str = "",
) -> Image.Image:
    """A picture of the query (top left) and the ranked results under it, with scores;
    marked results get a green frame."""
    cell, caption_h, pad = THUMB + 12, 34, 10
    rows = 1 + -(-len(results) // columns)
    header = 30 if title else 0
    sheet = Image.new("RGB", (pad + columns * (cell + pad), header + pad + rows * (cell + caption_h + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    font, small = _font(16), _font(12)
    if title:
        draw.text((pad, 8), title, fill="black", font=font)
    cells = [(query, "query", Path(query).name, (52, 101, 164))] + [
        (r.path, f"#{r.rank}  {r.score:.3f}" + (f"  {r.verdict}" if r.verdict else ""), r.name,
         MARK_COLOUR if r.marked else (200, 200, 200))
        for r in results
    ]
    for i, (image_path, line1, line2, frame) in enumerate(cells):
        col, row = (0, 0) if i == 0 else ((i - 1) % columns, 1 + (i - 1) // columns)
        x, y = pad + col * (cell + pad), header + pad + row * (cell + caption_h + pad)
        draw.rectangle((x, y, x + cell - 1, y + cell - 1), outline=frame, width=4)
        with Image.open(io.BytesIO(_thumbnail(image_path, THUMB))) as thumb:
            sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
        draw.text((x, y + cell + 2), line1, fill="black", font=font)
        draw.text((x, y + cell + 19), _shorten(line2, 30), fill=(90, 90, 90), font=small)
    return sheet


def _shorten(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def write_contact_sheet(path: str | os.PathLike, query, results, **options) -> Path:
    """Write :func:`contact_sheet` as a PNG to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        contact_sheet(query, results, **options).save(tmp, format="PNG")
    return Path(path)
