"""How an actor rebuilds the driver's model (no Ray needed)."""

from __future__ import annotations

import pytest
from _extract_data import PixelExtractor

from similar_images.cluster.recipes import ExtractorRecipe, recipe_for
from similar_images.errors import ModelError


def test_recipe_builds_the_same_model():
    driver = PixelExtractor()
    recipe = ExtractorRecipe(None, factory=PixelExtractor, expected=driver.describe())
    assert recipe.build().describe() == driver.describe()


def test_recipe_refuses_another_model():
    recipe = ExtractorRecipe(None, factory=PixelExtractor, expected={**PixelExtractor().describe(), "dim": 7})
    with pytest.raises(ModelError, match="not the driver's"):
        recipe.build()


def test_recipe_ships_files_into_a_private_cache(tmp_path):
    seen = {}

    def factory(cache_dir):
        seen["text"] = (cache_dir / "openvino-int8" / "m" / "model.xml").read_text()
        return PixelExtractor()

    ExtractorRecipe(None, files={"openvino-int8/m/model.xml": b"<xml/>"}, factory=factory).build()
    assert seen["text"] == "<xml/>"


def test_recipe_for_drops_driver_only_options():
    recipe = recipe_for(PixelExtractor(), "pixels", {"weights": "none", "calibration_paths": ["a.jpg"],
                                                     "show_progress": True})
    assert recipe.options == {"weights": "none"} and recipe.expected == PixelExtractor().describe()
