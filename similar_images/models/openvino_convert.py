"""Converting a native network (Keras or torch) to an ``openvino.Model`` in process."""

from __future__ import annotations

import functools
import inspect
import logging
import time
import warnings
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)


def convert(native, preprocess: Callable[[np.ndarray], np.ndarray], input_size: tuple[int, int]):
    """``openvino.Model`` of ``native`` with a dynamic batch dimension.

    Raises:
        ModelError: ``openvino.convert_model`` failed.
    """
    import openvino as ov

    from similar_images.errors import ModelError

    example = preprocess(np.zeros((1, *input_size, 3), np.uint8))  # (1, ...) float32
    shape = [-1, *example.shape[1:]]
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and Keras structure warnings: noise for users
            model = _convert(ov, native, example, shape)
    except Exception as exc:  # the converters raise many types; all mean "cannot convert"
        raise ModelError(f"OpenVINO could not convert the model: {(str(exc).splitlines() or [type(exc).__name__])[0]}") from exc
    log.info("converted to OpenVINO in %.1f s", time.perf_counter() - t0)
    return model


def _convert(ov, native, example: np.ndarray, shape: list[int]):
    if _is_torch(native):
        import torch

        return ov.convert_model(native, example_input=torch.from_numpy(example), input=shape)
    return ov.convert_model(native, input=shape)  # Keras (TensorFlow backend)


def _is_torch(native) -> bool:
    return any(cls.__module__.startswith("torch") for cls in type(native).__mro__)


def convert_native(native, preprocess: Callable[[np.ndarray], np.ndarray], input_size: tuple[int, int]):
    """:func:`convert` of ``native``, or of the network a loader (a function or partial
    returning it) gives: the network is then loaded only when a conversion is needed."""
    loader = inspect.isfunction(native) or isinstance(native, functools.partial)
    return convert(native() if loader else native, preprocess, input_size)
