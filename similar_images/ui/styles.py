"""The notebook apps' CSS and captions, in one place: no CDN, no emoji font needed."""

import html

IMAGE_APP_STYLE = """<style>
.similar-images-caption {display: block; max-width: 176px; font-size: 12px; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis}
.similar-images-query-label .similar-images-caption {max-width: 320px}
.similar-images-stale {opacity: 0.35}
.similar-images-spinner {display: inline-block; width: 0.8em; height: 0.8em; vertical-align: -0.1em;
  border: 2px solid #888; border-top-color: transparent; border-radius: 50%;
  animation: similar-images-spin 0.8s linear infinite}
@keyframes similar-images-spin {to {transform: rotate(360deg)}}
</style>"""

TEXT_TABLE_STYLE = """<style>
table.text-results {border-collapse: collapse; margin-top: 4px; font-size: 13px}
table.text-results th, table.text-results td {padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right}
table.text-results th {background: #f3f4f6}
table.text-results tbody tr:nth-child(even) {background: #fafafa}
.text-results-stale {opacity: 0.35}
</style>"""


def caption(text: str, prefix: str) -> str:
    """One line of at most a cell's width, cut with an ellipsis: long names keep cells even."""
    short = text if len(text) <= 40 else "…" + text[-39:]
    return (f"<span class='similar-images-caption' title='{html.escape(text, quote=True)}'>"
            f"{html.escape(prefix)} {html.escape(short)}</span>")
