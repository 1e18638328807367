"""models/vgg16.py with seeded random weights (ImageNet weights cannot be downloaded here)."""

from __future__ import annotations

import numpy as np
import pytest

from similar_images.errors import ModelError
from similar_images.features import FeatureExtractor, get_extractor
from similar_images.models import vgg16


@pytest.fixture(scope="module")
def extractor():
    return vgg16.create(weights="none")


@pytest.fixture(scope="module")
def photos():
    """Four real photos (skimage), resized to 224x224: (4, 224, 224, 3) uint8."""
    import skimage.data
    from PIL import Image

    from similar_images.images import load_for_model

    names = ("astronaut", "coffee", "chelsea", "rocket")
    return np.stack([load_for_model(Image.fromarray(getattr(skimage.data, n)()), (224, 224)) for n in names])


def test_interface_shape_and_dtype(extractor, photos):
    assert isinstance(extractor, FeatureExtractor)
    assert (extractor.name, extractor.input_size, extractor.dim) == ("vgg16", (224, 224), 4096)
    vectors = extractor.embed(photos)
    assert vectors.shape == (4, 4096) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all() and (vectors >= 0).all()  # fc2 ends in ReLU
    assert 0.05 < (vectors > 0).mean() < 0.95  # random weights still give informative features
    assert 0.01 < vectors.mean() < 100  # order 1, like ImageNet features
    assert not np.allclose(vectors[0], vectors[1])


def test_describe_records_random_weights(extractor):
    described = extractor.describe()
    assert described["name"] == "vgg16" and described["weights"] == "none(seed=0)"
    assert described["dim"] == 4096 and described["input_size"] == [224, 224]
    assert described["runtime"] == "native" and described["precision"] == "fp32"
    assert described["layer"] == "fc2"


@pytest.mark.slow  # builds two more models
def test_random_weights_are_fixed_by_the_seed_not_by_tensorflow(extractor, photos):
    import tensorflow as tf

    tf.random.set_seed(12345)  # must not matter
    again = vgg16.create(weights="none", seed=0)
    assert np.array_equal(again.embed(photos[:2]), extractor.embed(photos[:2]))
    other = vgg16.load_native(weights="none", seed=1)
    first = extractor._model.get_layer("block1_conv1").get_weights()[0]
    assert not np.array_equal(other.get_layer("block1_conv1").get_weights()[0], first)
    # the exact values come from numpy's PCG64 stream: pin a few so a change is noticed
    rng = np.random.default_rng(0)
    draws = rng.integers(-127, 128, size=(3, 3, 3, 64), dtype=np.int8).astype(np.float32)
    scale = np.float32(np.sqrt(2.0 / 27) * np.sqrt(3.0) / 127.0) / np.float32(64.0)
    assert np.array_equal(first, draws * scale)


def test_get_extractor_builds_it_by_name(photos):
    built = get_extractor("vgg16", weights="none", seed=0)
    assert built.describe()["weights"] == "none(seed=0)"


def test_embed_equals_preprocess_then_model(extractor, photos):
    manual = extractor._model(vgg16.preprocess(photos[:2]), training=False).numpy()
    assert np.allclose(extractor.embed(photos[:2]), manual, atol=1e-5)


def test_preprocess_is_vgg16_caffe_mode():
    pixel = np.zeros((1, 1, 1, 3), dtype=np.uint8)
    pixel[..., 0] = 255  # pure red
    out = vgg16.preprocess(pixel)
    assert out.dtype == np.float32
    assert np.allclose(out[0, 0, 0], [0 - 103.939, 0 - 116.779, 255 - 123.68], atol=1e-3)  # BGR - mean


def test_batches_of_any_size_agree(extractor, photos, monkeypatch):
    whole = extractor.embed(photos)
    monkeypatch.setattr(vgg16, "MAX_BATCH", 3)  # forces two model calls inside embed
    split = extractor.embed(photos)
    one = extractor.embed(photos[2:3])
    assert np.allclose(whole, split, atol=1e-3) and np.allclose(whole[2], one[0], atol=1e-3)
    assert extractor.embed(photos[:0]).shape == (0, 4096)


def test_wrong_input_shape_is_refused(extractor):
    with pytest.raises(ValueError, match="224, 224, 3"):
        extractor.embed(np.zeros((1, 100, 100, 3), dtype=np.uint8))


def test_bad_options():
    with pytest.raises(ValueError, match="native, openvino"):
        vgg16.create(weights="none", runtime="onnx")
    with pytest.raises(ValueError, match="fp32"):
        vgg16.create(weights="none", precision="int8")
    with pytest.raises(ModelError, match="not found"):
        vgg16.create(weights="/nonexistent/weights.h5")


def test_imagenet_download_failure_says_what_to_do(tmp_path, monkeypatch):
    """Offline: Keras' real download code fails fast against a closed local port."""
    import keras.src.applications.vgg16 as keras_vgg16
    from keras.src.backend import config

    monkeypatch.setattr(keras_vgg16, "WEIGHTS_PATH", "http://127.0.0.1:1/vgg16.h5")
    monkeypatch.setattr(config, "keras_home", lambda: str(tmp_path / "keras"))
    with pytest.raises(ModelError) as info:
        vgg16.create(weights="imagenet", model_file=tmp_path / "vgg_4096.h5")
    message = str(info.value)
    assert "--weights none" in message and "efficientnet-lite0" in message and "\n" not in message
    assert not (tmp_path / "vgg_4096.h5").exists()


@pytest.mark.slow
def test_imagenet_model_is_cached_and_files_load(tmp_path, monkeypatch, extractor, photos):
    """First use saves the cut model (atomically); later uses load it; --weights PATH
    loads a model file or a weights file.

    The download is replaced by a full VGG16 (with its 1000-class top) holding the
    seeded random weights, since ImageNet weights cannot be fetched here.
    """
    import keras

    random_cut = vgg16.load_native(weights="none", seed=0)

    def full_model():  # Keras' VGG16 with its 1000-class top, holding the seeded weights
        full = keras.applications.VGG16(weights=None, include_top=True)
        for layer in random_cut.layers:
            if layer.weights:
                full.get_layer(layer.name).set_weights(layer.get_weights())
        return full

    cache = tmp_path / "vgg_4096.h5"
    monkeypatch.setattr(vgg16, "_download_imagenet", full_model)
    first = vgg16.create(weights="imagenet", model_file=cache)
    assert cache.is_file() and list(tmp_path.glob(".*")) == []  # no temporary left behind
    assert first.describe()["weights"] == "imagenet"
    expected = extractor.embed(photos[:2])
    assert np.allclose(first.embed(photos[:2]), expected, atol=1e-4)

    def no_download():
        raise AssertionError("the cached model must be used")

    monkeypatch.setattr(vgg16, "_download_imagenet", no_download)
    cached = vgg16.create(weights="imagenet", model_file=cache)
    assert np.allclose(cached.embed(photos[:2]), expected, atol=1e-4)

    from_file = vgg16.create(weights=str(cache))  # a whole model file
    described = from_file.describe()
    assert described["weights"] == "file:vgg_4096.h5" and len(described["weights_sha256"]) == 64
    assert np.allclose(from_file.embed(photos[:2]), expected, atol=1e-4)

    weights_only = tmp_path / "vgg16.weights.h5"  # a weights file for Keras' VGG16
    full_model().save_weights(weights_only)
    from_weights = vgg16.create(weights=str(weights_only))
    assert from_weights.describe()["weights"] == "file:vgg16.weights.h5"
    assert np.allclose(from_weights.embed(photos[:2]), expected, atol=1e-4)


def test_damaged_cache_gives_a_clear_error(tmp_path):
    cache = tmp_path / "vgg_4096.h5"
    cache.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="delete it"):
        vgg16.create(weights="imagenet", model_file=cache)
