"""Vectors files: a ``.npy`` float32 array and its JSON manifest, committed together.

Layout of a vectors file ``V`` (for example ``ms_coco_file_list.txt.saved_predictions.npy``):

* ``V``: a ``.npy`` array, float32, shape ``(count, dimension)``, raw model outputs
  (not normalised), row ``i`` belongs to ``manifest["names"][i]``.
* ``V.manifest.json``: see :func:`~similar_images.fileio.files.manifest_path`; holds the model
  description, the row-aligned names, the skipped files with reasons, checksums and timings.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from similar_images.db import journal
from similar_images.db.integrity import check_npy_structure, read_npy_header, require_fields
from similar_images.errors import DatabaseError
from similar_images.fileio.files import (
    HashingWriter,
    manifest_path,
    read_json,
    sha256_lines,
    write_json_to,
)


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
            finite = np.isfinite(block).all(axis=1)  # (c,)
            if not finite.all():
                row = count + int(np.argmin(finite))
                raise DatabaseError(f"new vector {row} holds a non-finite value (NaN or infinity); "
                                    "refused, nothing was written")
            out.write(block.tobytes())
            count += len(block)
        f.flush()
        os.fsync(f.fileno())
    if count != shape[0]:
        raise ValueError(f"wrote {count} rows, expected {shape[0]}")
    return out.digest.hexdigest()


# --- vectors files ---------------------------------------------------------------------

log = logging.getLogger(__name__)

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
        sha = write_vectors_file(staged_vectors, vectors.shape, [vectors])  # hashed while written
        stage.known_sha(staged_vectors, sha)
        manifest = {
            "format": VECTORS_FORMAT,
            "kind": "vectors",
            **manifest,
            "count": int(vectors.shape[0]),
            "dimension": int(vectors.shape[1]),
            "vectors_sha256": sha,
            "names_sha256": sha256_lines(names),
        }
        write_json_to(staged_manifest, manifest)
    return manifest


# Fields every vectors manifest must hold, with their JSON types (a missing one is an error).
VECTORS_FIELDS = {"model": (dict,), "names": (list,), "count": (int,), "dimension": (int,),
                  "vectors_sha256": (str,), "names_sha256": (str,)}


def load_vectors_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of vectors file ``path``, checked for the fields readers rely on.

    Raises:
        DatabaseError: a required field (``VECTORS_FIELDS``) is missing or of the wrong type,
            or the names do not match their count or checksum.
    """
    where = manifest_path(path)
    manifest = read_json(where)
    require_fields(where, manifest, VECTORS_FIELDS)
    if not all(isinstance(n, str) for n in manifest["names"]):
        raise DatabaseError(f"{where}: field 'names' must hold only strings")
    if len(manifest["names"]) != manifest["count"]:
        raise DatabaseError(
            f"{manifest_path(path)}: {len(manifest['names'])} names for "
            f"{manifest['count']} vectors"
        )
    if sha256_lines(manifest["names"]) != manifest["names_sha256"]:
        raise DatabaseError(f"{where}: names do not match their recorded checksum (field 'names_sha256')")
    return manifest


def open_vectors(path: str | os.PathLike, manifest: dict[str, Any] | None = None):
    """Memory-map a vectors file read-only: ``(count, dimension)`` float32.

    The header and the file size are checked first (against ``manifest``'s count and
    dimension when given), so a damaged file gives one line naming it, not a numpy error.
    """
    path = Path(path)
    if manifest is None:
        shape, dtype, offset = read_npy_header(path)
        if len(shape) != 2 or dtype != np.float32:
            raise DatabaseError(f"{path}: expected a 2-d float32 array, got {dtype} {shape}")
        offset = check_npy_structure(path, *shape)
    else:
        shape = (int(manifest["count"]), int(manifest["dimension"]))
        offset = check_npy_structure(path, *shape)
    if shape[0] == 0:
        return np.zeros(shape, dtype=np.float32)
    try:
        return np.memmap(path, dtype=np.float32, mode="r", offset=offset, shape=shape)
    except (OSError, ValueError) as exc:
        raise DatabaseError(f"{path}: cannot map the vectors file ({exc})") from None


def resolve_image_dir(image_dir, vectors_path: Path, *, given: bool = False) -> Path:
    """The image folder. A relative one is looked up beside the vectors first (how
    manifests record it), then from the current folder (older manifests); a folder
    found in neither place is reported, since every path shown would be wrong."""
    if not image_dir:
        return vectors_path.parent
    path = Path(image_dir)
    candidates = [path] if path.is_absolute() or given else [vectors_path.parent / path, path]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    where = "given" if given else f"recorded in {vectors_path.name}'s manifest"
    log.warning("the image folder %s (%s) is missing: image paths cannot be shown or thumbnailed; "
                "pass --image-dir (image_dir=) to say where the images are", path, where)
    return candidates[0]
