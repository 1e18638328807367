"""Descriptor recipes: the poolings on known maps, the R-MAC regions, scales, and the
recipe as the models record it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from similar_images.models.descriptors import (
    Descriptor,
    parse_scales,
    pool,
    pooled_network,
    rmac_regions,
)


def _maps(seed: int = 0, shape=(3, 8, 7, 7)) -> torch.Tensor:
    """Non-negative maps, as after a ReLU: ``(n, c, h, w)``."""
    return torch.from_numpy(np.random.default_rng(seed).uniform(0, 4, shape).astype(np.float32))


def test_gem_with_p_1_is_average_pooling():
    maps = _maps()
    assert torch.allclose(pool(maps, Descriptor("gem", gem_p=1)), pool(maps, Descriptor("avg")), atol=1e-5)


def test_gem_approaches_max_pooling_as_p_grows():
    maps = _maps()
    top = pool(maps, Descriptor("max"))
    gaps = [float((top - pool(maps.double(), Descriptor("gem", gem_p=p))).abs().max()) for p in (3, 10, 50)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.1 * float(top.max())  # (mean x^50)^(1/50) >= max * 49^(-1/50) = 0.92 max


def test_max_and_average_pooling_on_a_known_map():
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, 1, 2] = 8.0
    maps[0, 1] = 1.0
    assert pool(maps, Descriptor("max")).tolist() == [[8.0, 1.0]]
    assert pool(maps, Descriptor("avg")).tolist() == [[0.5, 1.0]]


def test_rmac_regions_of_square_maps():
    assert rmac_regions(7, 7) == [(0, 0, 7),
                                  (0, 0, 4), (0, 3, 4), (3, 0, 4), (3, 3, 4),
                                  (0, 0, 3), (0, 2, 3), (0, 4, 3), (2, 0, 3), (2, 2, 3), (2, 4, 3),
                                  (4, 0, 3), (4, 2, 3), (4, 4, 3)]
    for side in (5, 14):
        regions = rmac_regions(side, side)
        assert len(regions) == 14
        assert all(top + s <= side and left + s <= side for top, left, s in regions)


def test_rmac_regions_of_a_wide_map_cover_its_long_side():
    regions = rmac_regions(5, 9)
    assert {s for _, _, s in regions} == {5, 3, 2}
    assert max(left + s for _, left, s in regions) == 9 and min(left for _, left, _ in regions) == 0
    assert all(top + s <= 5 for top, _, s in regions)


def test_rmac_on_a_known_map_sums_normalised_region_maxima():
    # channel 0 peaks in the top-left corner, channel 1 in the bottom-right one
    maps = torch.zeros(1, 2, 7, 7)
    maps[0, 0, 0, 0] = 5.0
    maps[0, 1, 6, 6] = 2.0
    # The whole map (one region) sees both peaks: (5, 2) / sqrt(29). Of the 4 x 4 and 3 x 3 regions,
    # (0, 0, 4) and (0, 0, 3) hold only peak 0 -> (1, 0) each; (3, 3, 4) and (4, 4, 3) only
    # peak 1 -> (0, 1) each; the others hold neither and add nothing.
    expected = np.array([5, 2]) / np.sqrt(29) + np.array([2, 2])
    np.testing.assert_allclose(pool(maps, Descriptor("rmac"))[0].numpy(), expected, rtol=1e-5)


def test_scales_sum_normalised_vectors_of_each_scale():
    backbone = torch.nn.Conv2d(3, 4, 3, padding=1)
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    one = pooled_network(backbone, Descriptor("max"))(x)
    two = pooled_network(backbone, Descriptor("max", scales=(1.0, 0.5)))(x)
    half = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    expected = (torch.nn.functional.normalize(one, dim=1)
                + torch.nn.functional.normalize(pool(backbone(half), Descriptor("max")), dim=1))
    assert torch.allclose(two, expected, atol=1e-5)


def test_a_recipe_round_trips_through_its_description():
    for recipe in (Descriptor("gem", gem_p=4.5, scales=(1.0, 0.707)), Descriptor("rmac", whiten=True),
                   Descriptor("avg", scales=(1.0, 0.5))):
        assert Descriptor.from_description(recipe.describe()) == recipe
    assert Descriptor().describe() is None and Descriptor.from_description(None) == Descriptor()
    assert Descriptor("gem", scales=(1, 0.707), whiten=True).label == "gem3+s1,0.707+w"


@pytest.mark.parametrize("bad", [{"pooling": "sum"}, {"gem_p": 0}, {"scales": ()}, {"scales": (1.0, 1.0)},
                                 {"scales": (5.0,)}])
def test_bad_recipes_are_refused_with_the_valid_choices(bad):
    with pytest.raises(ValueError, match="pooling|p must|scales"):
        Descriptor(**bad)
    with pytest.raises(ValueError, match="numbers"):
        parse_scales("1,half")


def test_efficientnet_records_its_recipe_and_keeps_the_classic_vector():
    from similar_images.models import efficientnet

    batch = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    classic = efficientnet.create(weights="none")
    assert "descriptor" not in classic.describe()  # databases made before recipes describe the same
    gem1 = efficientnet.create(weights="none", descriptor=Descriptor("gem", gem_p=1))
    assert gem1.describe()["descriptor"] == {"pooling": "gem", "gem_p": 1.0, "scales": [1.0], "whiten": False}
    np.testing.assert_allclose(gem1.embed(batch), classic.embed(batch), atol=1e-4)


def test_measured_thresholds_and_score_bands_belong_to_the_recipe_they_were_measured_on():
    from similar_images.duplicates.threshold import calibrated
    from similar_images.models.score_bands import bands_for

    classic = {"name": "efficientnet-lite0", "weights": "pretrained:efficientnet_lite0.pth"}
    recipe = {**classic, "descriptor": Descriptor("rmac").describe()}
    assert calibrated(classic) is not None and bands_for(classic) is not None
    gem = {**classic, "descriptor": Descriptor("gem").describe()}
    assert calibrated(gem) is None and bands_for(gem) is None  # its cosines spread differently
    assert calibrated(recipe)["threshold"] == 0.60 and bands_for(recipe) is None  # R-MAC: measured
    assert calibrated({**recipe, "descriptor": Descriptor("rmac", whiten=True).describe()}) is None


def test_a_ray_actor_rebuilds_the_drivers_recipe():
    from similar_images.cluster.recipes import recipe_for
    from similar_images.features import get_extractor

    options = {"weights": "none", "descriptor": Descriptor("rmac", scales=(1.0, 0.707), whiten=True)}
    driver = get_extractor("efficientnet-lite0", **options)
    recipe = recipe_for(driver, "efficientnet-lite0", dict(options))
    assert recipe.build().describe() == driver.describe()  # the actor checks it too (expected=)
