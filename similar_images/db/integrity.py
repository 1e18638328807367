"""Checks on open: the .npy header, the manifests' fields, and the content by chunks.

Every open runs the cheap structural checks (the file's size agrees with its header,
the header says float32 of the manifest's count x dimension, the manifests' fields have
the right types and the required checksums are present). The *content* (the vectors'
sha256, and that every value is finite) is checked by reading the file in chunks,
unless the caller trusts the files (``trust=True``, ``--trust``) or a **verification
stamp** shows that this very file was checked before.

The stamp is a small sidecar ``<file>.verified.json`` holding the checksum that was
verified and the file's ``size``, ``mtime_ns``, ``ctime_ns`` and inode at that moment.
Any write to the file (even one that restores the old mtime with ``touch -d``) changes
its ``ctime_ns``, and a copy or a rename-over changes the inode, so a matching stamp
means "the same bytes as when they were verified". It is a sidecar, not a manifest
field, because it is a cache: readers write it without the writers' lock or the
journal, a read-only database simply re-checks every time, and a lost stamp costs one
re-check, never a wrong answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from similar_images.errors import DatabaseError
from similar_images.fileio.files import read_json, write_json_atomic

log = logging.getLogger(__name__)

STAMP_SUFFIX = ".verified.json"
CHUNK_BYTES = 16 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# --- the .npy header --------------------------------------------------------------------


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` of a ``.npy`` file, with a one-line error naming the file."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
    except FileNotFoundError:
        raise DatabaseError(f"{path}: vectors file not found") from None
    except OSError as exc:
        raise DatabaseError(f"{path}: cannot read the vectors file ({exc.strerror})") from None
    except Exception as exc:  # noqa: BLE001  numpy raises ValueError, SyntaxError, TokenError, EOFError...
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatabaseError(f"{path}: corrupt .npy header ({detail})") from None
    if fortran:
        raise DatabaseError(f"{path}: corrupt .npy header (field 'fortran_order' is True)")
    return tuple(shape), dtype, offset


def check_npy_structure(path: Path, count: int, dimension: int, *, dtype=np.float32) -> int:
    """Check the header and size of vectors file ``path`` against the manifest (``dtype``: its
    store, float32 or float16); return the data offset."""
    expected_dtype = np.dtype(dtype)
    shape, dtype, offset = read_npy_header(path)
    if dtype != expected_dtype:
        raise DatabaseError(f"{path}: header field 'descr' is {dtype}, expected {expected_dtype} "
                            f"({expected_dtype.str!r})")
    if shape != (count, dimension):
        shown = " x ".join(str(s) for s in shape)
        raise DatabaseError(f"{path}: the file holds {shown} vectors but its manifest lists "
                            f"{count} names of dimension {dimension}")
    size = path.stat().st_size
    expected = offset + count * dimension * expected_dtype.itemsize
    if size != expected:
        raise DatabaseError(f"{path}: {size} bytes, but its header says {expected} (truncated or padded)")
    return offset


# --- manifest fields ----------------------------------------------------------------------


def require_fields(where: Path, manifest: Any, types: dict[str, tuple[type, ...]]) -> None:
    """Each field of ``types`` is present in ``manifest`` with one of its types (bool is not an int)."""
    if not isinstance(manifest, dict):
        raise DatabaseError(f"{where}: not a JSON object")
    for key, allowed in types.items():
        if key not in manifest:
            raise DatabaseError(f"{where}: missing field {key!r}")
        value = manifest[key]
        if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
            names = " or ".join(t.__name__ for t in allowed)
            raise DatabaseError(f"{where}: field {key!r} must be {names}, got {value!r:.60}")
        if key.endswith("_sha256") and not _SHA256.match(value):
            raise DatabaseError(f"{where}: field {key!r} is not a sha256 checksum: {value!r:.70}")
        if allowed == (int,) and value < 0:
            raise DatabaseError(f"{where}: field {key!r} must not be negative, got {value}")


# --- content: checksum and finiteness, by chunks ---------------------------------------


def check_content(path: Path, recorded_sha: str, offset: int, *, trust: bool = False, fresh: bool = False) -> str:
    """Check the vectors file's bytes against ``recorded_sha`` and that every value is finite.

    Args:
        path: the ``.npy`` file; ``offset`` is where its float32 data starts.
        recorded_sha: the manifest's ``vectors_sha256``.
        trust: skip the content check (the structural checks still ran).
        fresh: ignore a verification stamp (writers re-check what they are about to re-sign).

    Returns:
        ``"trusted"``, ``"stamp"`` (a matching verification stamp) or ``"checked"``.

    Raises:
        DatabaseError: the checksum differs, or a row holds NaN or infinity.
    """
    if trust:
        return "trusted"
    if not fresh and stamp_matches(path, recorded_sha):
        return "stamp"
    digest, row_bytes = hashlib.sha256(), None
    shape, dtype, offset = read_npy_header(path)  # the file's own offset and dtype, whatever the caller passed
    size = dtype.itemsize if dtype in (np.dtype(np.float16), np.dtype(np.float32)) else 4
    values_dtype = dtype if size == dtype.itemsize else np.dtype("<f4")
    with open(path, "rb") as f:
        digest.update(f.read(offset))
        row_bytes = max(size * int(shape[1]), size) if len(shape) == 2 else size
        chunk = max(CHUNK_BYTES // row_bytes, 1) * row_bytes
        first_bad, done = None, 0
        while block := f.read(chunk):
            digest.update(block)
            if first_bad is None:
                values = np.frombuffer(block[: len(block) // size * size], dtype=values_dtype)
                if not np.isfinite(values).all():
                    first_bad = (done + int(np.argmin(np.isfinite(values))) * size) // row_bytes
            done += len(block)
    if digest.hexdigest() != recorded_sha:
        raise DatabaseError(f"{path}: contents do not match the checksum in its manifest "
                            "(damaged or edited); run `similar-images verify`")
    if first_bad is not None:
        raise DatabaseError(f"{path}: row {first_bad} holds a non-finite value (NaN or infinity)")
    write_stamp(path, recorded_sha)
    return "checked"


def check_file_sha(path: Path, recorded_sha: str, *, fresh: bool = False, what: str = "file") -> str:
    """Check any file against ``recorded_sha`` (stamp-aware); ``"stamp"`` or ``"checked"``."""
    if not fresh and stamp_matches(path, recorded_sha):
        return "stamp"
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
    if digest.hexdigest() != recorded_sha:
        raise DatabaseError(f"{path}: {what} contents do not match the checksum in its manifest; "
                            "run `similar-images verify --repair`")
    write_stamp(path, recorded_sha)
    return "checked"


# --- verification stamps -----------------------------------------------------------------


def stamp_path(path: Path) -> Path:
    return Path(str(path) + STAMP_SUFFIX)


def _identity(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


def stamp_matches(path: Path, sha: str) -> bool:
    target = stamp_path(path)
    if not target.exists():
        return False
    try:
        stamp = read_json(target)
        return isinstance(stamp, dict) and stamp.get("sha256") == sha and stamp.get("file") == _identity(path)
    except (DatabaseError, OSError):
        return False


def write_stamp(path: Path, sha: str) -> None:
    """Record that ``path`` (as it is now) matched ``sha``; silently skipped where the folder is read-only."""
    with contextlib.suppress(OSError):
        write_json_atomic(stamp_path(path), {"sha256": sha, "file": _identity(path)})
        log.debug("verified %s", path)


def drop_stamp(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(stamp_path(path))
