"""Writers for :class:`~similar_images.duplicates.find.Duplicates`: a table, JSON, CSV
and the remove list. Files are written under a temporary name and renamed."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from similar_images.fileio.files import write_bytes_atomic

CSV_COLUMNS = ("group", "member", "name", "id", "score", "suggestion", "identical", "width", "height", "bytes")


def member_rows(found) -> list[dict[str, Any]]:
    """One row per group member: group, member (path), score to the keeper, keep/remove."""
    return [{"group": g.number, "member": m.path, "name": m.name, "id": m.id, "score": m.score,
             "suggestion": "keep" if m.keep else "remove", "identical": m.identical,
             "width": m.width, "height": m.height, "bytes": m.bytes}
            for g in found.groups for m in g.members]


def to_json(found) -> dict[str, Any]:
    """The whole result as a JSON-able dict: settings, then the groups with their members."""
    rows = member_rows(found)
    return {
        "threshold": found.threshold, "rule": found.rule, "k": found.k, "images": found.images,
        "pairs": found.pairs, "identical_sets": found.identical_sets,
        "model": found.model.get("name"),
        "groups": [{"group": g.number, "keeper": g.keeper.path,
                    "members": [{k: v for k, v in r.items() if k != "group"} for r in rows if r["group"] == g.number]}
                   for g in found.groups],
    }


def json_text(found) -> str:
    return json.dumps(to_json(found), indent=1) + "\n"


def csv_text(found) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(member_rows(found))
    return buffer.getvalue()


def remove_list_text(found) -> str:
    """The paths a user may delete, one a line (the keepers are never listed)."""
    return "".join(f"{path}\n" for path in found.remove_paths())


def table(found, *, max_groups: int | None = None) -> str:
    """A readable summary: one block per group, the keeper first."""
    lines = [f"{found.images:,} images, {len(found.groups):,} duplicate groups "
             f"({sum(len(g.members) for g in found.groups):,} images, {len(found.remove_paths()):,} removable); "
             f"threshold {found.threshold:.3f}, rule {found.rule}, k {found.k}"]
    shown = found.groups if max_groups is None else found.groups[:max_groups]
    for g in shown:
        lines.append(f"group {g.number} ({len(g.members)} images)")
        for m in g.members:
            what = "keep  " if m.keep else "remove"
            same = "  identical file" if m.identical else ""
            lines.append(f"  {what} {m.score:.4f}  {m.width}x{m.height}  {m.bytes:>9,} B  {m.path}{same}")
    if len(shown) < len(found.groups):
        lines.append(f"... and {len(found.groups) - len(shown):,} more groups (see --json / --csv / --html)")
    return "\n".join(lines) + "\n"


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    write_bytes_atomic(path, text.encode("utf-8"))
    return Path(path)
