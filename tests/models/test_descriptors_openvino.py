"""Descriptor recipes on OpenVINO: the pooling and scales are in the converted graph, so fp32
matches the native model and INT8 is calibrated and checked on the recipe's own vectors."""

from __future__ import annotations

import numpy as np
import pytest

from similar_images.demo import sample_photos
from similar_images.features import get_extractor
from similar_images.models.descriptors import Descriptor

pytestmark = pytest.mark.slow

RECIPE = Descriptor("rmac", scales=(1.0, 0.707))


def _cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _photos(size=(224, 224)):
    from similar_images.images import prepare_batch

    return prepare_batch([sample_photos.load_photo(name) for name in list(sample_photos.PHOTOS)[:6]], size)


def test_openvino_fp32_runs_the_recipe_in_its_graph():
    batch = _photos()
    native = get_extractor("efficientnet-lite0", descriptor=RECIPE)
    openvino = get_extractor("efficientnet-lite0", descriptor=RECIPE, runtime="openvino", batch_size=4,
                             show_progress=False)
    assert openvino.describe()["descriptor"] == native.describe()["descriptor"] == RECIPE.describe()
    assert _cosines(openvino.embed(batch), native.embed(batch)).min() >= 0.9999


def test_int8_is_calibrated_and_checked_on_the_recipes_vectors(tmp_path):
    names = sample_photos.write_collection(tmp_path, edits=("crop", "flip"), show_progress=False)
    int8 = get_extractor("efficientnet-lite0", descriptor=RECIPE, runtime="openvino", precision="int8",
                         batch_size=4, calibration_paths=[tmp_path / n for n in names], calibration_size=24,
                         holdout_size=16, force_int8=True, show_progress=False)
    described = int8.describe()
    assert described["descriptor"] == RECIPE.describe() and described["precision"] == "int8"
    # the guard's report compares this recipe's INT8 vectors with its fp32 ones: recompute it
    batch = _photos()
    fp32 = get_extractor("efficientnet-lite0", descriptor=RECIPE).embed(batch)
    assert int8.fidelity["images"] == 16 and int8.fidelity["cosine_mean"] > 0.9
    assert _cosines(int8.embed(batch), fp32).mean() > 0.9
    classic = get_extractor("efficientnet-lite0", runtime="openvino", precision="int8", batch_size=4,
                            calibration=None, calibration_paths=[tmp_path / n for n in names],
                            calibration_size=24, holdout_size=16, force_int8=True, show_progress=False)
    assert classic.model_folder != int8.model_folder  # one quantised model per recipe, never shared
