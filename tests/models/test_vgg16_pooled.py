"""VGG16 with a descriptor recipe: block5_conv3 of the Keras model, pooled (random seeded
weights offline: the ImageNet weights cannot be downloaded here, so only the wiring is tested)."""

from __future__ import annotations

import numpy as np
import pytest

from similar_images.models import vgg16
from similar_images.models.descriptors import Descriptor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def keras_model():
    return vgg16.load_native(weights="none", seed=0)


def _block5_conv3(keras_model, batch):
    import keras

    part = keras.Model(keras_model.inputs, keras_model.get_layer("block5_conv3").output)
    return np.asarray(part(vgg16.preprocess(batch)))  # (n, 14, 14, 512)


def test_a_pooled_vgg16_pools_the_keras_block5_conv3_map(keras_model):
    batch = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    maps = _block5_conv3(keras_model, batch).astype(np.float64)
    extractor = vgg16.create(weights="none", descriptor=Descriptor("gem", gem_p=3))
    expected = np.power(np.power(np.maximum(maps, 1e-6), 3).mean(axis=(1, 2)), 1 / 3)  # (n, 512)
    got = extractor.embed(batch)
    assert got.shape == (2, 512) and extractor.dim == 512
    cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.9999
    described = extractor.describe()
    assert described["layer"] == "block5_conv3" and described["dim"] == 512
    assert described["descriptor"]["pooling"] == "gem" and described["weights"] == "none(seed=0)"


def test_vgg16_avg_on_one_scale_is_still_fc2():
    extractor = vgg16.create(weights="none")
    assert extractor.dim == 4096 and extractor.describe()["layer"] == "fc2"
    assert "descriptor" not in extractor.describe()
    whitened = vgg16.create(weights="none", descriptor=Descriptor(whiten=True))
    assert whitened.describe()["layer"] == "fc2" and whitened.describe()["descriptor"]["whiten"] is True
