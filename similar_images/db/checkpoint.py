"""Checkpoints of an extraction run: ``<output>.partial/``.

The file list is cut into fixed chunks (``chunk_size`` names each). Each finished chunk
is written atomically as ``chunk-NNNNNN.npz`` (vectors, names, skipped files), so after
Ctrl-C or kill -9 at any moment every chunk file present is complete. ``state.json``
records what the run is (file-list checksum, model description, batch and chunk size);
a resumed run must match it.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from similar_images.errors import DatabaseError
from similar_images.fileio.files import read_json, write_bytes_atomic, write_json_atomic

logger = logging.getLogger(__name__)

STATE_FORMAT = 1
PARTIAL_SUFFIX = ".partial"


@dataclass
class ChunkResult:
    """What one chunk of names became.

    Attributes:
        vectors: ``(len(names), dim)`` float32, row ``i`` belongs to ``names[i]``.
        names: the names that were embedded, in input order.
        skipped: ``{"path", "reason", "message"}`` for each name that was not.
    """

    vectors: np.ndarray
    names: list[str]
    skipped: list[dict[str, str]]



def partial_dir(output: str | os.PathLike) -> Path:
    """The checkpoint folder of vectors file ``output``."""
    return Path(str(output) + PARTIAL_SUFFIX)


class Checkpoint:
    """The chunks saved so far by a run writing ``output``."""

    def __init__(self, output: str | os.PathLike):
        self.dir = partial_dir(output)
        self.state_path = self.dir / "state.json"

    def exists(self) -> bool:
        return self.state_path.is_file()

    def start(self, state: dict[str, Any]) -> None:
        """Begin a fresh run: an empty folder holding only ``state``."""
        self.remove()
        self.dir.mkdir(parents=True)
        write_json_atomic(self.state_path, {"format": STATE_FORMAT, **state})

    def load_state(self) -> dict[str, Any]:
        return read_json(self.state_path)

    def chunk_path(self, index: int) -> Path:
        return self.dir / f"chunk-{index:06d}.npz"

    def finished(self, count: int) -> list[int]:
        """Indices below ``count`` whose chunk file is present and readable.

        Chunk files are complete by construction (atomic writes); one damaged anyway
        (disk trouble, meddling) is deleted with a warning so the run redoes it.
        """
        done = []
        for index in range(count):
            path = self.chunk_path(index)
            if not path.is_file():
                continue
            if _readable(path):
                done.append(index)
            else:
                logger.warning("%s is damaged; deleting it, its chunk will be redone", path)
                path.unlink()
        return done

    def save_chunk(self, index: int, result: ChunkResult, *, elapsed_s: float) -> None:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            vectors=np.asarray(result.vectors, dtype=np.float32),  # (m, dim)
            names=np.array(result.names, dtype=str),
            skipped=np.array(json.dumps(result.skipped)),
            elapsed_s=np.float64(elapsed_s),
        )
        try:
            write_bytes_atomic(self.chunk_path(index), buffer.getvalue())
        except OSError as exc:
            what = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            raise DatabaseError(f"{self.chunk_path(index)}: {what} while saving a checkpoint; the output is "
                                "unchanged and finished chunks are kept: free space, then rerun with --resume") from None

    def load_chunk(self, index: int, dim: int) -> tuple[ChunkResult, float]:
        """One saved chunk; a damaged one is deleted (so ``--resume`` redoes it) and reported."""
        path = self.chunk_path(index)
        try:
            with np.load(path, allow_pickle=False) as data:
                vectors = np.asarray(data["vectors"], dtype=np.float32)
                names = [str(name) for name in data["names"]]
                skipped = json.loads(str(data["skipped"]))
                elapsed = float(data["elapsed_s"])
            if vectors.shape != (len(names), dim):
                raise ValueError(f"vectors {vectors.shape} for {len(names)} names of dimension {dim}")
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            path.unlink(missing_ok=True)
            raise DatabaseError(
                f"{path}: damaged checkpoint ({exc}); deleted it, rerun with --resume to redo that chunk"
            ) from None
        return ChunkResult(vectors, names, skipped), elapsed

    def assemble(self, count: int, dim: int) -> tuple[np.ndarray, list[str], list[dict], float]:
        """All ``count`` chunks joined in order: vectors ``(n, dim)``, names, skipped, seconds spent."""
        results, elapsed = [], 0.0
        for index in range(count):
            result, seconds = self.load_chunk(index, dim)
            results.append(result)
            elapsed += seconds
        total = sum(len(r.names) for r in results)
        vectors = np.empty((total, dim), dtype=np.float32)  # (n, dim)
        names, skipped, row = [], [], 0
        for result in results:
            vectors[row : row + len(result.names)] = result.vectors
            row += len(result.names)
            names.extend(result.names)
            skipped.extend(result.skipped)
        return vectors, names, skipped, elapsed

    def remove(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)


def _readable(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {"vectors", "names", "skipped", "elapsed_s"} <= set(data.files)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile):
        return False


def check_compatible(saved: dict[str, Any], wanted: dict[str, Any], where: Path) -> None:
    """Refuse to resume a run made from another file list or model."""
    if saved.get("file_list_sha256") != wanted["file_list_sha256"]:
        raise DatabaseError(
            f"cannot resume: {where} was made from a different file list; "
            "use --force without --resume to start over"
        )
    if _normal(saved.get("model")) != _normal(wanted["model"]):
        if _only_device_differs(saved.get("model"), wanted["model"]):
            was = _device(saved["model"])
            raise DatabaseError(
                f"cannot resume: {where} was made on device {was}, this run uses {_device(wanted['model'])}; "
                f"resume with --device {was}, or use --force without --resume to start over"
            )
        raise DatabaseError(
            f"cannot resume: {where} was made with model {_short(saved.get('model'))}, "
            f"not {_short(wanted['model'])}; use --force without --resume to start over"
        )
    if str(saved.get("image_dir")) != str(wanted["image_dir"]):
        logger.warning("resuming with image folder %s; the partial run used %s",
                       wanted["image_dir"], saved.get("image_dir"))


def _normal(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True))


def _short(model: Any) -> str:
    if not isinstance(model, dict):
        return repr(model)
    return ", ".join(f"{k}={model.get(k)}" for k in ("name", "weights", "runtime", "precision", "device") if k in model)


def _device(model: dict[str, Any]) -> str:
    return str(model.get("device", "cpu"))  # CPU descriptions carry no device (models.devices.describe_device)


def _only_device_differs(saved: Any, wanted: dict[str, Any]) -> bool:
    return isinstance(saved, dict) and _without_device(saved) == _without_device(wanted)


def _without_device(model: dict[str, Any]) -> Any:
    return _normal({k: v for k, v in model.items() if k != "device"})
