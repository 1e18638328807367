"""VGG16 fc2 in torch, with the weights of the Keras model: how VGG16 runs on a CUDA device.

The layers are read from the Keras model (VGG16 cut at fc2: 13 3x3 convolutions with
``same`` padding and ReLU, 5 max-pools, flatten, fc1, fc2) and the weights copied:

* convolution kernels: Keras ``(h, w, in, out)`` -> torch ``(out, in, h, w)``;
* dense kernels: Keras ``(in, out)`` -> torch ``(out, in)``; fc1's inputs are also
  reordered, since Keras flattens the last feature map ``(7, 7, 512)`` channels-last and
  torch flattens ``(512, 7, 7)`` channels-first;
* preprocessing is Keras' ``'caffe'`` mode (:func:`similar_images.models.vgg16.preprocess`):
  RGB -> BGR, minus the ImageNet mean, no scaling; done on the device from uint8, so
  only a quarter of the bytes cross the bus.

The vectors equal the Keras ones to float rounding (cosine >= 0.9999, tests/models/test_vgg16_torch.py).
It runs in true fp32 (no TF32), so ``precision`` stays ``"fp32"``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from similar_images.errors import ModelError
from similar_images.models.devices import strict_fp32

_log = logging.getLogger(__name__)

# keras.applications.vgg16.preprocess_input ('caffe'): the BGR means subtracted
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
MAX_BATCH = 64  # images per forward, as the Keras extractor


def convert(keras_model) -> tuple[list[tuple[str, Any]], list[np.ndarray]]:
    """The torch layers of a Keras VGG-style model (3x3 ``same`` ReLU convolutions,
    2x2 max-pools, flatten, ReLU dense layers) and its weights in torch layouts.

    Returns:
        ``(plan, weights)``: ``plan`` is ``[("conv", (in, out)), ("pool", None),
        ("flatten", None), ("dense", (in, out)), ...]``; ``weights`` the kernels and
        biases in the order of the torch parameters.

    Raises:
        ModelError: a layer this port does not know.
    """
    plan: list[tuple[str, Any]] = []
    weights: list[np.ndarray] = []
    flat_shape = None  # (h, w, c) before Flatten: fc1's rows are in that order
    for layer in keras_model.layers:
        kind = type(layer).__name__
        config = layer.get_config()
        if kind == "InputLayer":
            continue
        if kind == "Conv2D" and _is_vgg_conv(config):
            kernel, bias = layer.get_weights()
            plan.append(("conv", (kernel.shape[2], kernel.shape[3])))
            weights += [kernel.transpose(3, 2, 0, 1), bias]  # (h, w, in, out) -> (out, in, h, w)
        elif kind == "MaxPooling2D" and tuple(config["pool_size"]) == (2, 2) and tuple(config["strides"]) == (2, 2):
            plan.append(("pool", None))
        elif kind == "Flatten":
            flat_shape = tuple(int(d) for d in layer.input.shape[1:])
            plan.append(("flatten", None))
        elif kind == "Dense" and config["activation"] == "relu" and config["use_bias"]:
            kernel, bias = layer.get_weights()  # (in, out)
            if flat_shape is not None:  # the first dense layer after Flatten: rows (h, w, c) -> (c, h, w)
                kernel = kernel.reshape(*flat_shape, -1).transpose(2, 0, 1, 3).reshape(kernel.shape)
                flat_shape = None
            plan.append(("dense", kernel.shape))
            weights += [kernel.T, bias]  # (out, in)
        else:
            raise ModelError(f"cannot run layer {layer.name!r} ({kind}) in torch; use --device cpu")
    return plan, [np.ascontiguousarray(w, dtype=np.float32) for w in weights]


def _is_vgg_conv(config: dict) -> bool:
    return (tuple(config["kernel_size"]) == (3, 3) and config["padding"] == "same"
            and tuple(config["strides"]) == (1, 1) and config["activation"] == "relu" and config["use_bias"]
            and config.get("data_format", "channels_last") == "channels_last")


def build_network(plan: list[tuple[str, Any]]):
    """The torch ``nn.Sequential`` of a :func:`convert` plan (weights uninitialised), in eval mode."""
    from torch import nn

    layers: list[nn.Module] = []
    for kind, shape in plan:
        if kind == "conv":
            layers += [nn.Conv2d(int(shape[0]), int(shape[1]), 3, padding=1), nn.ReLU(inplace=True)]
        elif kind == "pool":
            layers.append(nn.MaxPool2d(2, stride=2))
        elif kind == "flatten":
            layers.append(nn.Flatten())
        else:
            layers += [nn.Linear(int(shape[0]), int(shape[1])), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers).eval()


def from_keras(keras_model, device: str = "cpu"):
    """A torch module with ``keras_model``'s layers and weights, on ``device``:
    ``(n, 3, h, w)`` float32 BGR minus the mean -> the Keras model's output."""
    import torch

    plan, values = convert(keras_model)
    network = build_network(plan)
    parameters = list(network.parameters())
    with torch.no_grad():
        for parameter, value in zip(parameters, values, strict=True):
            parameter.copy_(torch.from_numpy(value))
    return network.to(device)


class TorchVGG16Extractor:
    """VGG16 fc2 in torch behind the :class:`~similar_images.features.FeatureExtractor` interface."""

    def __init__(self, network, description: dict[str, Any], device: str = "cpu"):
        """``network`` from :func:`from_keras`, on ``device``; ``description`` what :meth:`describe` returns."""
        import torch

        self.name = description["name"]
        self.input_size = tuple(description["input_size"])
        self.dim = int(description["dim"])
        self.device = device
        self._network = network
        self._description = description
        self._mean = torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def _preprocess(self, part: np.ndarray):
        """``(m, 224, 224, 3)`` uint8 RGB -> ``(m, 3, 224, 224)`` float32 BGR minus the mean, on the device."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(part)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).flip(1).float()  # (m, 3, h, w) BGR
        return (x - self._mean).contiguous()

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """``(n, 224, 224, 3)`` uint8 RGB -> ``(n, 4096)`` float32 fc2 features."""
        import torch

        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[1:] != (*self.input_size, 3):
            raise ValueError(f"expected a batch of shape (n, {self.input_size[0]}, {self.input_size[1]}, 3), "
                             f"got {batch.shape}")
        out = np.empty((len(batch), self.dim), dtype=np.float32)  # (n, 4096)
        with torch.inference_mode(), strict_fp32(self.device):
            for start in range(0, len(batch), MAX_BATCH):
                part = batch[start : start + MAX_BATCH]
                out[start : start + len(part)] = self._network(self._preprocess(part)).float().cpu().numpy()
        return out

    def describe(self) -> dict[str, Any]:
        return dict(self._description)


def tensorflow_off_the_gpu() -> None:
    """Hide the GPUs from TensorFlow (which would otherwise reserve most of their memory)."""
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow already started on its devices; leave them
        _log.debug("TensorFlow's devices are already initialised")
