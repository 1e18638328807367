"""Where quantised (and converted fp32) models are kept, and which one a file list may reuse.

A quantised model lives in ``<cache>/openvino-int8/<name>-<key>-<sample>/`` (``model.xml``,
``model.bin``, ``report.json``); ``key`` hashes the model description, the quantisation
settings and the OpenVINO/NNCF versions, ``sample`` is the calibration sample's identity
(:mod:`similar_images.models.calibration`). The report also lists the sample's members
(file name and SHA-256 of its bytes), so a later file list of the same collection (one that
grew, or was re-ordered) reuses the model when every member is still in it, unchanged:
:func:`reusable_folder`. A different collection, changed files, other settings or another
model, weights or library version find no model and calibrate anew.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from similar_images.errors import ModelError

log = logging.getLogger(__name__)

FOLDER = "openvino-int8"
CONVERSION_VERSION = 1  # bump when the conversion or the seeded random weights change


def model_key(name: str, describe_base: dict[str, Any], settings: dict[str, Any]) -> str:
    """``<name>-<digest>``: the part of a cache folder's name shared by every sample."""
    import nncf
    import openvino as ov

    key = json.dumps([describe_base, settings, ov.__version__, nncf.__version__], sort_keys=True)
    return f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def cache_folder(name: str, describe_base: dict[str, Any], settings: dict[str, Any], sample_sha: str, *,
                 cache_dir=None) -> Path:
    """Where the INT8 model for this model, settings and calibration sample is kept."""
    from similar_images.models.speeds import cache_root

    return cache_root(cache_dir) / FOLDER / f"{model_key(name, describe_base, settings)}-{sample_sha[:16]}"


def candidates(prefix: Path) -> list[Path]:
    """The cached model folders of ``prefix`` (``.../<name>-<key>``), newest first."""
    return [r.parent for r in sorted(prefix.parent.glob(f"{prefix.name}-*/report.json"), key=_mtime, reverse=True)]


def reusable_folder(folders: Sequence[Path], paths: Sequence[str | os.PathLike],
                    sizes: tuple[int, int] | None) -> Path | None:
    """The first of ``folders`` whose calibration sample is all in ``paths``, else ``None``.

    A member counts when a file of ``paths`` has its name and the SHA-256 of its bytes;
    ``sizes`` (calibration, held-out images asked for) must be those the model was made with
    (``None``: any, for a database's own model).
    """
    by_name: dict[str, list[Path]] = {}
    for path in map(Path, paths):
        by_name.setdefault(path.name, []).append(path)
    digests: dict[Path, str | None] = {}
    for folder in folders:
        members = _members(folder / "report.json", sizes)
        if members and all(_present(name, sha, by_name, digests) for name, sha in members):
            return folder
    return None


def sample_record(sample, sizes: tuple[int, int]) -> dict[str, Any]:
    """The ``sample`` entry of a saved report: requested sizes and members (name, SHA-256 of bytes)."""
    files = sample.calibration + sample.holdout
    return {"sizes": list(sizes), "members": [[p.name, sha] for p, sha in zip(files, sample.file_sha256)]}


def _members(report: Path, sizes: tuple[int, int] | None) -> list[list[str]] | None:
    from similar_images.fileio.files import read_json

    try:
        record = read_json(report).get("sample", {})
    except Exception:  # a damaged cache entry is only not reused
        return None
    return record.get("members") if sizes is None or record.get("sizes") == list(sizes) else None


def _present(name: str, sha: str, by_name: dict[str, list[Path]], digests: dict[Path, str | None]) -> bool:
    for path in by_name.get(name, ()):
        if path not in digests:
            try:
                digests[path] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                digests[path] = None
        if digests[path] == sha:
            return True
    return False


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def load_folder(folder: Path):
    """``(openvino.Model, report)`` of a saved INT8 model folder."""
    import openvino as ov

    from similar_images.fileio.files import read_json

    try:
        model, report = ov.Core().read_model(folder / "model.xml"), read_json(folder / "report.json")
    except Exception as exc:
        raise ModelError(f"cached INT8 model {folder} is unreadable ({exc}); delete that folder") from None
    for key in ("identity", "sample"):  # saved for reuse and for people browsing the cache
        report.pop(key, None)
    return model, report


def save_folder(folder: Path, model, report: dict[str, Any], *, reference: dict[str, Any] | None = None) -> None:
    """Write model + report (+ ``reference.npz``: held-out images and vectors, see
    :func:`~similar_images.models.int8_isa.save_reference`) into a temporary folder, then
    rename it into place."""
    import openvino as ov

    from similar_images.fileio.files import write_json_atomic
    from similar_images.models.int8_isa import save_reference

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        if reference is not None:
            save_reference(tmp, reference["images"], reference["fp32"], reference["int8"])
        write_json_atomic(tmp / "report.json", report)
        os.replace(tmp, folder)
    except OSError as exc:
        if not (folder / "model.xml").exists():  # another process did not win the race
            raise ModelError(f"cannot cache the INT8 model in {folder}: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_model_folder(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Copy an INT8 model folder (``model.xml``, ``model.bin``, ``report.json``, and ``reference.npz``
    where the model has one) to ``target``, atomically.

    The copy is made under a temporary name beside ``target`` and renamed, so a crash
    leaves no half-copied model under the final name. An existing ``target`` is kept:
    folders are named by their calibration sample, so the same name holds the same model.
    """
    source, target = Path(source), Path(target)
    if (target / "model.xml").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name in ("model.xml", "model.bin", "report.json", "reference.npz"):
            if name != "reference.npz" or (source / name).is_file():  # models saved before 2026-12-03 have none
                shutil.copyfile(source / name, tmp / name)
        os.replace(tmp, target)
    except OSError as exc:
        if not (target / "model.xml").exists():
            raise ModelError(f"cannot copy the INT8 model to {target}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def converted_model(name: str, describe_base: dict[str, Any], convert, *, cache_dir=None):
    """The fp32 ``openvino.Model`` converted by ``convert()``, kept in the cache and read back later.

    Conversion depends on the weights, not on the collection, so a new collection's INT8
    start-up (and every later fp32 one) reads ``<cache>/openvino-fp32/<name>-<key>/``
    instead of converting again. A cache that cannot be written only costs the saving.
    """
    import openvino as ov

    from similar_images.models.speeds import cache_root

    key = json.dumps([describe_base, ov.__version__, CONVERSION_VERSION], sort_keys=True)
    folder = cache_root(cache_dir) / "openvino-fp32" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (folder / "model.xml").exists():
        try:
            return ov.Core().read_model(folder / "model.xml")
        except Exception as exc:  # a damaged entry is converted again
            log.warning("converting again: cached %s is unreadable (%s)", folder, exc)
    model = convert()
    try:
        save_folder(folder, model, {"describe_base": describe_base, "openvino": ov.__version__})
    except ModelError as exc:
        log.warning("%s", exc)
    return model
