"""Running ``similar-images evaluate``: check everything first, then run each report and save it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from similar_images.db.vectors import open_vectors
from similar_images.errors import SimilarImagesError
from similar_images.evaluation.report import Report, save_report
from similar_images.evaluation.systems import (
    open_systems,
    resolve_systems,
    saved_index_path,
)

logger = logging.getLogger(__name__)

DEFAULT_QUERIES = {"fidelity": 1000, "coco": 1000, "robustness": 200}


def run_reports(names: list[str], *, vectors: list[str | os.PathLike], index=None, models=None,
                annotations=None, images=None, queries: int | None = None, edits=None,
                group_separator: str | None = None, seed: int = 0, out_dir="evaluation",
                show_progress: bool = True, skip_missing_annotations: bool = False) -> Iterator[tuple[Report, dict]]:
    """Run the reports called ``names``; yield each with the files it was saved to.

    Arguments mirror ``similar-images evaluate`` (see its ``--help``). Everything is
    checked before the first report starts, so a typo does not cost a long run.
    """
    out_dir = Path(out_dir)
    vectors = [Path(v) for v in vectors]
    need_db = [n for n in names if n != "robustness" or images is None]
    for path in vectors if need_db else []:
        if not path.exists():
            raise SimilarImagesError(f"{path}: vectors file not found (build the database first, or pass --vectors)")
    if "coco" in names and not Path(annotations).exists():
        if not skip_missing_annotations:
            raise SimilarImagesError(f"{annotations}: COCO annotations not found (get them with "
                                     "./get_ms_coco_dataset.sh --annotations, or pass --annotations)")
        logger.warning("%s not found: skipping the coco report", annotations)
        names = [n for n in names if n != "coco"]
    if edits:
        from similar_images.edits import select_edits

        select_edits(edits)
    if "robustness" in names and images is not None:
        from similar_images.evaluation.folder import list_images, parse_folder_models

        parse_folder_models(models)
        list_images(Path(images))
    overrides = {vectors[0]: Path(index)} if index is not None else {}
    for path in overrides.values():
        if not path.exists():
            raise SimilarImagesError(f"{path}: index file not found")
    systems = {}
    if need_db:
        specs = resolve_systems(vectors, models if images is None else None,
                                has_saved_index=lambda v: saved_index_path(v, overrides).exists())
        systems = open_systems(specs, out_dir, show_progress=show_progress, overrides=overrides)
    for name in names:
        report = _run_one(name, systems, images=images, models=models, annotations=annotations,
                          queries=queries or DEFAULT_QUERIES[name], edits=edits,
                          group_separator=group_separator, seed=seed, out_dir=out_dir,
                          show_progress=show_progress)
        yield report, save_report(report, out_dir)


def _run_one(name: str, systems: dict, *, images, models, annotations, queries, edits, group_separator,
             seed, out_dir: Path, show_progress: bool) -> Report:
    if name == "fidelity":
        from similar_images.evaluation.fidelity import fidelity_report

        return fidelity_report({label: db for label, (db, _) in systems.items()},
                               {label: open_vectors(path) for label, (_, path) in systems.items()},
                               queries=queries, seed=seed, show_progress=show_progress)
    if name == "coco":
        from similar_images.evaluation.coco import coco_report, load_coco_labels

        return coco_report({label: db for label, (db, _) in systems.items()}, load_coco_labels(annotations),
                           queries=queries, seed=seed, show_progress=show_progress)
    from similar_images.evaluation.folder import folder_systems
    from similar_images.evaluation.robustness import robustness_report

    dbs = (folder_systems(Path(images), models, out_dir, show_progress=show_progress) if images is not None
           else {label: db for label, (db, _) in systems.items()})
    return robustness_report(dbs, queries=queries, edits=edits, group_separator=group_separator, seed=seed,
                             show_progress=show_progress)
