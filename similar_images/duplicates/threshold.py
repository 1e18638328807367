"""The duplicate threshold: the calibrated default per model, and the curve it comes from.

``--threshold auto`` is the threshold recorded in :data:`CALIBRATED` for the database's
model (its name and weights). Each was chosen by ``benchmarks/duplicates.py calibrate``
from a precision/recall curve of "is an edited copy of" on a generated set (see
``calibration.py``): among the thresholds at which, for it and every higher threshold,
both the pair precision of the raw scores and the pair precision of the groups formed
with the default rule are at least :data:`TARGET_PRECISION`, the one where the groups'
F-beta (:data:`BETA` = 0.5: precision counts twice as much as recall) is best.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from similar_images.errors import SimilarImagesError

AUTO = "auto"
TARGET_PRECISION = 0.95
# Among the thresholds reaching the target, the one with the best F-beta: precision weighs 2x recall.
BETA = 0.5

# (model name, weights prefix) -> measured default; written from a calibration run
# (benchmarks/README.md, "Duplicates"). Weights are matched by prefix: the file name of
# the pretrained EfficientNet weights follows the colon.
CALIBRATED: dict[tuple[str, str], dict[str, Any]] = {
    # 166 images (17 photos x 8 edits + originals, 13 unrelated), centre groups: pair precision
    # 1.0 and recall 0.949 of the groups (raw scores: 1.0 and 0.940), adjusted Rand index 0.973.
    ("efficientnet-lite0", "pretrained"): {
        "threshold": 0.64, "precision": 1.0, "recall": 0.949, "ari": 0.973, "measured": "2026-12-01",
    },
    # VGG16: only random weights are available offline, and their cosines are all above 0.8
    # (no threshold separates copies from other photos), so VGG16 has no calibrated default.
    # CLIP ViT-B/32 (clip-vit-b-32): likewise, its real weights (open_clip's download) cannot be
    # had on the offline machine where calibrations run; random ones calibrate nothing.
}


# (model name, weights prefix, descriptor recipe label) -> measured default, for databases made
# with another recipe than the classic vector (benchmarks/README.md, "Descriptor recipes").
CALIBRATED_RECIPES: dict[tuple[str, str, str], dict[str, Any]] = {
    # the same 166-image set, R-MAC on OpenVINO fp32 (same vectors as PyTorch): raw pair precision
    # 0.995, recall 0.977; groups 1.000 / 0.987 (check set: 1.000 / 1.000 raw pairs).
    ("efficientnet-lite0", "pretrained", "rmac"): {
        "threshold": 0.60, "precision": 0.995, "recall": 0.977, "ari": 0.993, "measured": "2026-12-03",
    },
}


class ThresholdError(SimilarImagesError):
    """No calibrated threshold for a model, or a threshold out of range."""


def calibrated(model: dict[str, Any]) -> dict[str, Any] | None:
    """The calibration record of ``model`` (a manifest's model description), or None.

    The cosines of another descriptor recipe (``model["descriptor"]``) spread differently: such
    a database has a record only where its recipe was measured (:data:`CALIBRATED_RECIPES`).
    """
    name, weights = str(model.get("name", "")), str(model.get("weights", ""))
    if model.get("descriptor"):
        from similar_images.models.descriptors import Descriptor

        label = Descriptor.from_description(model["descriptor"]).label
        return next((record for (known, prefix, recipe), record in CALIBRATED_RECIPES.items()
                     if name == known and weights.startswith(prefix) and recipe == label), None)
    for (known, prefix), record in CALIBRATED.items():
        if name == known and weights.startswith(prefix):
            return record
    return None


def resolve_threshold(threshold: float | str, model: dict[str, Any]) -> float:
    """A cosine threshold: ``threshold`` itself, or the calibrated one for ``"auto"``.

    Raises:
        ThresholdError: ``"auto"`` for a model without a calibration, or a number
            outside ``[-1, 1]``.
    """
    if isinstance(threshold, str):
        if threshold.strip().lower() != AUTO:
            try:
                threshold = float(threshold)
            except ValueError:
                raise ThresholdError(f"threshold {threshold!r} is neither a cosine nor 'auto'") from None
        else:
            record = calibrated(model)
            if record is None:
                raise ThresholdError(
                    f"no calibrated duplicate threshold for model {model.get('name')!r} with weights "
                    f"{model.get('weights')!r}; give a cosine, e.g. --threshold 0.9")
            return float(record["threshold"])
    if not -1.0 <= float(threshold) <= 1.0:
        raise ThresholdError(f"a cosine threshold lies in [-1, 1], got {threshold}")
    return float(threshold)


class CurvePoint(NamedTuple):
    threshold: float
    precision: float
    recall: float


def pair_counts(predicted: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """``(true positives, predicted pairs, true pairs)`` of two labelings of the same items,
    from their contingency table (no pair list)."""
    _, p = np.unique(predicted, return_inverse=True)
    _, t = np.unique(truth, return_inverse=True)
    cells = np.unique(p.astype(np.int64) * (int(t.max()) + 1) + t, return_counts=True)[1]

    def pairs(counts):
        return int((counts * (counts - 1) // 2).sum())

    return pairs(cells), pairs(np.bincount(p)), pairs(np.bincount(t))


def precision_recall(tp: int, predicted: int, true: int) -> tuple[float, float]:
    """Precision (1.0 when nothing is predicted) and recall (1.0 when nothing is true)."""
    return (tp / predicted if predicted else 1.0), (tp / true if true else 1.0)


def score_curve(scores: np.ndarray, positive: np.ndarray, thresholds) -> list[CurvePoint]:
    """Precision/recall of "a pair scoring at least t is a duplicate" for each threshold."""
    pos = scores[positive]
    neg = scores[~positive]
    out = []
    for t in thresholds:
        tp, fp = int((pos >= t).sum()), int((neg >= t).sum())
        out.append(CurvePoint(float(t), *precision_recall(tp, tp + fp, len(pos))))
    return out


def f_beta(point: CurvePoint, beta: float) -> float:
    p, r = point.precision, point.recall
    return (1 + beta**2) * p * r / (beta**2 * p + r) if p + r else 0.0


def choose_threshold(*curves: list[CurvePoint], target: float = TARGET_PRECISION, beta: float = BETA) -> float | None:
    """The threshold of the curves (same thresholds, ascending) with the best F-beta of the
    last curve, among those where every curve's precision is at least ``target`` there and
    at every higher threshold; ties go to the lowest. None if no threshold qualifies.

    ``beta`` < 1 weighs precision above recall: the lowest qualifying threshold would sit
    right at the target with no margin for the near-misses of a larger collection.
    """
    qualifying = []
    for points in zip(*(reversed(c) for c in curves)):
        if not all(p.precision >= target for p in points):
            break
        qualifying.append(points[-1])
    if not qualifying:
        return None
    best = max(f_beta(p, beta) for p in qualifying)
    return min(p.threshold for p in qualifying if f_beta(p, beta) >= best - 1e-12)
