"""``similar-images evaluate duplicates``: measure the threshold curves of models.

For each model, the generated sets of :mod:`.calibration` are embedded, the curves are
computed, and the threshold the rule of :mod:`.threshold` picks is reported with the
measures there, on the set it was chosen on and on the check set (other edits). The
curves are saved as ``duplicates_pr.png`` and ``duplicates_pr.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from similar_images.duplicates import calibration
from similar_images.duplicates import groups as grouping
from similar_images.fileio.files import write_json_atomic

log = logging.getLogger(__name__)

CHOSEN_ON, CHECKED_ON = calibration.EDIT_SETS  # "robustness", "sample"


def calibrate_models(extractors: dict[str, Any], out_dir: str | os.PathLike, *, rule: str = grouping.DEFAULT_RULE,
                     photos=None, unrelated=None, show_progress: bool = True) -> dict[str, Any]:
    """Curves and chosen thresholds of ``extractors`` (label -> feature model).

    ``photos`` and ``unrelated`` choose a part of the generated set (default: all of it).

    Returns:
        ``{"rule", "models": {label: {"chosen", "at_chosen", "check_set_at_chosen",
        "curve"}}, "files": [png, json]}``.
    """
    grouping.check_rule(rule)
    out = Path(out_dir)
    results: dict[str, dict[str, calibration.Calibration]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sets = {name: (Path(tmp) / name, calibration.write_generated_set(
                    Path(tmp) / name, edit_set=name, photos=photos, unrelated=unrelated, show_progress=show_progress))
                for name in calibration.EDIT_SETS}
        for label, extractor in extractors.items():
            results[label] = {}
            for name, (folder, names) in sets.items():
                vectors = calibration.embed_files(folder, names, extractor)
                results[label][name] = calibration.curves(vectors, calibration.truth(names), rule=rule)
                log.info("%s / %s edits: chosen %s", label, name, results[label][name].chosen)
    report: dict[str, Any] = {"rule": rule, "models": {}}
    plots = {}
    for label, by_set in results.items():
        cal, check = by_set[CHOSEN_ON], by_set[CHECKED_ON]
        at = cal.chosen if cal.chosen is not None else 1.0
        report["models"][label] = {"chosen": cal.chosen, "images": cal.images, "at_chosen": cal.at(at),
                                   "check_set_at_chosen": check.at(at),
                                   "curve": [cal.at(p.threshold) for p in cal.scores]}
        plots[f"{label} / {CHOSEN_ON} edits: chosen"] = cal
        plots[f"{label} / {CHECKED_ON} edits: at the chosen"] = dataclasses.replace(check, chosen=cal.chosen)
    png = calibration.plot_curves(out / "duplicates_pr.png", plots,
                                  title="Duplicates: precision/recall vs threshold")
    write_json_atomic(out / "duplicates_pr.json", report)
    report["files"] = [str(png), str(out / "duplicates_pr.json")]
    return report


def summary(report: dict[str, Any], *, every: float = 0.05) -> str:
    """A readable table per model: the curve every ``every`` and the chosen threshold."""
    lines = []
    for label, result in report["models"].items():
        lines.append(f"{label} ({result['images']} images, {report['rule']} groups): "
                     "threshold | P | R | group P | group R | ARI")
        step = max(1, round(every / 0.01))
        for m in result["curve"][10::step]:
            lines.append(f"  {m['threshold']:.2f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                         f"{m['group_precision']:.3f} | {m['group_recall']:.3f} | {m['ari']:.3f}")
        lines.append(f"  chosen: {result['chosen']}  {json.dumps(_rounded(result['at_chosen']))}")
        lines.append(f"  check set ({CHECKED_ON} edits) there: {json.dumps(_rounded(result['check_set_at_chosen']))}")
    return "\n".join(lines)


def _rounded(measures: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in measures.items()}
