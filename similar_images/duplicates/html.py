"""The HTML report: one section per group, thumbnails with scores, the keeper marked.

In the style of the demo's results page (``similar_images/demo/results_page.py``):
one self-contained file, thumbnails embedded as data URIs.
"""

from __future__ import annotations

import base64
import html
import logging
import os
from pathlib import Path

from similar_images.errors import ImageError
from similar_images.fileio.files import write_bytes_atomic
from similar_images.thumbnails import placeholder_jpeg, thumbnail_jpeg

log = logging.getLogger(__name__)

THUMB = 180  # pixels, longest side

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
section { margin-bottom: 18px; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; padding: 6px; border: 3px solid #ddd; border-radius: 6px; width: 190px; }
figure.keeper { border-color: rgb(34, 139, 34); }
img { display: block; max-width: 180px; max-height: 180px; margin: auto; }
figcaption { font-size: 13px; margin-top: 4px; word-break: break-all; }
.score { font-weight: bold; }
.keep { color: rgb(34, 139, 34); font-weight: bold; }
.remove { color: #b42318; }
"""


def _thumbnail(path: str | os.PathLike) -> bytes:
    try:
        return thumbnail_jpeg(path, THUMB)
    except ImageError as exc:
        log.warning("no thumbnail: %s", exc)
        return placeholder_jpeg("missing", THUMB)


def _figure(member) -> str:
    uri = "data:image/jpeg;base64," + base64.b64encode(_thumbnail(member.path)).decode("ascii")
    verdict = '<span class="keep">keep</span>' if member.keep else '<span class="remove">remove?</span>'
    extra = "<br>identical file" if member.identical else ""
    caption = (f'<span class="score">{member.score:.3f}</span> {verdict}{extra}<br>'
               f"{member.width}&times;{member.height}, {member.bytes:,} B<br>{html.escape(member.name)}")
    css = "keeper" if member.keep else ""
    return (f'<figure class="{css}" data-id="{member.id}"><img src="{uri}" alt="{html.escape(member.name)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def duplicates_html(found, *, title: str = "Duplicate images") -> str:
    """The report as an HTML string (thumbnails embedded)."""
    sections = [
        f'<section class="group" id="group-{g.number}"><h2>Group {g.number} &middot; {len(g.members)} images</h2>'
        f'<div class="grid">{"".join(_figure(m) for m in g.members)}</div></section>'
        for g in found.groups
    ]
    summary = (f"{found.images:,} images; {len(found.groups):,} groups; {len(found.remove_paths()):,} images "
               f"could be removed. Threshold {found.threshold:.3f} (cosine), grouping rule {html.escape(found.rule)}, "
               f"k {found.k}. Scores are cosines to the group's keeper (green frame): highest resolution, then "
               f"largest file, then shortest name. Nothing was deleted.")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{summary}</p>"
            + ("".join(sections) or "<p>No duplicates found.</p>") + "</body></html>\n")


def write_duplicates_html(path: str | os.PathLike, found, **options) -> Path:
    """Write :func:`duplicates_html` to ``path`` atomically; returns ``path``."""
    write_bytes_atomic(path, duplicates_html(found, **options).encode("utf-8"))
    return Path(path)
