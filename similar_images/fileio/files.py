"""Files on disk: atomic writes, JSON, checksums and file lists.

Every file this package produces is written under a temporary name in the same folder,
flushed to disk, then renamed over the final name, so a crash (Ctrl-C, kill -9, power
loss) never leaves a partial file under a final name.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from similar_images.errors import DatabaseError

MANIFEST_SUFFIX = ".manifest.json"


def manifest_path(path: str | os.PathLike) -> Path:
    """The manifest that describes ``path`` (``<path>.manifest.json``)."""
    return Path(str(path) + MANIFEST_SUFFIX)


def refine_codes_path(index_path: str | os.PathLike) -> Path:
    """The 8-bit codes of an index's refine stage (``<index>.refine.npy``; ``db/refine.py``)."""
    return Path(str(index_path) + ".refine.npy")


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
        fsync_dir(final.parent)
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
    except RecursionError:  # json's C scanner gives up on deeply nested arrays or objects
        raise DatabaseError(f"{path}: unreadable JSON (nested too deeply)") from None


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
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


def read_file_list(path: str | os.PathLike) -> list[str]:
    """One relative path a line, blank lines and surrounding spaces ignored.

    Bytes that are not UTF-8 are kept as surrogate escapes, so one bad line is skipped
    by the input rules (``inputs.py``) instead of refusing the whole list.
    """
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
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


def fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform allows opening a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class HashingWriter:
    """A binary file that hashes what is written to it."""

    def __init__(self, f):
        self.f, self.digest = f, hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self.f.write(data)


def write_json_to(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` (a staged name) and flush it to disk."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
