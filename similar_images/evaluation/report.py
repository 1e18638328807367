"""Built-in evaluation: how good are a database's results?

Three reports, each a :class:`Report` that is printed as a table, saved as JSON and,
where a curve says more than a table, plotted as a PNG:

* ``fidelity`` (:mod:`similar_images.evaluation.fidelity`): recall@1/@10/@100 of the
  database's search against exact search, and query latency;
* ``coco`` (:mod:`similar_images.evaluation.coco`): semantic precision@k and mAP@k on
  COCO 2014 val from the instance annotations, with the random-ranking baseline;
* ``robustness`` (:mod:`similar_images.evaluation.robustness`): copy detection, edited photos
  searched against the unedited collection.

Every report compares several *systems* side by side: a system is a label and an
opened database (``SimilarImages``), for example two models or two index types.
This module holds what the reports share: the report type, tables, files, plots.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from similar_images.fileio.files import atomic_path, write_json_atomic

logger = logging.getLogger(__name__)

REPORTS = ("fidelity", "coco", "robustness")


@dataclass
class Report:
    """One evaluation's results.

    Attributes:
        name: ``"fidelity"``, ``"coco"`` or ``"robustness"``; names the output files.
        title: one line saying what was measured on what.
        headers: table column names.
        rows: table rows, one list of cells per row (str, int or float).
        data: everything worth keeping, saved as JSON (settings, per-system metrics).
        plot: draws the report on a matplotlib figure, or None when a table says it all.
    """

    name: str
    title: str
    headers: list[str]
    rows: list[list[Any]]
    data: dict[str, Any] = field(default_factory=dict)
    plot: Callable[[Any], None] | None = None

    def table(self) -> str:
        """The title and the table as plain text."""
        return f"{self.title}\n{format_table(self.headers, self.rows)}"


def format_cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table: text columns left-aligned, number columns right-aligned."""
    cells = [[str(h) for h in headers]] + [[format_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    text = [all(isinstance(row[i], str) for row in rows) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if left else c.rjust(w) for c, w, left in zip(row, widths, text)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def save_report(report: Report, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``<out_dir>/<name>.json`` (and ``<name>.png`` when the report plots), atomically.

    Returns:
        ``{"json": path, "png": path}`` for the files written.
    """
    out_dir = Path(out_dir)
    written = {"json": out_dir / f"{report.name}.json"}
    payload = {"report": report.name, "title": report.title, "headers": report.headers,
               "rows": report.rows, **report.data}
    write_json_atomic(written["json"], _jsonable(payload))
    if report.plot is not None:
        written["png"] = out_dir / f"{report.name}.png"
        save_plot(report.plot, written["png"])
    return written


def save_plot(draw: Callable[[Any], None], path: str | os.PathLike) -> None:
    """Draw on a fresh matplotlib figure (headless backend) and save it as PNG atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), layout="constrained")
    draw(figure)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)


def _jsonable(obj: Any) -> Any:
    """Numpy scalars and arrays to plain Python, NaN to None, recursively."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def bar_chart(figure, groups: list[str], series: dict[str, list[float]], *, title: str,
              ylabel: str, hatched: tuple[str, ...] = ()) -> None:
    """Grouped bars: one group per entry of ``groups``, one bar per series within it."""
    import numpy as np

    ax = figure.subplots()
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, (label, values) in enumerate(series.items()):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label,
                      hatch="//" if label in hatched else None,
                      alpha=0.55 if label in hatched else 1.0)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(x, groups, rotation=25 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.08)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right" if len(series) > 1 else "best")


def describe_database(db) -> dict[str, Any]:
    """What a system is, for the JSON: model, image count, index type and spec (None: exact search)."""
    database = getattr(db, "database", None)
    index_manifest = getattr(database, "index_manifest", None) or {}
    model = getattr(db, "model", None) or {}
    return {"model": model.get("name"), "weights": model.get("weights"), "images": len(db),
            "vectors": str(getattr(database, "vectors_path", "")) or None,
            "index": str(getattr(database, "index_path", "") or "") or None,
            "index_type": index_manifest.get("index_type"), "index_spec": index_manifest.get("spec"),
            "index_note": index_manifest.get("note")}


def ranked_ids(db, queries: list, k: int, *, exclude: list[int] | None = None,
               batch_size: int = 64, show_progress: bool = True, desc: str = "searching"):
    """Search ``queries`` (ids, vectors or images) in ``db``; the result ids as an array.

    Args:
        db: an opened database (``SimilarImages``).
        queries: anything ``db.search`` takes, one per query.
        k: results wanted per query.
        exclude: per query, an id to drop from its results (the query image itself);
            one more result is asked for so that ``k`` remain.
        batch_size: queries per ``db.search`` call.

    Returns:
        ``(len(queries), k)`` int64, ranked best first, ``-1`` where fewer came back.
    """
    import numpy as np
    from tqdm.auto import tqdm

    extra = 1 if exclude is not None else 0
    out = np.full((len(queries), k), -1, dtype=np.int64)
    with tqdm(total=len(queries), desc=desc, unit="query", disable=not show_progress) as bar:
        for start in range(0, len(queries), batch_size):
            batch = queries[start:start + batch_size]
            for row, results in enumerate(db.search(list(batch), k=k + extra), start=start):
                ids = [r.id for r in results if exclude is None or r.id != exclude[row]][:k]
                out[row, :len(ids)] = ids
            bar.update(len(batch))
    return out
