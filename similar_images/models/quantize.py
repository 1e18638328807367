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
SHA-256 of the sampled files' bytes), with its report, and reused by later runs, by
later file lists that still hold its whole sample (:mod:`~similar_images.models.int8_cache`)
and by queries, which find it from the ``calibration`` entry of the database's ``describe()``.
Each start-up stage (decode, conversion, NNCF quantisation, held-out fp32 and INT8
features) is timed, logged and kept in the report (``startup_s``).

Settings (measured on real photos, see ``benchmarks/README.md``), by the CPU's INT8
arithmetic (:mod:`~similar_images.models.int8_isa`): with VNNI or AMX, full bias correction
and no overflow fix (cosine min 0.98, mean 0.996, agreement 0.96 for EfficientNet-Lite0);
without (AVX2), products saturate in 16 bits, so the overflow fix on every layer and the
first convolution (its 3-channel input) in fp32 (AVX2: agreement 0.954-0.968 against
0.896-0.907 with the fix on the first layer only). The model records the ISA it was
calibrated on and keeps its held-out images, so another CPU re-checks it (``int8_isa.recheck``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from similar_images.errors import ImageError, ModelError
from similar_images.models.calibration import MIN_HOLDOUT, Sample, calibration_sample
from similar_images.models.int8_cache import (  # noqa: F401  (cache_folder, save_model_folder: public here)
    cache_folder,
    candidates,
    load_folder,
    model_key,
    reusable_folder,
    sample_record,
    save_folder,
    save_model_folder,
)
from similar_images.models.int8_fidelity import (
    check_fidelity,
    format_report,
    int8_vs_fp32_report,
)
from similar_images.models.int8_isa import cpu_isa, exact_int8, recheck

log = logging.getLogger(__name__)

MIN_IMAGES = 20  # fewer readable images than this cannot calibrate and check a model
# Calibration images per model: the smallest of 50/100/200/300 whose held-out top-10
# agreement was within 0.01 of 300 images', measured by benchmarks/calibration_size.py
# --study on 100 held-out photo-like JPEGs (table in benchmarks/README.md, "INT8 cold
# start"; VGG16 with random seeded weights: 0.944 at 50, 0.937 at 300; EfficientNet-Lite0
# 0.957 at 50, 0.961 at 300).
CALIBRATION_SIZES = {"vgg16": 50, "efficientnet-lite0": 50}
DEFAULT_CALIBRATION_SIZE = 300  # other models
HOLDOUT_SIZE = 100  # held-out images for the fidelity report
# VGG16's fp32 features of the held-out images are its costliest check (about 7 images/s
# on 2 cores): 50 measured the same agreement as 100 (0.940-0.944 against 0.941-0.944).
HOLDOUT_SIZES = {"vgg16": 50}


class Int8Model(NamedTuple):
    model: Any  # openvino.Model
    report: dict[str, Any]
    identity: dict[str, Any]  # goes into describe()["calibration"]
    calibrated: bool  # False when loaded from the cache or a database folder
    folder: Path  # where model.xml and report.json are (a database copies it beside its vectors)
    stages: dict[str, float] = {}  # seconds of each start-up stage in this process


def settings_for(name: str) -> dict[str, Any]:
    """NNCF settings used for model ``name`` on this CPU (JSON-able, part of the cache key)."""
    if exact_int8(cpu_isa()):
        return {"preset": "performance", "fast_bias_correction": False, "overflow_fix": "disable"}
    # 16-bit saturation without VNNI: 7-bit weights everywhere, the RGB convolution in fp32.
    return {"preset": "performance", "fast_bias_correction": False, "overflow_fix": "enable",
            "fp32_layers": ["first_convolution"]}


def int8_model(
    *,
    name: str,
    fp32_model: Callable[[], Any],
    preprocess: Callable[[np.ndarray], np.ndarray],
    input_size: tuple[int, int],
    describe_base: dict[str, Any],
    calibration_paths=None,
    calibration: dict[str, Any] | None = None,
    calibration_size: int | None = None,
    holdout_size: int = HOLDOUT_SIZE,
    min_agreement: float = 0.9,
    force: bool = False,
    cache_dir=None,
    model_folder=None,
    show_progress: bool = True,
) -> Int8Model:
    """The INT8 model for ``name``: from a database's folder, the cache, or calibrated now and cached.

    Args:
        fp32_model: returns the fp32 ``openvino.Model`` (called only when calibrating).
        calibration_paths: image files of the collection (a sample is taken). A cached
            model whose sample is all still in these files (the list grew) is reused.
        calibration: a database's ``describe()["calibration"]``: find that model in
            ``model_folder`` (the copy a database keeps beside its vectors), else in the cache.
        calibration_size: ``None``: the model's measured default, :data:`CALIBRATION_SIZES`.
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
    sizes = (calibration_size or CALIBRATION_SIZES.get(name, DEFAULT_CALIBRATION_SIZE), holdout_size)
    started = time.perf_counter()
    if calibration is not None:
        found = _database_model(name, describe_base, settings, calibration, calibration_paths, sizes,
                                cache_dir=cache_dir, model_folder=model_folder)
    else:
        found = _collection_model(name, describe_base, settings, calibration_paths, sizes, cache_dir=cache_dir)
    if isinstance(found, Sample):  # nothing to reuse: calibrate on the sample and cache the model
        folder = cache_folder(name, describe_base, settings, found.sha256, cache_dir=cache_dir)
        model, report, stages, reference = _calibrate_and_check(name, fp32_model, preprocess, input_size, found,
                                                                show_progress, settings=settings)
        identity = {"sample_sha256": found.sha256, "settings": settings}
        save_folder(folder, model, {**report, "identity": identity, "sample": sample_record(found, sizes)},
                    reference=reference)
        calibrated = True
    else:
        folder, identity, how = found
        model, report = load_folder(folder)
        emit(f"{name} INT8 model {how} ({folder}), fidelity {format_report(report)}")
        stages, calibrated = {"load_int8_s": round(time.perf_counter() - started, 2)}, False
    identity["images"] = report["calibration_images"]
    made_on = calibration.get("isa") if calibration is not None else report.get("isa")  # the database's record wins
    if made_on is not None:  # databases from before ISAs were recorded have none
        identity["isa"] = made_on
    check_fidelity(name, report, min_agreement=min_agreement, force=force)
    if not calibrated:  # made on a CPU of another ISA? The same guard on its held-out images, here.
        here = recheck(name, folder, report, lambda images: features(model, images, preprocess),
                       min_agreement=min_agreement, force=force, settings=settings)
        if here is not None:
            emit(f"{name} INT8 re-checked on this CPU ({here['isa']}, calibrated on {here['calibrated_on']}): "
                 f"{format_report(here)}, cosine to the calibration CPU's vectors min "
                 f"{here['cosine_to_calibration_min']:.4f}")
            report = {**report, "recheck": here}
    return Int8Model(model, report, identity, calibrated, folder, stages)


def _database_model(name, describe_base, settings, calibration, paths, sizes, *, cache_dir, model_folder):
    """``(folder, identity, how)`` of the model a database was built with, checked against ``paths``."""
    sample_sha = str(calibration.get("sample_sha256"))
    identity = {"sample_sha256": sample_sha, "settings": settings}
    folder = cache_folder(name, describe_base, settings, sample_sha, cache_dir=cache_dir)
    how = "from the cache"
    if model_folder is not None and (Path(model_folder) / "model.xml").exists():
        folder, how = Path(model_folder), "of the database"
        _check_folder_identity(folder, identity)
    if paths is not None and calibration_sample(list(paths), *sizes).sha256 != sample_sha and not (
        (folder / "model.xml").exists() and reusable_folder([folder], paths, None) == folder
    ):
        raise ModelError(f"{name} INT8: the database was calibrated on other images (sample "
                         f"{sample_sha[:12]}, not all of them in these files)")
    if not (folder / "model.xml").exists():
        raise ModelError(
            f"the {name} INT8 model this database was built with (calibration sample "
            f"{sample_sha[:12]}) is not in the cache {folder.parent}; rebuild it with the "
            "database's images (extract --precision int8) or use an fp32 database"
        )
    return folder, identity, how


def _collection_model(name, describe_base, settings, paths, sizes, *, cache_dir):
    """A cached model for these files ``(folder, identity, how)``, else the sample to calibrate on."""
    paths = list(paths)
    sample = calibration_sample(paths, *sizes)
    folder = cache_folder(name, describe_base, settings, sample.sha256, cache_dir=cache_dir)
    if (folder / "model.xml").exists():
        return folder, {"sample_sha256": sample.sha256, "settings": settings}, "from the cache"
    reused = reusable_folder(candidates(folder.parent / model_key(name, describe_base, settings)), paths, sizes)
    if reused is None:
        return sample
    from similar_images.fileio.files import read_json

    identity = read_json(reused / "report.json")["identity"]
    return reused, {"sample_sha256": identity["sample_sha256"], "settings": settings}, (
        "from the cache: its calibration sample is all still in these files")


def _check_folder_identity(folder: Path, identity: dict[str, Any]) -> None:
    from similar_images.fileio.files import read_json

    saved = read_json(folder / "report.json").get("identity", {})
    if saved.get("sample_sha256") != identity["sample_sha256"]:
        raise ModelError(f"{folder}: this INT8 model was calibrated on other images than the database's "
                         f"(sample {str(saved.get('sample_sha256'))[:12]}, the database's {identity['sample_sha256'][:12]})")


def _calibrate_and_check(name, fp32_model, preprocess, input_size, sample: Sample, show_progress, *, settings):
    """Quantise on the sample and compare with fp32 on its held-out images; each stage timed."""
    stages, clock = {}, time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[stage] = round(now - clock, 2)
        log.info("%s INT8 start-up: %s %.1f s", name, stage, now - clock)
        clock = now

    calib = load_images(sample.calibration, input_size, show_progress=show_progress)  # (n, h, w, 3) uint8
    held = load_images(sample.holdout, input_size, show_progress=show_progress)  # (m, h, w, 3) uint8
    lap("decode_s")
    if len(calib) + len(held) < MIN_IMAGES or len(held) < MIN_HOLDOUT:
        raise ModelError(
            f"{name} INT8 calibration needs at least {MIN_IMAGES} readable images "
            f"({MIN_HOLDOUT} held out), got {len(calib) + len(held)} ({len(held)} held out)"
        )
    fp32 = fp32_model()  # converted only now: bad images fail fast
    lap("convert_s")
    model = quantize(fp32, calib, preprocess, settings)
    lap("quantize_s")  # fp32 statistics on the calibration images, NNCF's passes
    reference = features(fp32, held, preprocess)
    lap("holdout_fp32_s")
    quantised = features(model, held, preprocess)
    report = int8_vs_fp32_report(reference, quantised)
    lap("holdout_int8_s")
    report["calibration_images"] = len(calib)
    report["isa"] = cpu_isa()  # the arithmetic these figures hold for (int8_isa.recheck elsewhere)
    report["startup_s"] = stages  # how long this calibration took (kept in the cached report)
    emit(f"{name} INT8 fidelity ({report['isa']}): {format_report(report)}")
    return model, report, stages, {"images": held, "fp32": reference, "int8": quantised}


def load_images(paths: Sequence[Path], input_size, *, show_progress: bool = True) -> np.ndarray:
    """Decode ``paths`` for the model (``input_size``: a plain resize's (h, w), or a CLIP model's
    :class:`~similar_images.images.Fit`), skipping unreadable ones: ``(n, h, w, 3)`` uint8."""
    from tqdm.auto import tqdm

    from similar_images.images import load_for_model, prepare_batch

    out = []
    for path in tqdm(paths, desc="calibration images", unit="img", disable=not show_progress):
        try:
            out.append(load_for_model(path, input_size))
        except ImageError as exc:
            log.info("calibration: skipping %s", exc)
    return np.stack(out) if out else prepare_batch([], input_size)


def quantize(fp32, images: np.ndarray, preprocess, settings: dict[str, Any]):
    """NNCF post-training quantisation of ``fp32`` calibrated on ``images`` (uint8 NHWC)."""
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
    )

    dataset = nncf.Dataset(list(images), lambda image: preprocess(image[None]))
    kept = _fp32_layers(fp32, settings.get("fp32_layers", ()))
    return nncf.quantize(
        fp32,
        dataset,
        preset=nncf.QuantizationPreset(settings["preset"]),
        subset_size=len(images),
        fast_bias_correction=settings["fast_bias_correction"],
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix(settings["overflow_fix"])),
        **({"ignored_scope": nncf.IgnoredScope(names=kept)} if kept else {}),
    )


def _fp32_layers(model, kinds: Sequence[str]) -> list[str]:
    """Names of the layers ``kinds`` names (``"first_convolution"``) in ``model``, left in fp32."""
    convolutions = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    unknown = set(kinds) - {"first_convolution"}
    if unknown:
        raise ValueError(f"unknown fp32_layers {sorted(unknown)}; choose from: first_convolution")
    return convolutions[:1] if "first_convolution" in kinds else []


def features(model, images: np.ndarray, preprocess, batch: int = 8) -> np.ndarray:
    """Features of ``images`` (uint8 NHWC) through ``model`` compiled for the CPU: ``(n, dim)``."""
    from similar_images.models.openvino_requests import compile_model

    compiled = compile_model(model)
    parts = [compiled(preprocess(images[i : i + batch]))[0] for i in range(0, len(images), batch)]
    return np.concatenate(parts).reshape(len(images), -1)  # (n, dim)


def emit(text: str) -> None:
    """Log ``text`` and print it to stderr: users must see what INT8 costs in fidelity."""
    from tqdm.auto import tqdm

    log.info(text)
    tqdm.write(text, file=sys.stderr)
