"""What a score means, per model: a plain verdict ("same photo", "similar", "unrelated").

A cosine of 0.27 and one of 0.93 look alike in a ranked list; their meaning depends on
the model. The bands below were measured by ``benchmarks/score_bands.py`` on photos that
ship offline (docs/search.md, "What a score means"):

* "same photo" from the model's duplicate threshold up: the "is an edited copy of" curve
  of ``similar_images.duplicates.threshold`` (crops, flips, resizes, recompression,
  rotation, tone, grayscale, a caption);
* "unrelated" below the 99th percentile of the scores of pairs of *different* photos;
* "similar" between: different photos of the same kind (two textures, two portraits,
  two space pictures) land there, and so do heavily edited copies.

A model without a measurement (VGG16: only random weights are available offline, their
cosines are all above 0.8), or with another descriptor recipe than its classic vector, gets
no verdict (None) rather than a wrong one.
"""

from __future__ import annotations

from typing import Any, NamedTuple

SAME_PHOTO, SIMILAR, UNRELATED = "same photo", "similar", "unrelated"
VERDICTS = (SAME_PHOTO, SIMILAR, UNRELATED)
NO_CLOSE_MATCH = "no close match in this collection"


class Bands(NamedTuple):
    """Lowest score of "same photo" and of "similar"; below ``similar``: "unrelated"."""

    same_photo: float
    similar: float


# (model name, weights prefix) -> bands; weights are matched by prefix as the duplicate
# thresholds are (the pretrained EfficientNet's file name follows "pretrained:").
# The same weights on OpenVINO or INT8 share the bands (their cosines to fp32 >= 0.99).
MEASURED: dict[tuple[str, str], Bands] = {
    # 2026-12-03, benchmarks/score_bands.py: 166 images of 30 photos (17 demo photos with
    # 8 edits each, 13 unrelated images). Same-photo pairs (612): min 0.445, 6.1% below
    # 0.64, none below 0.40. Different-photo pairs (13,083): median 0.172, 1.15% at 0.40 or
    # more, max 0.636 (grass vs gravel, both rotated). The same-photo bound is the
    # duplicate threshold (tests/test_score_bands.py checks they agree).
    ("efficientnet-lite0", "pretrained"): Bands(same_photo=0.64, similar=0.40),
}


def bands_for(model: dict[str, Any] | None) -> Bands | None:
    """The bands of ``model`` (a manifest's model description), or None if unmeasured.

    The bands were measured on each model's classic vector: a database made with another
    descriptor recipe (``model["descriptor"]``; its cosines spread differently) has none.
    """
    if not model or model.get("descriptor"):
        return None
    name, weights = str(model.get("name", "")), str(model.get("weights", ""))
    for (known, prefix), bands in MEASURED.items():
        if name == known and weights.startswith(prefix):
            return bands
    return None


def verdict(score: float, bands: Bands | None) -> str | None:
    """The verdict of one score (None without bands)."""
    if bands is None:
        return None
    if score >= bands.same_photo:
        return SAME_PHOTO
    return SIMILAR if score >= bands.similar else UNRELATED


def verdicts(scores, bands: Bands | None) -> list[str | None]:
    """The verdicts of a ranked list of scores."""
    return [verdict(float(s), bands) for s in scores]


def no_close_match(scores, bands: Bands | None) -> bool | None:
    """True when even the best score is "unrelated" (or there is none); None without bands."""
    if bands is None:
        return None
    best = max((float(s) for s in scores), default=None)
    return best is None or verdict(best, bands) == UNRELATED
