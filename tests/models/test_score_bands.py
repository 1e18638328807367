"""The verdict bands: per model, matching the duplicate thresholds, None when unmeasured."""

from __future__ import annotations

from similar_images.duplicates.threshold import CALIBRATED
from similar_images.models import score_bands as sb

EFFICIENTNET = {"name": "efficientnet-lite0", "weights": "pretrained:efficientnet_lite0.pth", "runtime": "openvino"}


def test_bands_of_a_measured_model_give_three_verdicts():
    bands = sb.bands_for(EFFICIENTNET)
    assert bands is not None and bands.similar < bands.same_photo
    assert sb.verdicts([1.0, bands.same_photo, bands.same_photo - 0.01, bands.similar, bands.similar - 0.01, -0.2],
                       bands) == ["same photo", "same photo", "similar", "similar", "unrelated", "unrelated"]


def test_no_close_match_when_even_the_first_is_unrelated():
    bands = sb.bands_for(EFFICIENTNET)
    assert sb.no_close_match([0.3, 0.2], bands) is True
    assert sb.no_close_match([0.5, 0.2], bands) is False
    assert sb.no_close_match([], bands) is True


def test_unmeasured_models_get_no_verdict():
    for model in ({"name": "vgg16", "weights": "none(seed=0)"}, {"name": "tiny", "weights": "x"}, {}, None):
        bands = sb.bands_for(model)
        assert bands is None and sb.verdict(0.99, bands) is None and sb.no_close_match([0.1], bands) is None


def test_same_photo_starts_at_the_duplicate_threshold():
    """One measured boundary, two uses: "same photo" is the duplicate finder's edited copy."""
    for (name, prefix), bands in sb.MEASURED.items():
        assert CALIBRATED[(name, prefix)]["threshold"] == bands.same_photo
