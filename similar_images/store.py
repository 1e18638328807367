"""Files on disk: atomic writes and JSON manifests.

Every file this package produces is written under a temporary name in the same folder,
flushed to disk, then renamed over the final name, so a crash (Ctrl-C, kill -9, power
loss) never leaves a partial file under a final name.

Layout of a vectors file ``V`` (for example ``ms_coco_file_list.txt.saved_predictions.npy``):

* ``V``: a ``.npy`` array, float32, shape ``(count, dimension)``, raw model outputs
  (not normalised), row ``i`` belongs to ``manifest["names"][i]``.
* ``V.manifest.json``: see :func:`manifest_path`; holds the model description, the
  row-aligned names, the skipped files with reasons, checksums and timings.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import DatabaseError

MANIFEST_SUFFIX = ".manifest.json"


def manifest_path(path: str | os.PathLike) -> Path:
    """The manifest that describes ``path`` (``<path>.manifest.json``)."""
    return Path(str(path) + MANIFEST_SUFFIX)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it over ``final`` on success.

    The caller writes the whole file to the yielded path. If the block raises, the
    temporary file is removed and ``final`` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file private (0600); give the final file the usual umask-based
    # permissions so a database can be shared like any other file.
    os.chmod(tmp_path, 0o666 & ~_current_umask())
    try:
        yield tmp_path
        _fsync_file(tmp_path)
        os.replace(tmp_path, final)
        _fsync_dir(final.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, raising :class:`DatabaseError` with the path on any failure."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatabaseError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise DatabaseError(f"{path}: unreadable JSON ({exc})") from None


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_lines(lines: list[str]) -> str:
    """Checksum of a list of names, independent of how the file ended its lines."""
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def read_file_list(path: str | os.PathLike) -> list[str]:
    """One relative path a line, blank lines and surrounding spaces ignored."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


@functools.lru_cache(maxsize=1)
def _current_umask() -> int:
    # Reading the umask means setting it; do it once, not on every write from any thread.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform allows opening a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _HashingWriter:
    """A binary file that hashes what is written to it."""

    def __init__(self, f):
        self.f, self.digest = f, hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self.f.write(data)


def write_vectors_file(path: Path, shape: tuple[int, int], chunks) -> str:
    """Write a ``.npy`` float32 file of ``shape`` from an iterable of row blocks; return its sha256."""
    count = 0
    with open(path, "wb") as f:
        out = _HashingWriter(f)
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


def write_json_to(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` (a staged name) and flush it to disk."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())


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
    from . import journal  # journal builds on this module

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    names = list(manifest["names"])
    if vectors.ndim != 2 or len(vectors) != len(names):
        raise ValueError(f"vectors {vectors.shape} and {len(names)} names do not match")
    path = Path(path)
    finals = [path, manifest_path(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with journal.writer_lock(path):
        journal.roll_forward(journal.journal_path(path))
        journal.discard_staged(finals)
        staged = [journal.staged_path(final) for final in finals]
        try:
            manifest = {
                "format": VECTORS_FORMAT,
                "kind": "vectors",
                **manifest,
                "count": int(vectors.shape[0]),
                "dimension": int(vectors.shape[1]),
                # hashed while written: no second read of a file that can be gigabytes
                "vectors_sha256": write_vectors_file(staged[0], vectors.shape, [vectors]),
                "names_sha256": sha256_lines(names),
            }
            write_json_to(staged[1], manifest)
        except BaseException:
            for file in staged:
                file.unlink(missing_ok=True)
            raise
        journal.commit(journal.journal_path(path), list(zip(staged, finals)))
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
