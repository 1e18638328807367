"""Vectors files: a ``.npy`` float32 array and its JSON manifest, committed together.

Layout of a vectors file ``V`` (for example ``ms_coco_file_list.txt.saved_predictions.npy``):

* ``V``: a ``.npy`` array, float32, shape ``(count, dimension)``, raw model outputs
  (not normalised), row ``i`` belongs to ``manifest["names"][i]``.
* ``V.manifest.json``: see :func:`~similar_images.db.files.manifest_path`; holds the model
  description, the row-aligned names, the skipped files with reasons, checksums and timings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from similar_images.db import journal
from similar_images.db.files import (
    HashingWriter,
    manifest_path,
    read_json,
    sha256_lines,
    write_json_to,
)
from similar_images.errors import DatabaseError


def write_vectors_file(path: Path, shape: tuple[int, int], chunks) -> str:
    """Write a ``.npy`` float32 file of ``shape`` from an iterable of row blocks; return its sha256."""
    count = 0
    with open(path, "wb") as f:
        out = HashingWriter(f)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                  "fortran_order": False, "shape": tuple(int(s) for s in shape)}
        np.lib.format.write_array_header_1_0(out, header)
        for block in chunks:
            block = np.ascontiguousarray(block, dtype=np.float32)  # (c, d)
            if block.ndim != 2 or block.shape[1] != shape[1]:
                raise ValueError(f"block of shape {block.shape} in a file of shape {shape}")
            out.write(block.tobytes())
            count += len(block)
        f.flush()
        os.fsync(f.fileno())
    if count != shape[0]:
        raise ValueError(f"wrote {count} rows, expected {shape[0]}")
    return out.digest.hexdigest()


# --- vectors files ---------------------------------------------------------------------

VECTORS_FORMAT = 1


def save_vectors(path: str | os.PathLike, vectors, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write ``vectors`` and their manifest atomically; return the manifest written.

    ``manifest`` must hold at least ``model`` (an extractor's ``describe()``) and
    ``names`` (one name per row). ``count``, ``dimension``, ``vectors_sha256`` and
    ``names_sha256`` are filled in here. Both files are staged, then committed together
    through the roll-forward journal (see ``journal.py``), under the writers' lock: a
    kill -9 at any moment leaves the old pair or the new pair, never new vectors under
    an old manifest.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    names = list(manifest["names"])
    if vectors.ndim != 2 or len(vectors) != len(names):
        raise ValueError(f"vectors {vectors.shape} and {len(names)} names do not match")
    path = Path(path)
    with journal.change(path) as stage:
        staged_vectors, staged_manifest = stage.file(path), stage.file(manifest_path(path))
        manifest = {
            "format": VECTORS_FORMAT,
            "kind": "vectors",
            **manifest,
            "count": int(vectors.shape[0]),
            "dimension": int(vectors.shape[1]),
            # hashed while written: no second read of a file that can be gigabytes
            "vectors_sha256": write_vectors_file(staged_vectors, vectors.shape, [vectors]),
            "names_sha256": sha256_lines(names),
        }
        write_json_to(staged_manifest, manifest)
    return manifest


def load_vectors_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of vectors file ``path``, checked for the fields readers rely on."""
    manifest = read_json(manifest_path(path))
    for key in ("model", "names", "count", "dimension"):
        if key not in manifest:
            raise DatabaseError(f"{manifest_path(path)}: missing field {key!r}")
    if len(manifest["names"]) != manifest["count"]:
        raise DatabaseError(
            f"{manifest_path(path)}: {len(manifest['names'])} names for "
            f"{manifest['count']} vectors"
        )
    return manifest


def open_vectors(path: str | os.PathLike):
    """Memory-map a vectors file read-only: ``(count, dimension)`` float32."""
    try:
        vectors = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise DatabaseError(f"{path}: vectors file not found") from None
    except (OSError, ValueError) as exc:
        raise DatabaseError(f"{path}: not a readable .npy vectors file ({exc})") from None
    if vectors.ndim != 2 or vectors.dtype != np.float32:
        raise DatabaseError(f"{path}: expected a 2-d float32 array, got {vectors.dtype} {vectors.shape}")
    return vectors
