"""A network's preprocessing moved into its OpenVINO graph: the compiled model takes uint8 RGB.

The models' numpy ``preprocess`` functions (uint8 NHWC RGB -> float32 in the network's
channel order and layout) cost about half a millisecond a core per image at 224 x 224,
on the CPU the model needs: VGG16's Keras ``preprocess_input`` copies the batch three
times. OpenVINO's ``PrePostProcessor`` does the same steps inside the compiled graph
(uint8 -> f32, RGB -> BGR, minus the mean, divided by the scale, NHWC -> NCHW), fused
with the first layer, and a request's input is then a quarter of the bytes.

The cached fp32 and INT8 models keep their float input (calibration feeds them the
numpy ``preprocess``); only the model compiled for extraction gets the uint8 input, so the
two paths compute the same values (tests compare them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InputSteps:
    """What a model's ``preprocess`` does to a uint8 NHWC RGB batch, as graph steps.

    Attributes:
        layout: the network's input layout, ``"NHWC"`` (Keras) or ``"NCHW"`` (torch).
        reverse_channels: RGB -> BGR before the mean (Keras' ``'caffe'`` mode).
        mean: subtracted per channel (in the network's channel order) or from every value.
        scale: then divided by it, per channel or for every value.
    """

    layout: str
    reverse_channels: bool = False
    mean: tuple[float, ...] | float = 0.0
    scale: tuple[float, ...] | float = 1.0


def with_uint8_input(model, steps: InputSteps):
    """A copy of ``model`` (float input, ``steps.layout``) taking ``(n, h, w, 3)`` uint8 RGB."""
    import openvino as ov
    from openvino.preprocess import PrePostProcessor

    model = model.clone()  # the cached model is also compiled and saved with its float input
    ppp = PrePostProcessor(model)
    entry = ppp.input()
    entry.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    entry.model().set_layout(ov.Layout(steps.layout))
    pre = entry.preprocess()
    pre.convert_element_type(ov.Type.f32)
    if steps.reverse_channels:
        pre.reverse_channels()
    if _nontrivial(steps.mean, 0.0):
        pre.mean(_values(steps.mean))
    if _nontrivial(steps.scale, 1.0):
        pre.scale(_values(steps.scale))
    pre.convert_layout(ov.Layout(steps.layout))
    return ppp.build()


def uint8_batch(batch, input_size: tuple[int, int]) -> np.ndarray:
    """``batch`` checked to be ``(n, h, w, 3)`` RGB of ``input_size``, as contiguous uint8."""
    batch = np.asarray(batch)
    if batch.ndim != 4 or tuple(batch.shape[1:3]) != tuple(input_size) or batch.shape[3] != 3:
        raise ValueError(
            f"expected a (n, {input_size[0]}, {input_size[1]}, 3) RGB batch, got shape {batch.shape}"
        )
    if batch.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB values, got {batch.dtype}")
    return np.ascontiguousarray(batch)


def _nontrivial(value, identity: float) -> bool:
    return any(v != identity for v in np.atleast_1d(value))


def _values(value) -> list[float] | float:
    return [float(v) for v in value] if isinstance(value, tuple) else float(value)
