"""Feature models behind one small interface.

A :class:`FeatureExtractor` turns a batch of decoded RGB images into float32 vectors.
The pipeline (``extract.py``), the search API and the evaluation only use this
interface, so a new model is one module in ``similar_images/models/`` plus one line in
:data:`MODELS`.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class FeatureExtractor(Protocol):
    """What every feature model provides.

    Attributes:
        name: the model's name as users type it (``"vgg16"``).
        input_size: ``(height, width)`` the model takes.
        dim: length of one feature vector.
    """

    name: str
    input_size: tuple[int, int]
    dim: int

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Embed a batch of images.

        Args:
            batch: ``(n, height, width, 3)`` uint8 RGB, already resized to ``input_size``.

        Returns:
            ``(n, dim)`` float32 raw features (not normalised).
        """
        ...

    def describe(self) -> dict[str, Any]:
        """What identifies the vectors this model makes, recorded in manifests and
        compared when a database is opened: at least ``name``, ``weights``, ``dim``,
        ``input_size``, ``runtime`` and ``precision``."""
        ...


# model name -> "module:factory"; modules are imported only when the model is asked for,
# so light commands never import TensorFlow or torch.
MODELS: dict[str, str] = {
    "vgg16": "similar_images.models.vgg16:create",
    "efficientnet-lite0": "similar_images.models.efficientnet:create",
}

DEFAULT_MODEL = "vgg16"


def get_extractor(model: str = DEFAULT_MODEL, **options: Any) -> FeatureExtractor:
    """Build the feature model called ``model``.

    Args:
        model: one of :data:`MODELS`.
        **options: passed to the model's factory (for example ``weights=``).

    Raises:
        ValueError: ``model`` is not a known model name.
    """
    try:
        target = MODELS[model]
    except KeyError:
        raise ValueError(
            f"unknown model {model!r}; choose one of: {', '.join(sorted(MODELS))}"
        ) from None
    module_name, factory_name = target.split(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    return factory(**options)
