"""How faithful INT8 features are to fp32 ones: the report, and the refusal below a threshold.

Two numbers matter for similarity search: how close each INT8 vector is to its fp32
vector (cosine, min and mean over images) and whether the neighbours stay the same
(top-10 agreement: for each image, the share of its 10 nearest neighbours among the
other images, by cosine, that fp32 and INT8 have in common).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from similar_images.errors import ModelError

log = logging.getLogger(__name__)

TOP_K = 10


def int8_vs_fp32_report(fp32: np.ndarray, int8: np.ndarray, k: int = TOP_K) -> dict[str, Any]:
    """Compare INT8 features with fp32 ones for the same images.

    Args:
        fp32, int8: ``(n, dim)`` features of the same ``n`` images, ``n > k``.

    Returns:
        ``images``, ``cosine_min``, ``cosine_mean`` (INT8 vs fp32 per image) and
        ``top10_agreement``: mean share of each image's ``k`` nearest neighbours
        (cosine, among the other images) that both precisions agree on.
    """
    a, b = _unit(fp32), _unit(int8)  # (n, dim) L2-normalised
    cosine = (a * b).sum(axis=1)  # (n,)
    if len(a) <= k:
        raise ValueError(f"top-{k} agreement needs more than {k} images, got {len(a)}")
    agree = np.mean([len(set(x) & set(y)) / k for x, y in zip(_top_k(a, k), _top_k(b, k))])
    return {
        "images": int(len(a)),
        "cosine_min": round(float(cosine.min()), 5),
        "cosine_mean": round(float(cosine.mean()), 5),
        "top10_agreement": round(float(agree), 4),
    }


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _top_k(unit: np.ndarray, k: int) -> np.ndarray:
    scores = unit @ unit.T  # (n, n) cosine
    np.fill_diagonal(scores, -np.inf)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (n, k)


def format_report(report: dict[str, Any]) -> str:
    return (
        f"on {report['images']} held-out images, cosine to fp32 min {report['cosine_min']:.4f} "
        f"mean {report['cosine_mean']:.4f}, top-10 neighbour agreement {report['top10_agreement']:.3f}"
    )


def check_fidelity(name: str, report: dict[str, Any], *, min_agreement: float, force: bool) -> None:
    """Raise :class:`ModelError` when INT8 agrees too little with fp32 (unless ``force``)."""
    agreement = report["top10_agreement"]
    if agreement >= min_agreement:
        return
    if force:
        log.warning("%s INT8 below the fidelity threshold (%.3f < %.2f), used anyway (forced)",
                    name, agreement, min_agreement)
        return
    raise ModelError(
        f"INT8 refused for {name}: top-10 neighbour agreement with fp32 {agreement:.3f} is below "
        f"{min_agreement:.2f} ({format_report(report)}); use --precision fp32, or --force-int8 to use it anyway"
    )


