"""Keras model files: load with a clear error, save atomically, look inside ``.h5`` files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from similar_images.errors import ModelError


def load_model(path: Path, *, hint: str = ""):
    """``keras.models.load_model`` without compiling; any failure becomes a :class:`ModelError`."""
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelError(f"{path}: cannot load the model ({type(exc).__name__}: {text}){hint}") from None


def save_model_atomic(model, path: Path) -> None:
    """Save a Keras model under a temporary name with the same suffix, then rename.

    (Keras picks the format from the suffix, so :func:`similar_images.fileio.files.atomic_path`,
    whose temporary names end in ``.tmp``, cannot be used.)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        os.unlink(tmp)  # Keras refuses to overwrite some formats; let it create the file
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def h5_holds_model(path: Path) -> bool:
    """Whether an HDF5 file is a whole model (architecture + weights), not just weights."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "model_config" in f.attrs
    except OSError as exc:
        raise ModelError(f"{path}: not an HDF5 file ({exc})") from None

