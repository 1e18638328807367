"""Vectors files: a ``.npy`` float32 array and its JSON manifest, committed together.

Layout of a vectors file ``V`` (for example ``ms_coco_file_list.txt.saved_predictions.npy``):

* ``V``: a ``.npy`` array, float32 (or float16: ``manifest["store"]``), shape
  ``(count, dimension)``, raw model outputs (not normalised), row ``i`` belongs to the
  catalog's item ``i``.
* ``V.manifest.json``: see :func:`~similar_images.fileio.files.manifest_path`; holds the model
  description, the row-aligned names, the skipped files with reasons, checksums and timings.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from similar_images.db import catalog, journal
from similar_images.db.catalog_guard import inserting_a_new_generation, names_state, vouch_for_names
from similar_images.db.integrity import check_npy_structure, read_npy_header, require_fields
from similar_images.errors import DatabaseError
from similar_images.fileio.files import (
    HashingWriter,
    manifest_path,
    read_json,
    sha256_lines,
    write_json_to,
)

# The store: how the rows are kept on disk (``manifest["store"]``, absent: float32). float16
# halves the bytes a re-ranking reads and the disk (10,000,000 x 1280: 26 GB, not 51) for
# cosines within float16 rounding (docs/scale.md); rows are float32 once read.
STORES = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16)}
DEFAULT_STORE = "float32"
# A new database's rows are stored in float16 by themselves from this many bytes of float32
# rows; None: never. Measured (benchmarks/pq_codes.py, docs/scale.md): while the rows stay in
# memory, converting float16 candidates costs more than reading float32 ones in place (400,000
# x 1280: 1.6-2.9 x the CPU of a query, PQ64 to PQ16), so float16 is asked for
# (--store float16: half the disk) where the store would not fit in memory; not measured here.
FLOAT16_STORE_FROM_BYTES: int | None = None


def default_store(count: int, dimension: int) -> str:
    """The store a new database of ``count`` x ``dimension`` rows gets when none is asked for."""
    bound = FLOAT16_STORE_FROM_BYTES
    return "float16" if bound is not None and count * dimension * 4 >= bound else DEFAULT_STORE


def store_dtype(manifest: dict[str, Any] | None) -> np.dtype:
    """The dtype of a database's vectors files (base and segments) from its manifest."""
    store = (manifest or {}).get("store", DEFAULT_STORE)
    if store not in STORES:
        raise DatabaseError(f"unknown store {store!r} in a vectors manifest; this version reads {', '.join(STORES)}")
    return STORES[store]


def write_vectors_file(path: Path, shape: tuple[int, int], chunks, *, first_row: int = 0,
                       dtype: np.dtype = STORES[DEFAULT_STORE]) -> str:
    """Write a ``.npy`` file of ``shape`` and ``dtype`` (float32 or float16) from an iterable
    of row blocks; return its sha256.

    ``first_row`` is the id of the first row (a segment's), for the message about a bad row;
    a row finite in float32 but beyond float16's range is refused as non-finite too."""
    dtype = np.dtype(dtype)

    def stored_blocks():
        count = 0
        for block in chunks:
            block = np.ascontiguousarray(block, dtype=np.float32)  # (c, d)
            if block.ndim != 2 or block.shape[1] != shape[1]:
                raise ValueError(f"block of shape {block.shape} in a file of shape {shape}")
            with np.errstate(over="ignore"):  # a value beyond float16's range becomes inf: refused below
                stored = block if dtype == block.dtype else block.astype(dtype)  # (c, d) as kept on disk
            finite = np.isfinite(stored).all(axis=1)  # (c,)
            if not finite.all():
                row = first_row + count + int(np.argmin(finite))
                beyond = " (beyond float16's range, 65,504)" if np.isfinite(block[int(np.argmin(finite))]).all() else ""
                raise DatabaseError(f"new vector {row} holds a non-finite value (NaN or infinity){beyond}; "
                                    "refused, nothing was written")
            count += len(block)
            yield stored

    return write_npy(path, shape, dtype, stored_blocks())


def write_npy(path: Path, shape: tuple[int, int], dtype, blocks) -> str:
    """Write a ``.npy`` file of ``shape`` and ``dtype`` from blocks of rows (already of that
    dtype), hashed as written and flushed to disk; return its sha256."""
    count = 0
    with open(path, "wb") as f:
        out = HashingWriter(f)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                  "fortran_order": False, "shape": tuple(int(s) for s in shape)}
        np.lib.format.write_array_header_1_0(out, header)
        for block in blocks:
            out.write(np.ascontiguousarray(block, dtype=dtype).tobytes())
            count += len(block)
        f.flush()
        os.fsync(f.fileno())
    if count != shape[0]:
        raise ValueError(f"wrote {count} rows, expected {shape[0]}")
    return out.digest.hexdigest()


# --- vectors files ---------------------------------------------------------------------

log = logging.getLogger(__name__)

# 1: names in the manifest; 2: names, added segments and deletions in the catalog (catalog.py).
VECTORS_FORMAT = 2
NAME_RULES = ("path", "text")
WRITE_ROWS = 65_536  # rows copied at a time while writing (a memory map of millions is never loaded whole)


def save_vectors(path: str | os.PathLike, vectors, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write ``vectors`` as a new generation of the database at ``path``; return the manifest written.

    ``manifest`` must hold at least ``model`` (an extractor's ``describe()``) and
    ``names`` (one name per row); the manifest returned holds them too. The rows go to the ``.npy`` file, the names to the
    catalog (``catalog.py``) under a new generation token, and the manifest (without the
    names) names that generation. The catalog rows are inserted first, invisible to
    readers; the vectors and manifest are then committed together through the
    roll-forward journal (``journal.py``) under the writers' lock. A kill -9 at any
    moment leaves the old generation or the new one; the next writer deletes leftovers.
    """
    if not isinstance(vectors, np.ndarray):
        vectors = np.asarray(vectors, dtype=np.float32)
    names = list(manifest["names"])
    if vectors.ndim != 2 or len(vectors) != len(names):
        raise ValueError(f"vectors {vectors.shape} and {len(names)} names do not match")
    path = Path(path)
    fields = {k: v for k, v in manifest.items() if k != "names"}
    fields.setdefault("store", default_store(*vectors.shape))
    store_dtype(fields)  # an unknown store is refused before anything is written
    if fields.get("store") == DEFAULT_STORE:
        del fields["store"]  # absent means float32: the manifests of every earlier version
    with journal.change(path) as stage:
        previous = current_generation(path)
        staged_vectors, staged_manifest = stage.file(path), stage.file(manifest_path(path))
        # bounded memory: a memory map of another dtype (an import) is converted a block at a time
        blocks = (np.asarray(vectors[i:i + WRITE_ROWS], dtype=np.float32) for i in range(0, len(vectors), WRITE_ROWS))
        sha = write_vectors_file(staged_vectors, vectors.shape, blocks, dtype=store_dtype(fields))  # hashed too
        stage.known_sha(staged_vectors, sha)
        manifest = {
            "format": VECTORS_FORMAT,
            "kind": "vectors",
            **fields,
            "count": int(vectors.shape[0]),
            "dimension": int(vectors.shape[1]),
            "vectors_sha256": sha,
            "names_sha256": sha256_lines(names),
        }
        manifest["generation"] = write_generation(path, staged_vectors, sha, names, rule_of(manifest))
        write_json_to(staged_manifest, manifest)
        stage.after_commit(lambda: finish_generation(path, manifest["generation"], manifest["names_sha256"], previous))
    return {**manifest, "names": names}  # the file holds no names: they are in the catalog


def read_base_names(path: Path, manifest: dict[str, Any]) -> list[str]:
    """The names of the base rows ``0..count-1`` of a format-2 database, from its catalog."""
    con = catalog.connect(catalog.catalog_path(path))
    try:
        return list(catalog.iter_names(con, manifest["generation"], 0, int(manifest["count"])))
    finally:
        con.close()


def current_generation(path: Path) -> str | None:
    """The generation the manifest of ``path`` names now, if it is readable and names one."""
    try:
        return load_vectors_manifest(path).get("generation")
    except DatabaseError:
        return None


def rule_of(manifest: dict[str, Any]) -> str:
    """The database's name rule: recorded, else ``"text"`` for a text model's vectors, else ``"path"``."""
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    rule = manifest.get("name_rule") or ("text" if model.get("kind") == "text" else "path")
    if rule not in NAME_RULES:
        raise DatabaseError(f"unknown name_rule {rule!r} in a vectors manifest; expected one of {', '.join(NAME_RULES)}")
    return rule


def write_generation(path: Path, base_file: Path, sha: str, names, rule: str, stats=None) -> str:
    """Insert a new generation's items and base segment into the catalog (not yet visible:
    no manifest names it); returns its token. ``base_file`` is the (staged) vectors file;
    ``stats``, the items' file stats (``file_stats.py``) aligned with ``names``, or None."""
    gen = secrets.token_hex(8)
    con = catalog.connect(catalog.catalog_path(path), create=True)
    try:
        with catalog.transaction(con, catalog.catalog_path(path)), inserting_a_new_generation(con):
            catalog.insert_items(con, gen, 0, names, (catalog.item_key(rule, n) for n in names), stats)
            catalog.insert_segment(con, gen, catalog.Segment(0, path.name, 0, len(names), base_file.stat().st_size, sha))
    finally:
        con.close()
    return gen


def finish_generation(path: Path, gen: str, names_sha256: str, previous: str | None = None) -> None:
    """After ``gen`` was committed: delete the rows of other generations and unnamed segment
    files, and vouch for the names this writer inserted (``names_sha256``, their checksum).

    The ``previous`` generation's rows stay until the next full write, so a reader that
    opened it before this commit still finds its names (its rows are in its memory)."""
    where = catalog.catalog_path(path)
    con = catalog.connect(where)
    try:
        with catalog.transaction(con, where):
            catalog.drop_other_generations(con, (gen, previous) if previous else (gen,))
        catalog.remove_unnamed_segments(path, con, gen)
        vouch_for_names(where, names_state(con, where, gen, names_sha256))  # as writers stamp the files they wrote
    finally:
        con.close()


# Fields every vectors manifest must hold, with their JSON types (a missing one is an error).
VECTORS_FIELDS = {"model": (dict,), "count": (int,), "dimension": (int,), "vectors_sha256": (str,),
                  "names_sha256": (str,)}
FORMAT_FIELDS = {1: {"names": (list,)}, 2: {"generation": (str,)}}


def load_vectors_manifest(path: str | os.PathLike, *, with_names: bool = False) -> dict[str, Any]:
    """The manifest of vectors file ``path``, checked for the fields readers rely on.

    A format-1 manifest holds the names (checked against their count and checksum); a
    format-2 one names its catalog generation instead (the names live in the catalog).
    ``with_names`` adds the base rows' ``names`` from the catalog (O(N): for tools and
    tests that compare whole databases, not for opening one).

    Raises:
        DatabaseError: a required field (``VECTORS_FIELDS``) is missing or of the wrong type,
            or the names do not match their count or checksum.
    """
    where = manifest_path(path)
    manifest = read_json(where)
    fmt = manifest.get("format", 1) if isinstance(manifest, dict) else None
    if fmt not in FORMAT_FIELDS:
        raise DatabaseError(f"{where}: vectors format {fmt!r}; this version reads {sorted(FORMAT_FIELDS)}")
    require_fields(where, manifest, {**VECTORS_FIELDS, **FORMAT_FIELDS[fmt]})
    if fmt == 2:
        if not manifest["generation"].isalnum():
            raise DatabaseError(f"{where}: field 'generation' must be a plain token, got {manifest['generation']!r}")
        if with_names:
            manifest["names"] = read_base_names(Path(path), manifest)
        return manifest
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
    """Memory-map a vectors file read-only: ``(count, dimension)`` float32 (or float16: the
    manifest's ``store``; without a manifest, the header's dtype of the two).

    The header and the file size are checked first (against ``manifest``'s count and
    dimension when given), so a damaged file gives one line naming it, not a numpy error.
    """
    path = Path(path)
    if manifest is None:
        shape, dtype, offset = read_npy_header(path)
        if len(shape) != 2 or dtype not in STORES.values():
            raise DatabaseError(f"{path}: expected a 2-d float32 or float16 array, got {dtype} {shape}")
        offset = check_npy_structure(path, *shape, dtype=dtype)
    else:
        shape, dtype = (int(manifest["count"]), int(manifest["dimension"])), store_dtype(manifest)
        offset = check_npy_structure(path, *shape, dtype=dtype)
    if shape[0] == 0:
        return np.zeros(shape, dtype=np.float32)
    try:
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
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
