"""How a Ray actor rebuilds the driver's feature model, exactly.

The driver builds the model first (for INT8 it calibrates there, once, and checks the
fidelity). Each actor then rebuilds it from an :class:`ExtractorRecipe`: the model name
and factory options, plus, for INT8, the quantised model's files shipped in the recipe
(through Ray's object store), so no actor calibrates again and every actor runs the very
model the driver checked. An actor whose model describes itself differently from the
driver's refuses to run.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from similar_images.errors import ModelError

logger = logging.getLogger(__name__)

# Options only the driver uses: calibration images, progress bars of the calibration.
DRIVER_ONLY = ("calibration_paths", "show_progress")


@dataclass(frozen=True)
class ExtractorRecipe:
    """Everything an actor needs to build the driver's extractor.

    Attributes:
        model: a name of :data:`similar_images.features.MODELS`, or ``None`` with ``factory``.
        options: keyword options of the model's factory.
        files: INT8 only: the cached quantised model, ``{path relative to the cache: bytes}``.
        expected: the driver's ``describe()``; the actor's must be equal.
        factory: a picklable callable returning an extractor (tests, custom models).
    """

    model: str | None
    options: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    expected: dict[str, Any] | None = None
    factory: Any = None

    def build(self):
        """The extractor, built in this process.

        Raises:
            ModelError: the model built here is not the driver's.
        """
        options = dict(self.options)
        if self.files:
            cache = Path(tempfile.mkdtemp(prefix="similar-images-actor-"))
            for relative, data in self.files.items():
                (cache / relative).parent.mkdir(parents=True, exist_ok=True)
                (cache / relative).write_bytes(data)
            options["cache_dir"] = cache
        if self.factory is not None:
            extractor = self.factory(**options)
        else:
            from similar_images.features import get_extractor

            extractor = get_extractor(self.model, **options)
        if self.expected is not None and _plain(extractor.describe()) != _plain(self.expected):
            raise ModelError(f"a Ray actor built {extractor.describe()}, not the driver's {self.expected}")
        return extractor


def recipe_for(extractor, model: str, options: dict[str, Any]) -> ExtractorRecipe:
    """The recipe of ``extractor``, built on the driver by ``get_extractor(model, **options)``."""
    described = extractor.describe()
    options = {key: value for key, value in options.items() if key not in DRIVER_ONLY}
    files: dict[str, bytes] = {}
    if described.get("runtime") == "openvino":
        # The driver's measured setting: actors do not time the candidates again.
        options.update(batch_size=extractor.batch_size, hint=extractor.hint, show_progress=False)
    if described.get("precision") == "int8":
        options["calibration"] = described["calibration"]
        files = int8_files(model, described)
    return ExtractorRecipe(model, options, files, described)


def int8_files(model: str, described: dict[str, Any]) -> dict[str, bytes]:
    """The driver's cached INT8 model (``model.xml``, ``model.bin``, ``report.json``) as bytes."""
    from similar_images.models.quantize import cache_folder
    from similar_images.models.speeds import cache_root

    calibration = described["calibration"]
    # the cache key is the runtime-independent description; a CLIP file's path (weights_file) is not in it
    base = {k: v for k, v in described.items() if k not in ("runtime", "precision", "calibration", "weights_file")}
    folder = cache_folder(model, base, calibration["settings"], calibration["sample_sha256"])
    if not (folder / "model.xml").is_file():
        raise ModelError(f"the INT8 model is not in the cache at {folder}; run the extraction again")
    root = cache_root()
    files = {str(path.relative_to(root)): path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}
    logger.info("shipping the INT8 model to the actors (%.1f MB)", sum(map(len, files.values())) / 1e6)
    return files


def _plain(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj, sort_keys=True, default=str))
