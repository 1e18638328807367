"""Robustness (copy detection): do edited copies of a photo find the original?

Each sampled image of a database is edited in each way of :data:`edits.EDITS` (crop,
resize, JPEG, flip, rotation, brightness and contrast, grayscale, text); every edited
copy is searched against the unedited database and the rank of its original is
recorded. The report gives, per edit type and system, recall@1 (the original came
first), recall@10 and the mean rank (an original missing from the ``k`` results counts
as rank ``k + 1``).

A collection may already hold copies of a photo (the demo's sample collection holds
``coffee.jpg`` and ``coffee__flip.jpg``): with a ``group_separator`` (``"__"`` there),
any image of the same group (the file stem before the separator) counts as the original.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from similar_images.edits import select_edits
from similar_images.errors import ImageError
from similar_images.evaluation import metrics
from similar_images.evaluation.report import (
    Report,
    bar_chart,
    describe_database,
    ranked_ids,
)

logger = logging.getLogger(__name__)

MAX_K = 100


def sample_ids(n_images: int, queries: int | None, seed: int) -> list[int]:
    """Row ids of the images to edit: all of them, or ``queries`` drawn with ``seed``."""
    if queries is None or queries >= n_images:
        return list(range(n_images))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_images, size=queries, replace=False))


def load_original(db, row: int):
    """The database's image ``row`` as an RGB PIL image (EXIF orientation applied)."""
    from similar_images.images import load_image

    return load_image(db.image_path(row))


def group_ids(names: list[str], separator: str | None) -> np.ndarray:
    """``(n,)`` int64: one number per group of copies; each image alone without ``separator``."""
    if not separator:
        return np.arange(len(names), dtype=np.int64)
    keys: dict[str, int] = {}
    return np.array([keys.setdefault(Path(name).stem.split(separator)[0], len(keys)) for name in names],
                    dtype=np.int64)


def embed_edited(db, ids: list[int], edit_names: list[str] | None = None, *, batch_size: int = 16,
                 show_progress: bool = True, desc: str = "robustness"):
    """Edit each image ``ids`` of ``db`` every way and embed the copies with the database's model.

    An original that cannot be loaded (missing or damaged file) is left out and listed.

    Returns:
        ``(kept, vectors, skipped)``: the ids used, ``{edit name: (len(kept), d) float32}``
        raw query vectors, and ``[{"path", "reason"}]`` for the originals left out.

    Raises:
        ImageError: not one original could be loaded (the message names the first).
    """
    from tqdm.auto import tqdm

    chosen = select_edits(edit_names)
    out: dict[str, list[np.ndarray]] = {name: [] for name in chosen}
    kept, skipped, first_error = [], [], None
    with tqdm(total=len(ids) * len(chosen), desc=desc, unit="query", disable=not show_progress) as bar:
        for start in range(0, len(ids), batch_size):
            originals = []
            for row in ids[start:start + batch_size]:
                try:
                    originals.append(load_original(db, row))
                    kept.append(row)
                except ImageError as exc:
                    logger.warning("left out of the robustness report: %s", exc)
                    skipped.append({"path": str(db.image_path(row)), "reason": exc.reason})
                    first_error = first_error or exc
            for name, edit in chosen.items():
                if originals:
                    out[name].append(db.embed([edit(image) for image in originals]))  # (b, d)
            bar.update(len(chosen) * min(batch_size, len(ids) - start))
    if not kept and first_error is not None:
        raise ImageError(f"no original image could be loaded, e.g. {first_error}", first_error.reason)
    return kept, {name: np.concatenate(parts) for name, parts in out.items()}, skipped


def ranks_of_originals(db, ids: list[int], vectors: dict[str, np.ndarray], *, k: int = MAX_K,
                       group_separator: str | None = None) -> dict[str, np.ndarray]:
    """Search the edited copies' ``vectors`` in ``db``; the rank of each original per edit.

    Returns:
        ``{edit name: (len(ids),) int64}`` 1-based rank of the original (or of the first
        copy of its group), 0 where it was not in the first ``k`` results.
    """
    groups = np.append(group_ids(list(db.names), group_separator), -2)  # id -1 (no result) -> group -2
    targets = groups[np.asarray(ids, dtype=np.int64)]
    return {name: metrics.ranks_of(targets, groups[ranked_ids(db, list(v), k, show_progress=False)])
            for name, v in vectors.items()}


def edit_ranks(db, ids: list[int], edit_names: list[str] | None = None, *, k: int = MAX_K,
               group_separator: str | None = None, show_progress: bool = True,
               desc: str = "robustness") -> dict[str, np.ndarray]:
    """:func:`embed_edited` then :func:`ranks_of_originals` (ranks of the originals that loaded)."""
    kept, vectors, _ = embed_edited(db, ids, edit_names, show_progress=show_progress, desc=desc)
    return ranks_of_originals(db, kept, vectors, k=k, group_separator=group_separator)


def summarise(ranks: dict[str, np.ndarray], k: int) -> dict[str, dict[str, float]]:
    """Per edit (and ``"all"``): recall@1, recall@10 and mean rank (missing = ``k + 1``)."""
    out = {}
    everything = np.concatenate(list(ranks.values())) if ranks else np.zeros(0, dtype=np.int64)
    for name, r in {**ranks, "all": everything}.items():
        out[name] = {
            "recall@1": metrics.recall_at_k_from_ranks(r, 1),
            "recall@10": metrics.recall_at_k_from_ranks(r, 10),
            "mean rank": metrics.mean_rank(r, missing_rank=k + 1),
            "missing": int((r == 0).sum()),
        }
    return out


def robustness_report(systems: dict, *, queries: int | None = 200, edits: list[str] | None = None,
                      group_separator: str | None = None, seed: int = 0, show_progress: bool = True) -> Report:
    """Copy detection per edit type for each system.

    Args:
        systems: label -> opened database built from the unedited images.
        queries: how many of the database's images to edit (all when None or fewer).
        edits: edit names (see :data:`edits.EDITS`); all when None.
        group_separator: names sharing the stem before it are copies of one photo (see above).
        seed: which images are edited.
    """
    per_system, embedded = {}, {}
    for label, db in systems.items():
        k = min(len(db), MAX_K)
        ids = sample_ids(len(db), queries, seed)
        # Systems over the same vectors and model (index types) share the edited queries' vectors.
        key = (describe_database(db)["vectors"] or id(db), repr(getattr(db, "model", None)), tuple(ids))
        if key not in embedded:
            embedded[key] = embed_edited(db, ids, edits, show_progress=show_progress, desc=f"robustness {label}")
        kept, vectors, skipped = embedded[key]
        ranks = ranks_of_originals(db, kept, vectors, k=k, group_separator=group_separator)
        per_system[label] = {"images": len(db), "queries": len(kept), "k": k, "database": describe_database(db),
                             "skipped": skipped,
                             "metrics": summarise(ranks, k),
                             "ranks": {name: r.tolist() for name, r in ranks.items()}}
    labels = list(per_system)
    edit_names = list(next(iter(per_system.values()))["metrics"])
    columns = ("recall@1", "recall@10", "mean rank")
    if len(labels) == 1:
        headers = ["edit", "R@1", "R@10", "mean rank"]
        rows = [[name] + [per_system[labels[0]]["metrics"][name][m] for m in columns] for name in edit_names]
    else:  # one row per edit and system, systems side by side within each edit
        headers = ["edit", "system", "R@1", "R@10", "mean rank"]
        rows = [[name if i == 0 else "", label] + [per_system[label]["metrics"][name][m] for m in columns]
                for name in edit_names for i, label in enumerate(labels)]
    first = per_system[labels[0]]
    title = (f"Robustness (copy detection): {first['queries']:,} images x {len(edit_names) - 1} edits "
             f"searched among {first['images']:,} unedited images; missing = rank {first['k'] + 1}")
    data = {"settings": {"queries": queries, "seed": seed, "edits": edit_names[:-1],
                         "group_separator": group_separator}, "systems": per_system}
    return Report("robustness", title, headers, rows, data, plot=lambda fig: _plot(fig, per_system))


def _plot(figure, per_system: dict) -> None:
    groups = list(next(iter(per_system.values()))["metrics"])
    series = {label: [result["metrics"][g]["recall@1"] for g in groups] for label, result in per_system.items()}
    bar_chart(figure, groups, series, title="Copy detection: recall@1 per edit", ylabel="recall@1")
