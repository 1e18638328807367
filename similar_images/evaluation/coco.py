"""Semantic quality on COCO from the 2014 instance annotations.

A result is relevant to a query in two ways, reported side by side:

* ``dominant``: the result's dominant category equals the query's, where an image's
  dominant category is the one covering the largest total area of its instances
  ("same main subject");
* ``any``: the two images share at least one category (looser).

For each sampled query image (one with annotations), the query itself is removed from
its results, then precision@k and mAP@k (see :mod:`similar_images.evaluation.metrics`) are
computed and compared with a random ranking of the same collection.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from similar_images.errors import DatabaseError
from similar_images.evaluation import metrics
from similar_images.evaluation.report import (
    Report,
    bar_chart,
    describe_database,
    ranked_ids,
)
from similar_images.fileio.files import read_json

logger = logging.getLogger(__name__)

DEFAULT_KS = (1, 8, 20)
RELEVANCE_KINDS = ("dominant", "any")


@dataclass(frozen=True)
class CocoLabels:
    """Per image file name: its dominant category and all its categories.

    Attributes:
        categories: category id -> name.
        dominant: file name -> id of the category with the largest total area.
        categories_of: file name -> every category id annotated in it.
    """

    categories: dict[int, str]
    dominant: dict[str, int]
    categories_of: dict[str, frozenset[int]]


def load_coco_labels(path: str | os.PathLike) -> CocoLabels:
    """Read a COCO instances file such as ``instances_val2014.json``.

    Raises:
        DatabaseError: the file is missing, not JSON, or not an instances file.
    """
    logger.info("reading COCO annotations %s", path)
    return parse_coco_instances(read_json(path), source=str(path))


def parse_coco_instances(obj: dict, *, source: str = "annotations") -> CocoLabels:
    """Build :class:`CocoLabels` from the parsed JSON of a COCO instances file."""
    if not isinstance(obj, dict) or not all(key in obj for key in ("images", "annotations", "categories")):
        raise DatabaseError(
            f"{source}: not a COCO instances file (needs 'images', 'annotations' and 'categories'; "
            "use annotations/instances_val2014.json)"
        )
    file_names = {img["id"]: img["file_name"] for img in obj["images"]}
    areas: dict[int, dict[int, float]] = {}
    for ann in obj["annotations"]:
        per_image = areas.setdefault(ann["image_id"], {})
        per_image[ann["category_id"]] = per_image.get(ann["category_id"], 0.0) + float(ann.get("area", 0.0))
    dominant, categories_of = {}, {}
    for image_id, per_category in areas.items():
        name = file_names.get(image_id)
        if name is None:
            continue
        # Largest total area; ties go to the smaller category id, so runs agree.
        dominant[name] = min(per_category, key=lambda c: (-per_category[c], c))
        categories_of[name] = frozenset(per_category)
    categories = {c["id"]: c["name"] for c in obj["categories"]}
    return CocoLabels(categories=categories, dominant=dominant, categories_of=categories_of)


def align_labels(labels: CocoLabels, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Labels for a database's rows, matched by file name (the last path component).

    Returns:
        ``dominant``: ``(n,)`` int64 category id, ``-1`` for a row without annotations;
        ``multi``: ``(n, n_categories)`` bool, which categories each row shows.
    """
    columns = {c: i for i, c in enumerate(sorted(labels.categories))}
    dominant = np.full(len(names), -1, dtype=np.int64)
    multi = np.zeros((len(names), len(columns)), dtype=bool)
    for row, name in enumerate(names):
        key = Path(name).name
        if key in labels.dominant:
            dominant[row] = labels.dominant[key]
            multi[row, [columns[c] for c in labels.categories_of[key] if c in columns]] = True
    return dominant, multi


def relevance(dominant: np.ndarray, multi: np.ndarray, query_ids: np.ndarray, result_ids: np.ndarray):
    """Which results are relevant to each query, and how many relevant images exist.

    Args:
        dominant: ``(n,)`` from :func:`align_labels`; multi: ``(n, c)`` bool.
        query_ids: ``(q,)`` row ids of the queries.
        result_ids: ``(q, k)`` row ids of their results (query excluded), ``-1`` = none.

    Returns:
        ``{kind: (relevance (q, k) bool, n_relevant (q,) int)}`` for kind in
        :data:`RELEVANCE_KINDS`; ``n_relevant`` excludes the query itself.
    """
    valid = result_ids >= 0  # (q, k)
    safe = np.where(valid, result_ids, 0)
    q_dom = dominant[query_ids]  # (q,)
    rel_dom = valid & (dominant[safe] == q_dom[:, None])
    n_dom = (dominant[None, :] == q_dom[:, None]).sum(axis=1) - 1
    # float32 products go through BLAS; counts of shared categories are small exact integers.
    q_multi = multi[query_ids].astype(np.float32)  # (q, c)
    rel_any = valid & ((multi[safe].astype(np.float32) @ q_multi[:, :, None])[..., 0] > 0)
    n_any = ((multi.astype(np.float32) @ q_multi.T) > 0).sum(axis=0) - 1  # (q,)
    return {"dominant": (rel_dom, n_dom), "any": (rel_any, n_any)}


def sample_query_names(names_per_system: list[list[str]], labels: CocoLabels, n: int, seed: int) -> list[str]:
    """Up to ``n`` annotated image names present in every system, drawn with a fixed seed."""
    common = None
    for names in names_per_system:
        annotated = {name for name in names if Path(name).name in labels.dominant}
        common = annotated if common is None else common & annotated
    if not common:
        example = names_per_system[0][0] if names_per_system and names_per_system[0] else "?"
        raise DatabaseError(
            f"no database image appears in the COCO annotations (names such as {example!r} are "
            "matched by file name to the annotations' file_name); is this the COCO val2014 database?"
        )
    pool = sorted(common)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
    return [pool[i] for i in sorted(picked)]


def score_system(db, labels: CocoLabels, query_names: list[str], ks=DEFAULT_KS, *,
                 show_progress: bool = True, desc: str = "coco") -> dict:
    """Precision@k and mAP@k of one system, with the random baseline on the same collection."""
    names = list(db.names)
    row_of = {name: i for i, name in enumerate(names)}
    dominant, multi = align_labels(labels, names)
    query_ids = np.array([row_of[name] for name in query_names], dtype=np.int64)
    results = ranked_ids(db, [int(i) for i in query_ids], max(ks), exclude=[int(i) for i in query_ids],
                         show_progress=show_progress, desc=desc)  # (q, max k)
    n_candidates = len(names) - 1
    scores: dict[str, dict] = {}
    for kind, (rel, n_rel) in relevance(dominant, multi, query_ids, results).items():
        scores[kind] = {
            "system": _metrics(lambda k, rel=rel, n_rel=n_rel: metrics.precision_at_k(rel, k),
                               lambda k, rel=rel, n_rel=n_rel: metrics.average_precision_at_k(rel, k, n_rel), ks),
            "random": _metrics(lambda k, rel=rel, n_rel=n_rel: metrics.random_precision(n_rel, n_candidates),
                               lambda k, rel=rel, n_rel=n_rel: metrics.random_average_precision(n_rel, n_candidates, k), ks),
        }
    return {"images": len(names), "annotated": int((dominant >= 0).sum()), "queries": len(query_ids),
            "database": describe_database(db), "scores": scores}


def _metrics(precision, average_precision, ks) -> dict[str, float]:
    out = {f"P@{k}": float(np.mean(precision(k))) for k in ks}
    out.update({f"mAP@{k}": float(np.mean(average_precision(k))) for k in ks if k > 1})
    return out


def coco_report(systems: dict, labels: CocoLabels, *, queries: int = 1000, ks=DEFAULT_KS, seed: int = 0,
                show_progress: bool = True) -> Report:
    """Semantic precision@k and mAP@k of each system on COCO, with the random baseline.

    Args:
        systems: label -> opened database whose names are COCO file names.
        labels: from :func:`load_coco_labels`.
        queries: how many annotated images to query (all of them when fewer).
        ks: cut-offs; mAP is reported for those above 1 (mAP@1 is P@1).
        seed: query sampling seed; the same images are queried in every system.
    """
    query_names = sample_query_names([list(db.names) for db in systems.values()], labels, queries, seed)
    per_system = {label: score_system(db, labels, query_names, ks, show_progress=show_progress,
                                      desc=f"coco {label}")
                  for label, db in systems.items()}
    columns = list(next(iter(per_system.values()))["scores"]["dominant"]["system"])
    rows = []
    for kind in RELEVANCE_KINDS:
        baselines = {}
        for label, result in per_system.items():
            rows.append([label, kind] + [result["scores"][kind]["system"][c] for c in columns])
            baselines.setdefault(tuple(result["scores"][kind]["random"].values()), label)
        for values, label in baselines.items():
            name = "random" if len(baselines) == 1 else f"random ({label})"
            rows.append([name, kind] + list(values))
    first = next(iter(per_system.values()))
    title = (f"COCO semantic quality: {first['queries']:,} query images, {first['images']:,} images "
             f"({first['annotated']:,} annotated), seed {seed}")
    data = {"settings": {"queries": len(query_names), "ks": list(ks), "seed": seed},
            "systems": per_system}
    return Report("coco", title, ["system", "relevance"] + columns, rows, data,
                  plot=lambda fig: _plot(fig, per_system, ks))


def _plot(figure, per_system: dict, ks) -> None:
    groups = [f"P@{k}" for k in ks]
    series = {}
    for kind in RELEVANCE_KINDS:
        for label, result in per_system.items():
            series[f"{label} ({kind})"] = [result["scores"][kind]["system"][g] for g in groups]
        first = next(iter(per_system.values()))
        series[f"random ({kind})"] = [first["scores"][kind]["random"][g] for g in groups]
    bar_chart(figure, groups, series, title="COCO semantic precision@k vs random ranking",
              ylabel="precision", hatched=tuple(s for s in series if s.startswith("random")))
