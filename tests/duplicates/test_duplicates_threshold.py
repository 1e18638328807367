"""duplicates/threshold.py and calibration.py: the curve math, the choice of the default
threshold, its lookup per model, and the generated set."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from similar_images.duplicates import calibration
from similar_images.duplicates.threshold import (
    CurvePoint,
    ThresholdError,
    choose_threshold,
    pair_counts,
    resolve_threshold,
    score_curve,
)

EFFNET = {"name": "efficientnet-lite0", "weights": "pretrained:efficientnet-lite0-57934424.pth"}


def test_pair_counts_match_counting_every_pair():
    rng = np.random.default_rng(0)
    predicted, truth = rng.integers(0, 5, 40), rng.integers(0, 7, 40)
    pairs = list(itertools.combinations(range(40), 2))
    tp = sum(predicted[i] == predicted[j] and truth[i] == truth[j] for i, j in pairs)
    assert pair_counts(predicted, truth) == (tp, sum(predicted[i] == predicted[j] for i, j in pairs),
                                             sum(truth[i] == truth[j] for i, j in pairs))


def test_score_curve():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    positive = np.array([True, False, True, False])
    curve = score_curve(scores, positive, [0.65, 0.75, 0.95])
    assert curve == [CurvePoint(0.65, 2 / 3, 1.0), CurvePoint(0.75, 0.5, 0.5), CurvePoint(0.95, 1.0, 0.0)]


def test_choose_threshold_needs_the_target_at_and_above_and_prefers_precision():
    t = [0.5, 0.6, 0.7, 0.8, 0.9]
    raw = [CurvePoint(x, p, r) for x, p, r in zip(t, [0.90, 0.96, 0.94, 1.0, 1.0], [1.0, 0.99, 0.97, 0.9, 0.5])]
    assert choose_threshold(raw) == 0.8  # 0.6 reaches 0.95, but 0.7 above it does not
    grouped = [CurvePoint(x, p, r) for x, p, r in zip(t, [1.0, 1.0, 1.0, 0.97, 1.0], [1.0, 1.0, 1.0, 0.95, 0.94])]
    # both curves must qualify; F0.5 of the last curve picks among 0.8 and 0.9
    assert choose_threshold(raw, grouped) == 0.9
    assert choose_threshold([CurvePoint(0.9, 0.5, 1.0)]) is None


def test_resolve_threshold():
    assert resolve_threshold(0.8, EFFNET) == 0.8
    assert resolve_threshold("0.7", EFFNET) == 0.7
    assert 0.3 < resolve_threshold("auto", EFFNET) < 1.0
    assert resolve_threshold("AUTO", {**EFFNET, "runtime": "openvino"}) == resolve_threshold("auto", EFFNET)
    with pytest.raises(ThresholdError, match="'vgg16'"):
        resolve_threshold("auto", {"name": "vgg16", "weights": "imagenet"})
    with pytest.raises(ThresholdError, match=r"\[-1, 1\]"):
        resolve_threshold(1.5, EFFNET)
    with pytest.raises(ThresholdError, match="neither"):
        resolve_threshold("high", EFFNET)


def test_curves_on_vectors_with_known_groups_choose_a_separating_threshold(tmp_path):
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((10, 64))
    labels = np.repeat(np.arange(10), 4)
    vectors = centres[labels] + 0.3 * rng.standard_normal((40, 64))  # copies score ~0.9, others ~0
    vectors = np.concatenate([vectors, rng.standard_normal((20, 64))])
    labels = np.concatenate([labels, 100 + np.arange(20)])
    cal = calibration.curves(vectors.astype(np.float32), labels)
    assert cal.chosen is not None and 0.3 <= cal.chosen < 0.9
    at = cal.at(cal.chosen)
    assert at["group_precision"] == 1.0 and at["group_recall"] == 1.0 and at["ari"] == pytest.approx(1.0)
    assert [p.threshold for p in cal.scores] == [p.threshold for p in cal.grouped]
    png = calibration.plot_curves(tmp_path / "pr.png", {"synthetic": cal})
    with Image.open(png) as img:
        assert img.format == "PNG" and img.width > 300


def test_generated_set_has_photos_their_edits_and_unrelated_photos(tmp_path):
    names = calibration.write_generated_set(tmp_path, photos=["coffee", "rocket"], unrelated=["clock", "page"],
                                            show_progress=False)
    from similar_images import edits

    assert len(names) == 2 * (1 + len(edits.EDITS)) + 2
    assert "coffee__hflip.jpg" in names and "other_clock.jpg" in names
    groups = calibration.truth(names)
    assert len(set(groups.tolist())) == 4  # two photo groups, two unrelated photos alone
    with Image.open(tmp_path / "other_page.jpg") as img:
        assert img.mode == "RGB"
    with pytest.raises(ValueError, match="robustness, sample"):
        calibration.write_generated_set(tmp_path, edit_set="blur")
