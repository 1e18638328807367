"""models/vgg16_torch.py on the CPU: the torch port gives the Keras model's features."""

from __future__ import annotations

import numpy as np
import pytest

from similar_images.errors import ModelError
from similar_images.models import vgg16, vgg16_torch


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def photos():
    """Four real photos (skimage) and a noise image at 224x224: (5, 224, 224, 3) uint8."""
    import skimage.data
    from PIL import Image

    from similar_images.images import load_for_model

    names = ("astronaut", "coffee", "chelsea", "rocket")
    images = [load_for_model(Image.fromarray(getattr(skimage.data, n)()), (224, 224)) for n in names]
    images.append(np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8))
    return np.stack(images)


def small_vgg(seed: int = 0):
    """A tiny VGG-shaped Keras model (two blocks, two dense layers) with seeded weights: the
    layer mapping, fc1's row order among them, checked in a second."""
    import keras
    from keras import layers

    x = inputs = keras.Input(shape=(16, 12, 3))
    for filters in (4, 6):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2, strides=2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(10, activation="relu")(x)
    x = layers.Dense(8, activation="relu")(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


def test_port_of_a_small_vgg_matches_keras_including_the_flatten_order():
    import torch

    model = small_vgg()
    x = np.random.default_rng(1).normal(0, 1, (3, 16, 12, 3)).astype(np.float32)  # (n, h, w, c)
    expected = model.predict(x, verbose=0)
    network = vgg16_torch.from_keras(model)
    with torch.no_grad():
        got = network(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-5)
    plan, _ = vgg16_torch.convert(model)
    assert [kind for kind, _ in plan] == ["conv", "pool", "conv", "pool", "flatten", "dense", "dense"]


def test_port_refuses_layers_it_does_not_know():
    import keras
    from keras import layers

    inputs = keras.Input(shape=(8, 8, 3))
    model = keras.Model(inputs, layers.BatchNormalization(name="bn")(layers.Conv2D(2, 3, padding="same",
                                                                                   activation="relu")(inputs)))
    with pytest.raises(ModelError, match="cannot run layer 'bn' \\(BatchNormalization\\) in torch"):
        vgg16_torch.convert(model)


@pytest.mark.slow  # builds the 134 M-weight VGG16 in Keras and in torch (~30 s on 2 cores)
def test_torch_vgg16_gives_the_keras_features_on_real_photos(photos):
    keras_extractor = vgg16.create(weights="none", device="cpu")
    port = vgg16_torch.TorchVGG16Extractor(vgg16_torch.from_keras(keras_extractor._model),
                                           keras_extractor.describe(), device="cpu")
    assert (port.name, port.input_size, port.dim) == ("vgg16", (224, 224), 4096)
    expected, got = keras_extractor.embed(photos), port.embed(photos)
    assert got.shape == (5, 4096) and got.dtype == np.float32
    assert cosines(got, expected).min() >= 0.9999
    assert np.abs(got - expected).max() <= 1e-3 * np.abs(expected).max()
    with pytest.raises(ValueError, match="expected a batch of shape"):
        port.embed(photos[:, :100])


def test_device_preprocessing_equals_the_keras_and_numpy_ones(photos):
    """What the CUDA paths run, here on the CPU: the same values as the CPU preprocessing."""
    from similar_images.models import efficientnet

    port = vgg16_torch.TorchVGG16Extractor(None, {"name": "vgg16", "input_size": [224, 224], "dim": 4096})
    assert np.allclose(port._preprocess(photos).numpy(), vgg16.preprocess(photos).transpose(0, 3, 1, 2),
                       rtol=0, atol=1e-4)
    assert np.array_equal(efficientnet.preprocess_on(photos, "cpu").numpy(), efficientnet.preprocess(photos))
