"""The preprocessing compiled into the OpenVINO graph computes what the numpy preprocess computes."""

from __future__ import annotations

import numpy as np
import pytest

from similar_images.models import efficientnet, vgg16
from similar_images.models.openvino_input import InputSteps, uint8_batch, with_uint8_input
from similar_images.models.openvino_requests import compile_model


def _passthrough(layout: str, channels_last_size=(5, 7)):
    """An OpenVINO model whose output is its float input flattened: it shows what reached the network."""
    import openvino as ov
    import openvino.opset13 as ops

    h, w = channels_last_size
    shape = [-1, h, w, 3] if layout == "NHWC" else [-1, 3, h, w]
    x = ops.parameter(ov.PartialShape(shape), ov.Type.f32, name="x")
    flat = ops.reshape(x, ops.constant(np.array([0, -1], np.int64)), special_zero=True)
    return ov.Model([flat], [x], "passthrough")


def _numpy_steps(batch: np.ndarray, steps: InputSteps) -> np.ndarray:
    x = batch.astype(np.float32)
    if steps.reverse_channels:
        x = x[..., ::-1]
    x = (x - np.asarray(steps.mean, np.float32)) / np.asarray(steps.scale, np.float32)
    if steps.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return x.reshape(len(x), -1)


@pytest.mark.parametrize("steps", [
    vgg16.OPENVINO_INPUT,
    efficientnet.OPENVINO_INPUT,
    InputSteps(layout="NCHW", reverse_channels=True, mean=(1.0, 2.0, 3.0), scale=(2.0, 4.0, 8.0)),
    InputSteps(layout="NHWC"),
], ids=["vgg16", "efficientnet", "per-channel-nchw", "identity"])
def test_graph_steps_equal_numpy_steps(steps, tmp_path):
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    model = _passthrough(steps.layout)
    served = with_uint8_input(model, steps)
    assert served.input(0).get_element_type().get_type_name() == "u8"
    assert model.input(0).get_element_type().get_type_name() == "f32"  # the given model keeps its float input
    out = compile_model(served, cache_dir=tmp_path)(batch)[0]
    np.testing.assert_allclose(out, _numpy_steps(batch, steps), rtol=1e-6, atol=1e-4)


def test_model_steps_match_their_numpy_preprocess():
    """Each model's declared steps are its own preprocess (the layout included)."""
    rng = np.random.default_rng(2)
    batch = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    np.testing.assert_allclose(_numpy_steps(batch, efficientnet.OPENVINO_INPUT),
                               efficientnet.preprocess(batch).reshape(2, -1), rtol=1e-6, atol=1e-5)
    pytest.importorskip("keras")
    np.testing.assert_allclose(_numpy_steps(batch, vgg16.OPENVINO_INPUT),
                               vgg16.preprocess(batch).reshape(2, -1), rtol=1e-6, atol=1e-4)


def test_uint8_batch_checks_shape_and_type():
    good = np.zeros((2, 4, 4, 3), np.uint8)
    assert uint8_batch(good, (4, 4)) is good
    assert uint8_batch(good[:, :, ::-1], (4, 4)).flags["C_CONTIGUOUS"]
    with pytest.raises(ValueError, match=r"expected a \(n, 4, 4, 3\) RGB batch"):
        uint8_batch(good[:, :2], (4, 4))
    with pytest.raises(ValueError, match="expected uint8"):
        uint8_batch(good.astype(np.float32), (4, 4))
