"""VGG16 cut at ``fc2``: 4096-d features, as in the original demo.

Weights (``weights=``):

* ``"imagenet"``: Keras downloads the ImageNet weights on first use; the model cut at
  ``fc2`` is then cached in ``model_file`` (``vgg_4096.h5``, like the original) and
  loaded from there afterwards.
* ``"none"``: random weights drawn from a fixed numpy seed, identical in every process
  and on every machine with the same numpy. For tests and offline CI only; recorded as
  ``"none(seed=N)"`` so such vectors are never mixed with ImageNet ones.
* a path: a Keras weights file for VGG16 (``.h5``/``.weights.h5``) or a full model
  (``.keras``/``.h5``), cut at ``fc2`` if it goes further.

:func:`load_native` and :func:`preprocess` are public for other runtimes (OpenVINO).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from similar_images.errors import ModelError
from similar_images.fileio.files import sha256_file
from similar_images.models import keras_io
from similar_images.models.descriptors import Descriptor
from similar_images.models.devices import describe_device, resolve_device
from similar_images.models.openvino_input import InputSteps
from similar_images.models.vgg16_torch import CAFFE_MEAN_BGR, tensorflow_off_the_gpu

logger = logging.getLogger(__name__)

NAME = "vgg16"
INPUT_SIZE = (224, 224)  # (height, width)
DIM = 4096
LAYER = "fc2"
DEFAULT_MODEL_FILE = "vgg_4096.h5"
RUNTIMES = ("native", "openvino")
OPENVINO_INPUT = InputSteps(layout="NHWC", reverse_channels=True, mean=CAFFE_MEAN_BGR)  # preprocess() in-graph
MAX_BATCH = 64  # images per model call; bounds activation memory (~13 MB per image)
# (block, convolutions, filters) of VGG16, as in keras.applications.VGG16
_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
_OFFLINE_HINT = (
    "use --weights none (random weights, for testing only), --weights PATH (a local "
    "VGG16 weights or model file), or --model efficientnet-lite0 (pretrained, works offline)"
)


def create(
    weights: str = "imagenet",
    model_file: str | os.PathLike | None = DEFAULT_MODEL_FILE,
    seed: int = 0,
    runtime: str = "native",
    precision: str = "fp32",
    device: str = "auto",
    descriptor: Descriptor | None = None,
    **runtime_options: Any,
):
    """Build the VGG16 fc2 extractor (or, with a ``descriptor`` pooling, block5_conv3 pooled).

    Args:
        weights: ``"imagenet"``, ``"none"`` or a path (see the module docstring).
        model_file: where the ImageNet model cut at fc2 is cached; ``None`` disables
            the cache.
        seed: numpy seed of the random weights (``weights="none"`` only).
        runtime: ``"native"`` (Keras/TensorFlow) or ``"openvino"``.
        precision: ``"fp32"`` for native; OpenVINO also offers others.
        device: ``"auto"`` (cuda when present), ``"cpu"`` or ``"cuda"``. On CUDA the
            native runtime runs a torch port of the Keras model (:mod:`~similar_images.models.vgg16_torch`),
            same weights and vectors (cosine >= 0.9999); on the CPU, Keras/TensorFlow.
        descriptor: a recipe (:mod:`~similar_images.models.descriptors`): ``avg`` on one
            scale is fc2; other poolings run :mod:`~similar_images.models.vgg16_pooled`.
        **runtime_options: passed to the OpenVINO runtime.

    Raises:
        ValueError: unknown runtime or device, or a precision the runtime lacks.
        ModelError: the weights cannot be found, downloaded or loaded; ``device="cuda"``
            without a CUDA device or with the OpenVINO runtime.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    device = resolve_device(device, runtime=runtime)
    base, descriptor = _describe_base(weights, seed), descriptor or Descriptor()
    load_keras = functools.partial(load_native, weights=weights, model_file=model_file, seed=seed)
    if device == "cuda":
        tensorflow_off_the_gpu()  # TensorFlow only holds the weights for the copy to torch
    if descriptor.pooled_network:
        from similar_images.models import vgg16_pooled

        return vgg16_pooled.create(load_keras=load_keras, describe_base=base, descriptor=descriptor,
                                   runtime=runtime, precision=precision, device=device, **runtime_options)
    base.update({"descriptor": descriptor.describe()} if descriptor.whiten else {})  # fc2, whitened
    if runtime == "openvino":
        from similar_images.models import openvino_runtime

        return openvino_runtime.create_openvino_extractor(
            name=NAME,
            native=load_keras,
            preprocess=preprocess,
            input_steps=OPENVINO_INPUT,
            input_size=INPUT_SIZE,
            dim=DIM,
            describe_base=base,
            precision=precision,
            **runtime_options,
        )
    if precision != "fp32":
        raise ValueError(f"the native runtime supports precision 'fp32' only, not {precision!r}; "
                         "use runtime 'openvino' for others")
    if runtime_options:
        raise ValueError(f"unexpected options for the native runtime: {', '.join(runtime_options)}")
    model = load_keras()
    description = {**base, "runtime": "native", "precision": "fp32"}
    if device == "cuda":
        from similar_images.models import vgg16_torch

        network = vgg16_torch.from_keras(model, device=device)
        return vgg16_torch.TorchVGG16Extractor(network, {**description, **describe_device(device),
                                                         "framework": "torch"}, device=device)
    return VGG16Extractor(model, description)


class VGG16Extractor:
    """A Keras VGG16 cut at fc2 behind the :class:`~similar_images.features.FeatureExtractor` interface."""

    name = NAME
    input_size = INPUT_SIZE
    dim = DIM
    device = "cpu"

    def __init__(self, model, description: dict[str, Any]):
        import tensorflow as tf

        self._model = model
        self._description = description
        # One traced graph for every batch size: faster than eager calls or predict().
        self._forward = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, *INPUT_SIZE, 3], tf.float32)],
        )

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """``(n, 224, 224, 3)`` uint8 RGB -> ``(n, 4096)`` float32 fc2 features."""
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[1:] != (*INPUT_SIZE, 3):
            raise ValueError(f"expected a batch of shape (n, 224, 224, 3), got {batch.shape}")
        out = np.empty((len(batch), DIM), dtype=np.float32)  # (n, 4096)
        for start in range(0, len(batch), MAX_BATCH):
            part = preprocess(batch[start : start + MAX_BATCH])  # (m, 224, 224, 3) float32
            out[start : start + len(part)] = self._forward(part).numpy()
        return out

    def describe(self) -> dict[str, Any]:
        return dict(self._description)


def preprocess(batch: np.ndarray) -> np.ndarray:
    """VGG16's ``preprocess_input``: uint8 RGB ``(n, h, w, 3)`` -> float32 BGR minus the ImageNet mean."""
    from keras.applications import vgg16

    return np.asarray(vgg16.preprocess_input(np.array(batch, dtype=np.float32)), dtype=np.float32)


def load_native(
    weights: str = "imagenet",
    model_file: str | os.PathLike | None = DEFAULT_MODEL_FILE,
    seed: int = 0,
):
    """The Keras model: preprocessed float32 ``(n, 224, 224, 3)`` -> ``(n, 4096)`` float32.

    Raises:
        ModelError: the weights cannot be found, downloaded or loaded.
    """
    if weights == "none":
        return _random_model(seed)
    if weights == "imagenet":
        return _imagenet_model(model_file)
    return _model_from_file(Path(weights))


def _describe_base(weights: str, seed: int) -> dict[str, Any]:
    if weights == "none":
        source: dict[str, Any] = {"weights": f"none(seed={seed})"}
    elif weights == "imagenet":
        source = {"weights": "imagenet"}
    else:
        path = Path(weights)
        if not path.is_file():
            raise ModelError(f"weights file {path} not found; {_OFFLINE_HINT}")
        source = {"weights": f"file:{path.name}", "weights_sha256": sha256_file(path)}
    return {
        "name": NAME,
        **source,
        "layer": LAYER,
        "dim": DIM,
        "input_size": list(INPUT_SIZE),
        "preprocess": "keras vgg16.preprocess_input (BGR, ImageNet mean)",
        "resize": "bilinear to 224x224, aspect ratio not kept",
    }


# --- building the model ------------------------------------------------------------------


def _architecture(initializer: str = "zeros"):
    """VGG16 up to fc2 with Keras' layer names, built without costly random init."""
    import keras
    from keras import layers

    x = inputs = keras.Input(shape=(*INPUT_SIZE, 3), name="input_layer")
    dense_opts = {"kernel_initializer": initializer, "bias_initializer": "zeros"}
    for block, convs, filters in _BLOCKS:
        for i in range(1, convs + 1):
            x = layers.Conv2D(filters, 3, padding="same", activation="relu",
                              name=f"block{block}_conv{i}", **dense_opts)(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(DIM, activation="relu", name="fc1", **dense_opts)(x)
    x = layers.Dense(DIM, activation="relu", name=LAYER, **dense_opts)(x)
    return keras.Model(inputs, x, name="vgg16_fc2")


def _random_model(seed: int):
    """Seeded He-scaled uniform weights from numpy, so every process gets the same model.

    TensorFlow's initializer seeding is not relied on. int8 draws keep it fast
    (~1 s for 134 M weights); biases are zero. The first layer is scaled down so the
    features are of order 1, like ImageNet ones, not of order 100.
    """
    model = _architecture()
    rng = np.random.default_rng(seed)
    values = []
    for position, variable in enumerate(model.weights):
        shape = tuple(variable.shape)
        if len(shape) == 1:  # bias
            values.append(np.zeros(shape, dtype=np.float32))
            continue
        fan_in = int(np.prod(shape[:-1]))
        # uniform integers in [-127, 127] have std ~127/sqrt(3); scale to He's sqrt(2/fan_in)
        scale = np.float32(np.sqrt(2.0 / fan_in) * np.sqrt(3.0) / 127.0)
        weights = rng.integers(-127, 128, size=shape, dtype=np.int8).astype(np.float32)
        if position == 0:  # inputs are ~ +-128 after preprocess_input: keep features O(1)
            scale /= np.float32(64.0)
        weights *= scale
        values.append(weights)
    model.set_weights(values)
    return model


def _cut(model):
    """``model`` cut at fc2 (unchanged when it already ends there)."""
    import keras

    try:
        layer = model.get_layer(LAYER)
    except ValueError:
        raise ModelError(f"model {model.name!r} has no layer {LAYER!r}; not a VGG16") from None
    if model.outputs[0] is layer.output:
        return model
    return keras.Model(model.inputs, layer.output, name="vgg16_fc2")


def _imagenet_model(model_file: str | os.PathLike | None):
    if model_file is not None and Path(model_file).is_file():
        logger.info("loading VGG16 fc2 model from %s", model_file)
        return _load_cached(Path(model_file))
    model = _cut(_download_imagenet())
    if model_file is not None:
        keras_io.save_model_atomic(model, Path(model_file))
        logger.info("cached VGG16 fc2 model in %s", model_file)
    return model


def _download_imagenet():
    import keras

    logger.info("building VGG16 with ImageNet weights (Keras downloads ~530 MB on first use)")
    try:
        return keras.applications.VGG16(weights="imagenet", include_top=True)
    except Exception as exc:  # noqa: BLE001 - Keras wraps network errors in plain Exception
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot get the VGG16 ImageNet weights ({text}); offline? {_OFFLINE_HINT}") from None


def _load_cached(path: Path):
    model = _cut(keras_io.load_model(path, hint="; delete it to download the weights again"))
    _check_output(model, path)
    return model


def _model_from_file(path: Path):
    """A full model file, or a weights file for Keras' VGG16."""
    import keras

    if not path.is_file():
        raise ModelError(f"weights file {path} not found; {_OFFLINE_HINT}")
    if path.suffix == ".keras" or (path.suffix == ".h5" and keras_io.h5_holds_model(path)):
        model = _cut(keras_io.load_model(path))
        _check_output(model, path)
        return model
    try:  # fc2 is in the top: weights without it ("notop") cannot give fc2 features
        model = keras.applications.VGG16(weights=str(path), include_top=True)
    except Exception as exc:  # noqa: BLE001
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelError(f"{path}: not VGG16 weights with the top layers fc1/fc2 "
                         f"({type(exc).__name__}: {text})") from None
    model = _cut(model)
    _check_output(model, path)
    return model


def _check_output(model, path: Path) -> None:
    shape = tuple(model.outputs[0].shape)
    if tuple(model.inputs[0].shape[1:]) != (*INPUT_SIZE, 3) or shape[1:] != (DIM,):
        raise ModelError(f"{path}: expected a model (n, 224, 224, 3) -> (n, {DIM}), "
                         f"got {tuple(model.inputs[0].shape)} -> {shape}")
