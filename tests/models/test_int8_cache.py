"""INT8 cold start: the sample under growth, reuse of a cached model, per-stage times, refusal.

A tiny OpenVINO network (16x16 RGB -> 32 features through one MatMul) keeps NNCF's real
quantisation fast; the images are Pillow-made JPEGs in ``tmp_path``.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from similar_images.errors import ModelError
from similar_images.models import calibration, int8_cache, quantize

SIZES = {"calibration_size": 24, "holdout_size": 12}
STAGES = {"decode_s", "convert_s", "quantize_s", "holdout_fp32_s", "holdout_int8_s"}


def _images(folder, prefix: str, count: int, seed: int):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        base = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)  # smooth-ish photos: upsampled noise
        image = Image.fromarray(base).resize((32, 32), Image.Resampling.BICUBIC)
        paths.append(folder / f"{prefix}{i:03d}.jpg")
        image.save(paths[-1], quality=95)
    return paths


def _tiny_model():
    import openvino as ov
    import openvino.opset13 as ops

    weights = np.random.default_rng(0).normal(0, 1, (16 * 16 * 3, 32)).astype(np.float32)
    x = ops.parameter([-1, 16, 16, 3], np.float32, name="x")
    flat = ops.reshape(x, ops.constant(np.array([-1, 16 * 16 * 3], np.int64)), special_zero=False)
    return ov.Model([ops.relu(ops.matmul(flat, ops.constant(weights), False, False))], [x], "tiny")


def _preprocess(batch: np.ndarray) -> np.ndarray:
    return batch.astype(np.float32) / 255.0 - 0.5


def _int8(paths, cache, converted=None, **options):
    def fp32():
        if converted is not None:
            converted.append(1)
        return _tiny_model()

    return quantize.int8_model(name="tiny", fp32_model=fp32, preprocess=_preprocess, input_size=(16, 16),
                               describe_base={"name": "tiny", "weights": "seed0"}, cache_dir=cache,
                               show_progress=False, **{**SIZES, **options}, calibration_paths=paths)


def test_sample_members_stay_findable_when_the_list_grows(tmp_path):
    paths = _images(tmp_path / "a", "img", 60, seed=1)
    sample = calibration.calibration_sample(paths, 24, 12)
    folder = tmp_path / "cache" / "tiny-key-0001"
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(__import__("json").dumps({"sample": int8_cache.sample_record(sample, (24, 12))}))
    grown = paths + _images(tmp_path / "a", "new", 40, seed=2)
    assert calibration.calibration_sample(grown, 24, 12).sha256 != sample.sha256  # new names sort in
    assert int8_cache.candidates(tmp_path / "cache" / "tiny-key") == [folder]
    assert int8_cache.reusable_folder([folder], list(reversed(grown)), (24, 12)) == folder
    assert int8_cache.reusable_folder([folder], grown, (36, 12)) is None  # other sizes asked for
    removed = [p for p in grown if p != sample.holdout[0]]
    assert int8_cache.reusable_folder([folder], removed, (24, 12)) is None  # a member left the list
    other = _images(tmp_path / "b", "img", 60, seed=3)  # same names, other pictures
    assert int8_cache.reusable_folder([folder], other, (24, 12)) is None


def test_stages_timed_grown_list_reuses_and_other_collection_calibrates(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    paths = _images(tmp_path / "photos", "img", 50, seed=1)
    converted = []
    first = _int8(paths, cache, converted, force=True)
    assert first.calibrated and converted == [1]
    assert set(first.stages) == STAGES and all(v >= 0 for v in first.stages.values())
    assert first.report["startup_s"] == first.stages and first.report["images"] == 12
    assert first.identity["images"] == 24 and len(first.identity["sample_sha256"]) == 64

    grown = paths + _images(tmp_path / "photos", "more", 30, seed=2)
    real_quantize = quantize.quantize
    monkeypatch.setattr(quantize, "quantize", lambda *a, **k: pytest.fail("calibrated again"))
    again = _int8(list(reversed(grown)), cache, converted, force=True)
    assert not again.calibrated and converted == [1]  # nor converted
    assert again.folder == first.folder and again.identity == first.identity
    assert set(again.stages) == {"load_int8_s"}
    # A database built with the first model opens with the grown list too (same identity).
    db = quantize.int8_model(name="tiny", fp32_model=_tiny_model, preprocess=_preprocess, input_size=(16, 16),
                             describe_base={"name": "tiny", "weights": "seed0"}, cache_dir=cache,
                             calibration=first.identity, calibration_paths=grown, force=True,
                             calibration_size=30, holdout_size=10)  # today's defaults need not be the database's
    assert db.folder == first.folder and not db.calibrated

    other = _images(tmp_path / "other", "img", 50, seed=5)
    with pytest.raises(ModelError, match="calibrated on other images"):
        quantize.int8_model(name="tiny", fp32_model=_tiny_model, preprocess=_preprocess, input_size=(16, 16),
                            describe_base={"name": "tiny", "weights": "seed0"}, cache_dir=cache,
                            calibration=first.identity, calibration_paths=other, **SIZES)
    monkeypatch.setattr(quantize, "quantize", real_quantize)
    fresh = _int8(other, cache, converted, force=True)
    assert fresh.calibrated and converted == [1, 1]
    assert fresh.identity["sample_sha256"] != first.identity["sample_sha256"] and fresh.folder != first.folder


def test_refusal_below_agreement_holds_for_calibrated_and_cached_models(tmp_path):
    paths = _images(tmp_path / "photos", "img", 50, seed=1)
    with pytest.raises(ModelError, match=r"INT8 refused for tiny: .* below 1\.01"):
        _int8(paths, tmp_path, min_agreement=1.01)
    with pytest.raises(ModelError, match=r"INT8 refused for tiny: .* below 1\.01"):  # from the cache now
        _int8(paths, tmp_path, min_agreement=1.01)
    assert not _int8(paths, tmp_path, min_agreement=1.01, force=True).calibrated


def test_conversion_is_cached_per_weights_not_per_collection(tmp_path):
    calls = []

    def convert():
        calls.append(1)
        return _tiny_model()

    base = {"name": "tiny", "weights": "seed0"}
    first = int8_cache.converted_model("tiny", base, convert, cache_dir=tmp_path)
    again = int8_cache.converted_model("tiny", base, convert, cache_dir=tmp_path)
    assert calls == [1]  # read back, not converted again
    x = _preprocess(np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8))
    np.testing.assert_array_equal(quantize.features(again, x, lambda b: b), quantize.features(first, x, lambda b: b))
    int8_cache.converted_model("tiny", {**base, "weights": "seed1"}, convert, cache_dir=tmp_path)
    assert calls == [1, 1]  # other weights: converted
