"""INT8 models: NNCF post-training quantisation, checked against fp32, cached on disk.

The calibration images are a deterministic sample of the collection being indexed: the
files are ordered by the SHA-256 of their name (so the choice does not depend on the
order of the file list) and the first ``calibration_size + holdout_size`` are taken.
Most of them calibrate the model; the rest are held out for the fidelity report:
cosine of INT8 to fp32 features (min, mean) and top-10 neighbour agreement (for each
held-out image, the share of its 10 nearest held-out neighbours under fp32 that INT8
also ranks in its top 10). Below ``min_agreement`` INT8 is refused unless forced.

The quantised model is saved under ``<cache>/openvino-int8/<name>-<key>-<sample>/``
(key: model description, quantisation settings, OpenVINO/NNCF versions; sample: the
SHA-256 of the sampled files' bytes), with its report, and reused by later runs and by
queries, which find it from the ``calibration`` entry of the database's ``describe()``.

Settings (measured on real photos, see ``benchmarks/README.md``): NNCF defaults drifted
EfficientNet-Lite0 features (cosine min 0.91, top-10 agreement 0.93 on 100 held-out
photos); full bias correction plus no overflow fix (safe on CPUs with VNNI, which
compute int8 dot products without the 16-bit overflow the fix works around) gave
cosine min 0.98, mean 0.996, agreement 0.96 at the same speed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from similar_images.errors import ImageError, ModelError
from similar_images.models.calibration import MIN_HOLDOUT, Sample, calibration_sample
from similar_images.models.int8_fidelity import (
    check_fidelity,
    format_report,
    int8_vs_fp32_report,
)

log = logging.getLogger(__name__)

MIN_IMAGES = 20  # fewer readable images than this cannot calibrate and check a model


class Int8Model(NamedTuple):
    model: Any  # openvino.Model
    report: dict[str, Any]
    identity: dict[str, Any]  # goes into describe()["calibration"]
    calibrated: bool  # False when loaded from the cache or a database folder
    folder: Path  # where model.xml and report.json are (a database copies it beside its vectors)


def settings_for(name: str) -> dict[str, Any]:
    """NNCF settings used for model ``name`` on this CPU (JSON-able, part of the cache key)."""
    from similar_images.models.speeds import machine

    vnni = any(flag in machine()["isa"] for flag in ("avx512_vnni", "amx_int8"))
    return {
        "preset": "performance",
        "fast_bias_correction": False,
        "overflow_fix": "disable" if vnni else "first_layer_only",
    }


def int8_model(
    *,
    name: str,
    fp32_model: Callable[[], Any],
    preprocess: Callable[[np.ndarray], np.ndarray],
    input_size: tuple[int, int],
    describe_base: dict[str, Any],
    calibration_paths=None,
    calibration: dict[str, Any] | None = None,
    calibration_size: int = 300,
    holdout_size: int = 100,
    min_agreement: float = 0.9,
    force: bool = False,
    cache_dir=None,
    model_folder=None,
    show_progress: bool = True,
) -> Int8Model:
    """The INT8 model for ``name``: from a database's folder, the cache, or calibrated now and cached.

    Args:
        fp32_model: returns the fp32 ``openvino.Model`` (called only when calibrating).
        calibration_paths: image files of the collection (a sample is taken).
        calibration: a database's ``describe()["calibration"]``: find that model in
            ``model_folder`` (the copy a database keeps beside its vectors), else in the cache.
        model_folder: a folder written by :func:`save_model_folder` (``model.xml``, ``report.json``).
        Others: see :func:`similar_images.models.openvino_runtime.create_openvino_extractor`.

    Raises:
        ValueError: neither ``calibration_paths`` nor ``calibration`` given.
        ModelError: too few readable images, the cached model named by ``calibration``
            is missing or belongs to other images, or the fidelity check failed.
    """
    # A database's own settings win: its vectors came from exactly that model.
    settings = dict(calibration["settings"]) if calibration and calibration.get("settings") else settings_for(name)
    if calibration_paths is None and calibration is None:
        raise ValueError(
            "precision 'int8' needs calibration images from the collection being indexed "
            "(calibration_paths=...) or the calibration entry of a database built in INT8"
        )
    sample = None
    if calibration_paths is not None:
        sample = calibration_sample(list(calibration_paths), calibration_size, holdout_size)
        if calibration is not None and calibration.get("sample_sha256") != sample.sha256:
            raise ModelError(
                f"{name} INT8: the database was calibrated on other images (sample "
                f"{str(calibration.get('sample_sha256'))[:12]}, these are {sample.sha256[:12]})"
            )
    sample_sha = sample.sha256 if sample else str(calibration.get("sample_sha256"))
    folder = cache_folder(name, describe_base, settings, sample_sha, cache_dir=cache_dir)
    identity = {"sample_sha256": sample_sha, "settings": settings}
    if model_folder is not None and calibration is not None and (Path(model_folder) / "model.xml").exists():
        folder = Path(model_folder)
        model, report = _load_cached(folder)
        _check_folder_identity(folder, identity)
        emit(f"{name} INT8 model of the database ({folder}), fidelity {format_report(report)}")
        calibrated = False
    elif (folder / "model.xml").exists():
        model, report = _load_cached(folder)
        emit(f"{name} INT8 model from the cache ({folder}), fidelity {format_report(report)}")
        calibrated = False
    elif sample is None:
        raise ModelError(
            f"the {name} INT8 model this database was built with (calibration sample "
            f"{sample_sha[:12]}) is not in the cache {folder.parent}; rebuild it with the "
            "database's images (extract --precision int8) or use an fp32 database"
        )
    else:
        model, report = _calibrate_and_check(
            name, fp32_model, preprocess, input_size, sample, settings, show_progress
        )
        _save(folder, model, {**report, "identity": identity})
        calibrated = True
    identity["images"] = report["calibration_images"]
    check_fidelity(name, report, min_agreement=min_agreement, force=force)
    return Int8Model(model, report, identity, calibrated, folder)


def _check_folder_identity(folder: Path, identity: dict[str, Any]) -> None:
    from similar_images.db.files import read_json

    saved = read_json(folder / "report.json").get("identity", {})
    if saved.get("sample_sha256") != identity["sample_sha256"]:
        raise ModelError(f"{folder}: this INT8 model was calibrated on other images than the database's "
                         f"(sample {str(saved.get('sample_sha256'))[:12]}, the database's {identity['sample_sha256'][:12]})")


def save_model_folder(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Copy an INT8 model folder (``model.xml``, ``model.bin``, ``report.json``) to ``target``, atomically.

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
        for name in ("model.xml", "model.bin", "report.json"):
            shutil.copyfile(source / name, tmp / name)
        os.replace(tmp, target)
    except OSError as exc:
        if not (target / "model.xml").exists():
            raise ModelError(f"cannot copy the INT8 model to {target}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def cache_folder(name: str, describe_base: dict[str, Any], settings: dict[str, Any], sample_sha: str, *, cache_dir=None) -> Path:
    """Where the INT8 model for this model, settings and calibration sample is kept."""
    import nncf
    import openvino as ov

    from similar_images.models.speeds import cache_root

    key = json.dumps([describe_base, settings, ov.__version__, nncf.__version__], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_root(cache_dir) / "openvino-int8" / f"{name}-{digest}-{sample_sha[:16]}"


def _load_cached(folder: Path):
    import openvino as ov

    from similar_images.db.files import read_json

    try:
        model, report = ov.Core().read_model(folder / "model.xml"), read_json(folder / "report.json")
    except Exception as exc:
        raise ModelError(f"cached INT8 model {folder} is unreadable ({exc}); delete that folder") from None
    report.pop("identity", None)  # saved for people browsing the cache; not part of the report
    return model, report


def _save(folder: Path, model, report: dict[str, Any]) -> None:
    """Write model + report into a temporary folder, then rename it into place."""
    import openvino as ov

    from similar_images.db.files import write_json_atomic

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
        write_json_atomic(tmp / "report.json", report)
        os.replace(tmp, folder)
    except OSError as exc:
        if not (folder / "model.xml").exists():  # another process did not win the race
            raise ModelError(f"cannot cache the INT8 model in {folder}: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _calibrate_and_check(name, fp32_model, preprocess, input_size, sample: Sample, settings, show_progress):
    calib = load_images(sample.calibration, input_size, show_progress=show_progress)  # (n, h, w, 3) uint8
    held = load_images(sample.holdout, input_size, show_progress=show_progress)  # (m, h, w, 3) uint8
    if len(calib) + len(held) < MIN_IMAGES or len(held) < MIN_HOLDOUT:
        raise ModelError(
            f"{name} INT8 calibration needs at least {MIN_IMAGES} readable images "
            f"({MIN_HOLDOUT} held out), got {len(calib) + len(held)} ({len(held)} held out)"
        )
    fp32 = fp32_model()  # converted only now: bad images fail fast
    model = quantize(fp32, calib, preprocess, settings)
    report = int8_vs_fp32_report(_features(fp32, held, preprocess), _features(model, held, preprocess))
    report["calibration_images"] = len(calib)
    emit(f"{name} INT8 fidelity: {format_report(report)}")
    return model, report


def load_images(paths: Sequence[Path], input_size: tuple[int, int], *, show_progress: bool = True) -> np.ndarray:
    """Decode ``paths`` for the model, skipping unreadable ones: ``(n, h, w, 3)`` uint8."""
    from tqdm.auto import tqdm

    from similar_images.images import load_for_model

    out = []
    for path in tqdm(paths, desc="calibration images", unit="img", disable=not show_progress):
        try:
            out.append(load_for_model(path, input_size))
        except ImageError as exc:
            log.info("calibration: skipping %s", exc)
    return np.stack(out) if out else np.zeros((0, *input_size, 3), np.uint8)


def quantize(fp32, images: np.ndarray, preprocess, settings: dict[str, Any]):
    """NNCF post-training quantisation of ``fp32`` calibrated on ``images`` (uint8 NHWC)."""
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
    )

    dataset = nncf.Dataset(list(images), lambda image: preprocess(image[None]))
    return nncf.quantize(
        fp32,
        dataset,
        preset=nncf.QuantizationPreset(settings["preset"]),
        subset_size=len(images),
        fast_bias_correction=settings["fast_bias_correction"],
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix(settings["overflow_fix"])),
    )


def _features(model, images: np.ndarray, preprocess, batch: int = 8) -> np.ndarray:
    from similar_images.models.openvino_requests import compile_model

    compiled = compile_model(model)
    parts = [compiled(preprocess(images[i : i + batch]))[0] for i in range(0, len(images), batch)]
    return np.concatenate(parts).reshape(len(images), -1)  # (n, dim)


def emit(text: str) -> None:
    """Log ``text`` and print it to stderr: users must see what INT8 costs in fidelity."""
    from tqdm.auto import tqdm

    log.info(text)
    tqdm.write(text, file=sys.stderr)
