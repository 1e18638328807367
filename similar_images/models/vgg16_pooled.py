"""VGG16 with a retrieval pooling: ``block5_conv3``'s map pooled by a descriptor recipe.

R-MAC and GeM take VGG16's last convolution (``block5_conv3`` after its ReLU, before the
last max-pool): ``(n, 512, 14, 14)`` at 224 x 224, so the vector is 512-d. The classic
VGG16 vector (``fc2``, 4096-d) stays :mod:`~similar_images.models.vgg16`'s default.

The convolutions are the torch port of the Keras model (:mod:`~similar_images.models.vgg16_torch`,
the same weights, on the CPU too), so the pooling is one torch module
(:func:`~similar_images.models.descriptors.pooled_network`) for every runtime: native
(torch), OpenVINO and INT8 (converted from it, preprocessing in the graph).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from similar_images.models.descriptors import Descriptor, pooled_network
from similar_images.models.devices import describe_device
from similar_images.models.openvino_input import InputSteps
from similar_images.models.vgg16_torch import CAFFE_MEAN_BGR, TorchVGG16Extractor, from_keras

LAYER = "block5_conv3"
DIM = 512
INPUT_SIZE = (224, 224)
OPENVINO_INPUT = InputSteps(layout="NCHW", reverse_channels=True, mean=CAFFE_MEAN_BGR)  # preprocess() in-graph


def preprocess(batch: np.ndarray) -> np.ndarray:
    """``(n, h, w, 3)`` uint8 RGB -> ``(n, 3, h, w)`` float32 BGR minus the ImageNet mean (Keras' 'caffe')."""
    x = np.asarray(batch, dtype=np.float32)[..., ::-1] - np.float32(CAFFE_MEAN_BGR)  # (n, h, w, 3) BGR
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def conv_network(keras_model):
    """The torch port of ``keras_model`` up to its last convolution's ReLU (``block5_conv3``)."""
    from torch import nn

    layers = list(from_keras(keras_model))
    last_pool = max(i for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d))
    return nn.Sequential(*layers[:last_pool]).eval()


def load_native(load_keras: Callable[[], Any], descriptor: Descriptor):
    """The torch module: :func:`preprocess` output -> ``(n, 512)`` pooled per ``descriptor``."""
    return pooled_network(conv_network(load_keras()), descriptor)


def create(*, load_keras: Callable[[], Any], describe_base: dict[str, Any], descriptor: Descriptor,
           runtime: str, precision: str, device: str, **runtime_options: Any):
    """The pooled VGG16 extractor; ``load_keras`` returns the Keras VGG16 (its weights),
    ``describe_base`` is :mod:`vgg16`'s description, here with the layer, size and recipe."""
    base = {**describe_base, "layer": LAYER, "dim": DIM, "descriptor": descriptor.describe()}
    native = functools.partial(load_native, load_keras, descriptor)
    if runtime == "openvino":
        from similar_images.models import openvino_runtime

        return openvino_runtime.create_openvino_extractor(
            name=base["name"], native=native, preprocess=preprocess, input_steps=OPENVINO_INPUT,
            input_size=INPUT_SIZE, dim=DIM, describe_base=base, precision=precision, **runtime_options)
    if precision != "fp32":
        raise ValueError(f"the native runtime supports precision 'fp32' only, not {precision!r}; "
                         "use runtime 'openvino' for others")
    if runtime_options:
        raise ValueError(f"unexpected options for the native runtime: {', '.join(runtime_options)}")
    description = {**base, "runtime": "native", "precision": "fp32", **describe_device(device), "framework": "torch"}
    return TorchVGG16Extractor(native().to(device), description, device=device)
