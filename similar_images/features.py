"""Feature models behind one small interface.

A :class:`FeatureExtractor` turns a batch of decoded RGB images into float32 vectors.
The pipeline (``extract.py``), the search API and the evaluation only use this
interface, so a new model is one module in ``similar_images/models/`` plus one line in
:data:`MODELS`.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Protocol, runtime_checkable

import numpy as np

from similar_images.db.importing import NO_MODEL  # imported vectors of a model this program does not run
from similar_images.errors import ModelError


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


@runtime_checkable
class StreamingExtractor(FeatureExtractor, Protocol):
    """A :class:`FeatureExtractor` whose model runs asynchronously (OpenVINO). The pipeline
    (``pipeline.embed_stream``) prepares batches on its preparation thread and keeps the
    model's requests in flight across batches; extractors without these methods are run
    with ``embed`` on one batch while the next is prepared."""

    def prepare(self, batch: np.ndarray) -> Any:
        """``(n, h, w, 3)`` uint8 RGB -> the model's input (thread-safe, pure)."""
        ...

    def stream(self) -> Any:
        """An object with ``submit(prepared)``, ``collect() -> (n, dim) float32`` (oldest
        submitted batch first), ``pending`` (batches not collected) and ``drain()``."""
        ...


# model name -> "module:factory"; modules are imported only when the model is asked for,
# so light commands never import TensorFlow or torch.
MODELS: dict[str, str] = {
    "vgg16": "similar_images.models.vgg16:create",
    "efficientnet-lite0": "similar_images.models.efficientnet:create",
    "clip-vit-b-32": "similar_images.models.clip:clip_vit_b_32",
}

DEFAULT_MODEL = "vgg16"

# model name -> the descriptor recipe (models/descriptors.py) a new extraction uses when none
# is given; a model not listed makes its classic vector. None is listed: no recipe was better
# on every measured set (benchmarks/README.md, "Descriptor recipes"). Databases record their
# recipe, so changing this never changes how an existing database is searched.
DEFAULT_DESCRIPTORS: dict[str, Any] = {}


def get_extractor(model: str = DEFAULT_MODEL, **options: Any) -> FeatureExtractor:
    """Build the feature model called ``model``.

    Args:
        model: one of :data:`MODELS`.
        **options: passed to the model's factory (for example ``weights=``, ``descriptor=``;
            default recipe: :data:`DEFAULT_DESCRIPTORS`).

    Raises:
        ValueError: ``model`` is not a known model name.
    """
    try:
        target = MODELS[model]
    except KeyError:
        raise ValueError(
            f"unknown model {model!r}; choose one of: {', '.join(sorted(MODELS))}"
        ) from None
    if model in DEFAULT_DESCRIPTORS:
        options.setdefault("descriptor", DEFAULT_DESCRIPTORS[model])
    module_name, factory_name = target.split(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    return factory(**options)


QUERY_BATCH_SIZE = 8  # images per OpenVINO request when a database's model embeds many (an add)

# Describe() keys that must agree between the query model and the database's model.
# The fp32 runtimes may differ (OpenVINO and the native framework give the same vectors,
# cosine >= 0.999), but an INT8 model's vectors drift from fp32 ones and depend on its
# calibration sample, so precision and calibration must match. The device (and VGG16's
# framework on CUDA, a torch port of the Keras model) is recorded but not compared: the same
# fp32 model on a GPU gives the CPU's vectors (cosine >= 0.999, tests/models/test_gpu.py).
MODEL_IDENTITY_KEYS = ("name", "weights", "dim", "input_size", "layer", "precision", "calibration")
# Compared even when the database does not record them: a database made before descriptor
# recipes (no "descriptor") is answered only by the classic vector, a whitened one only with
# its own whitening.
RECIPE_KEYS = ("descriptor", "whitening")


def extractor_for(model: dict[str, Any], *, model_folder=None, device: str = "auto", database_folder=None):
    """Build the extractor that made vectors described by ``model`` (a ``describe()``), with
    the same descriptor recipe (pooling, scales, whitening), whatever today's default is.

    Args:
        model: the database's model description.
        model_folder: the database's own copy of a quantised model (INT8), found from
            its manifest; used before the user's cache, so a copied database needs none.
        device: where the query model runs (``"auto"``, ``"cpu"``, ``"cuda"``); not the
            database's: vectors made on one device are searched with queries made on another.
        database_folder: the folder of the database's vectors file, where a whitened
            database keeps its whitening (``model["whitening"]``).
    """
    from similar_images.models.descriptors import Descriptor

    if model.get("name") == NO_MODEL:
        raise ModelError("this database's vectors were imported without a model (`similar-images import --model "
                         "none`): search it by id (--id) or by vector; image and text queries need the model "
                         "that made the vectors")
    options: dict[str, Any] = {} if device == "auto" else {"device": device}  # auto: the factory's default
    weights = str(model.get("weights", ""))
    if weights.startswith("none(seed=") and weights.endswith(")"):
        options.update(weights="none", seed=int(weights[len("none(seed="):-1]))
    elif weights.startswith("file:"):
        if not os.path.isfile(model.get("weights_file") or ""):  # recorded by CLIP models
            raise ModelError(f"the vectors were made with weights from a file ({weights[5:]}) that is not "
                             "here; pass extractor=get_extractor(..., weights=PATH) to search with images")
        options["weights"] = model["weights_file"]  # check_extractor compares its sha256
    elif weights:
        options["weights"] = weights
    if model.get("runtime") not in (None, "native"):
        options["runtime"] = model["runtime"]
        if model["runtime"] == "openvino":
            # Queries run on the LATENCY compile: no batch compile, and no timing of batch sizes
            # (tens of seconds on a first run) for the rare add of many images through this model.
            options.update(lazy_compile=True, batch_size=QUERY_BATCH_SIZE)
    if model.get("precision") not in (None, "fp32"):
        # The very model that made the vectors: the database's copy, else the cache.
        options.update(precision=model["precision"], calibration=model.get("calibration"))
        if model_folder is not None:
            options["model_folder"] = model_folder
    # no "descriptor": the classic vector (a database made before recipes), never today's default
    if model.get("descriptor") or model.get("name") in DEFAULT_DESCRIPTORS:
        options["descriptor"] = Descriptor.from_description(model.get("descriptor"))
    extractor = for_database(get_extractor(model.get("name", "?"), **options), model, database_folder)
    check_extractor(extractor, model)
    return extractor


def text_queries(model: dict[str, Any], texts: list, k: int = 1) -> list[str]:
    """Check text queries against a database's model (a ``describe()``) before any model loads.

    Returns:
        The texts, each on one line with single spaces.

    Raises:
        ModelError: one line naming the model, for one without a text tower (VGG16, EfficientNet).
        ValueError: an empty text, no text, or ``k`` below 1.
    """
    if "text" not in model.get("towers", ()):
        raise ModelError(f"the database's model {model.get('name', '?')} has no text tower: text queries need "
                         "a CLIP database (similar-images extract --model clip-vit-b-32)")
    cleaned = [" ".join(str(t).split()) for t in texts]
    if k < 1 or not cleaned or not all(cleaned):
        raise ValueError(f"give at least one non-empty text and k >= 1 (got {len(cleaned)} texts, k={k})")
    return cleaned


def for_database(extractor, model: dict[str, Any], database_folder=None):
    """``extractor`` with the database's whitening applied to its vectors when the database
    has one (``model["whitening"]``) and the extractor does not (it made the vectors the
    whitening was fitted on); else ``extractor`` itself."""
    record = model.get("whitening")
    if not record or extractor.describe().get("whitening") or database_folder is None:
        return extractor
    from similar_images.models import whitening

    return whitening.WhitenedExtractor(extractor, *whitening.load(database_folder, record), record)


def check_extractor(extractor, model: dict[str, Any]) -> None:
    """Refuse a query model that does not make the vectors in the database."""
    described = extractor.describe()
    keys = [key for key in MODEL_IDENTITY_KEYS if key in model] + list(RECIPE_KEYS)
    diffs = [f"{key} {described.get(key)!r} vs {model.get(key)!r}" for key in keys
             if described.get(key) != model.get(key)]
    if diffs:
        raise ModelError("the query model is not the database's model (query vs database: "
                         + "; ".join(diffs) + ")")
