"""INT8 across CPUs: the ISA a model was calibrated on, and the re-check on a CPU of another ISA.

A tiny convolutional OpenVINO network (16x16 RGB -> two convolutions -> 32 features) keeps
NNCF's real quantisation fast; the images are Pillow-made JPEGs in ``tmp_path``. Two ways
to reach another ISA: faking the recorded one (the re-check runs on this CPU's kernels),
and, in a subprocess, oneDNN's ``ONEDNN_MAX_CPU_ISA=SSE41``, which OpenVINO honours (its INT8
convolutions then run ``jit_sse42_I8`` kernels instead of this CPU's own; asserted below).
What cannot be emulated here: a newer ISA than this CPU's (VNNI or AMX on an AVX2 machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _waiting import patience
from PIL import Image

from similar_images.errors import ModelError
from similar_images.models import int8_isa, quantize
from similar_images.models.int8_cache import save_model_folder

SIZES = {"calibration_size": 24, "holdout_size": 30}  # 30 held out: top-10 of 29 others can disagree
PORTABLE = {"preset": "performance", "fast_bias_correction": False, "overflow_fix": "enable",
            "fp32_layers": ["first_convolution"]}  # no 16-bit saturation on any ISA
ROOT = Path(__file__).resolve().parents[2]


def _images(folder: Path, count: int = 60, seed: int = 1) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        base = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)  # smooth-ish photos: upsampled noise
        paths.append(folder / f"img{i:03d}.jpg")
        Image.fromarray(base).resize((32, 32), Image.Resampling.BICUBIC).save(paths[-1], quality=95)
    return paths


def tiny_conv():
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([-1, 16, 16, 3], np.float32, name="x")
    nchw = ops.transpose(x, ops.constant(np.array([0, 3, 1, 2], np.int64)))
    w1 = ops.constant(rng.normal(0, 0.5, (16, 3, 3, 3)).astype(np.float32))
    c1 = ops.relu(ops.convolution(nchw, w1, [1, 1], [1, 1], [1, 1], [1, 1]))
    w2 = ops.constant(rng.normal(0, 0.2, (32, 16, 3, 3)).astype(np.float32))
    c2 = ops.relu(ops.convolution(c1, w2, [1, 1], [1, 1], [1, 1], [1, 1]))
    return ov.Model([ops.reduce_mean(c2, ops.constant(np.array([2, 3], np.int64)), False)], [x], "tinyconv")


def preprocess(batch: np.ndarray) -> np.ndarray:
    return batch.astype(np.float32) / 255.0 - 0.5


def int8(paths, cache, **options):
    return quantize.int8_model(name="tinyconv", fp32_model=tiny_conv, preprocess=preprocess, input_size=(16, 16),
                               describe_base={"name": "tinyconv", "weights": "seed0"}, cache_dir=cache,
                               show_progress=False, **{**SIZES, **options})


def _other_isa() -> str:
    return "amx" if int8_isa.cpu_isa() != "amx" else "avx2"


def _record_isa(folder: Path, isa: str) -> None:
    """Pretend the model in ``folder`` was calibrated on ``isa`` (as if copied from that CPU),
    where it agreed with fp32 perfectly."""
    report = json.loads((folder / "report.json").read_text())
    report["isa"] = report["identity"]["isa"] = isa
    report["top10_agreement"] = 1.0
    (folder / "report.json").write_text(json.dumps(report))


@pytest.fixture
def portable(monkeypatch):
    monkeypatch.setattr(quantize, "settings_for", lambda name: dict(PORTABLE))


def test_cpu_isa_from_flags_and_onednn_cap():
    avx2 = {"sse4_1", "avx", "avx2", "fma"}
    vnni = avx2 | {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}
    assert int8_isa.cpu_isa(avx2, "") == "avx2"
    assert int8_isa.cpu_isa(vnni, "") == "avx512_vnni"
    assert int8_isa.cpu_isa(vnni | {"amx_tile", "amx_int8"}, "") == "amx"
    assert int8_isa.cpu_isa(vnni, "AVX2") == "avx2"  # oneDNN capped: what OpenVINO then runs
    assert int8_isa.cpu_isa(vnni, "avx512_core") == "avx512"
    assert int8_isa.cpu_isa(vnni, "AVX2_VNNI") == "avx2"  # a cap above what the CPU has: the CPU's best below it
    assert int8_isa.cpu_isa(avx2, "SSE41") == "sse41"
    assert int8_isa.cpu_isa(avx2, "ALL") == "avx2"
    assert int8_isa.exact_int8("avx512_vnni") and int8_isa.exact_int8("amx") and not int8_isa.exact_int8("avx2")


def test_settings_follow_the_cpus_int8_arithmetic(monkeypatch):
    monkeypatch.setattr(quantize, "cpu_isa", lambda: "avx512_vnni")
    assert quantize.settings_for("m")["overflow_fix"] == "disable"
    monkeypatch.setattr(quantize, "cpu_isa", lambda: "avx2")
    assert quantize.settings_for("m") == PORTABLE
    model = tiny_conv()
    first = next(op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution")
    assert quantize._fp32_layers(model, ["first_convolution"]) == [first]
    with pytest.raises(ValueError, match="unknown fp32_layers"):
        quantize._fp32_layers(model, ["depthwise"])


def test_model_records_its_isa_and_keeps_reference_vectors(tmp_path, portable):
    made = int8(None, tmp_path / "cache", calibration_paths=_images(tmp_path / "photos"), force=True)
    assert made.report["isa"] == made.identity["isa"] == int8_isa.cpu_isa()
    with np.load(made.folder / int8_isa.REFERENCE_FILE) as data:
        assert data["images"].shape == (30, 16, 16, 3) and data["images"].dtype == np.uint8
        assert data["fp32"].shape == data["int8"].shape == (30, 32)
    copy = save_model_folder(made.folder, tmp_path / "db" / "V.npy.int8-x")
    assert (copy / int8_isa.REFERENCE_FILE).read_bytes() == (made.folder / int8_isa.REFERENCE_FILE).read_bytes()
    again = int8(None, tmp_path / "cache", calibration=made.identity, model_folder=copy, force=True)
    assert not again.calibrated and again.identity == made.identity and "recheck" not in again.report  # same ISA


def test_another_isa_is_rechecked_and_accepted_in_one_line(tmp_path, portable, capsys):
    paths = _images(tmp_path / "photos")
    made = int8(None, tmp_path / "cache", calibration_paths=paths, force=True)
    other = _other_isa()
    _record_isa(made.folder, other)
    capsys.readouterr()
    loaded = int8(None, tmp_path / "cache", calibration_paths=paths, min_agreement=0.0)
    line = [x for x in capsys.readouterr().err.splitlines() if "re-checked" in x]
    assert len(line) == 1 and f"({int8_isa.cpu_isa()}, calibrated on {other})" in line[0]
    checked = loaded.report["recheck"]
    assert checked["isa"] == int8_isa.cpu_isa() and checked["calibrated_on"] == other and checked["images"] == 30
    assert checked["cosine_to_calibration_min"] > 0.999  # this very CPU computed the reference INT8 vectors
    assert loaded.identity["isa"] == other  # the database's description names where it was calibrated


def test_another_isa_whose_vectors_drift_is_refused_naming_both(tmp_path, portable):
    paths = _images(tmp_path / "photos")
    made = int8(None, tmp_path / "cache", calibration_paths=paths, force=True)
    other = _other_isa()
    _record_isa(made.folder, other)
    reference = made.folder / int8_isa.REFERENCE_FILE
    with np.load(reference) as data:
        arrays = dict(data)
    arrays["fp32"] = np.random.default_rng(3).normal(size=arrays["fp32"].shape).astype(np.float32)  # other arithmetic
    np.savez_compressed(reference, **arrays)
    pattern = rf"INT8 refused for tinyconv INT8 calibrated on {other}, running on {int8_isa.cpu_isa()}: .* below 0\.90"
    with pytest.raises(ModelError, match=pattern) as refused:
        int8(None, tmp_path / "cache", calibration_paths=paths, min_agreement=0.9)
    assert "\n" not in str(refused.value)
    forced = int8(None, tmp_path / "cache", calibration_paths=paths, min_agreement=0.9, force=True)
    assert forced.report["recheck"]["top10_agreement"] < 0.9  # used anyway, as --force-int8 says
    reference.unlink()
    with pytest.raises(ModelError, match=rf"calibrated on {other}, .*reference images cannot be read"):
        int8(None, tmp_path / "cache", calibration_paths=paths, min_agreement=0.0)


@pytest.mark.slow
def test_emulated_older_isa_runs_other_kernels_and_gives_the_same_vectors(tmp_path, portable):
    """Calibrated on this CPU, opened where oneDNN may use SSE4.1 only: the re-check runs on the
    other kernels and accepts (overflow fix on: no ISA saturates)."""
    if int8_isa.cpu_isa() in ("sse41", "aarch64", "arm64"):
        pytest.fail("this test needs an x86 CPU above SSE4.1 (every machine this project runs on is)")
    paths = _images(tmp_path / "photos")
    made = int8(None, tmp_path / "cache", calibration_paths=paths, force=True)
    script = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import test_int8_isa as t
from similar_images.models import quantize
quantize.settings_for = lambda name: dict(t.PORTABLE)
from similar_images.models.openvino_requests import compile_model
loaded = t.int8(None, {str(tmp_path / 'cache')!r}, calibration=json.loads({json.dumps(json.dumps(made.identity))}),
                min_agreement=0.0)
runtime = compile_model(loaded.model).get_runtime_model()
kernels = sorted({{op.get_rt_info()["primitiveType"].astype(str) for op in runtime.get_ordered_ops()}})
print(json.dumps({{"recheck": loaded.report.get("recheck"), "kernels": kernels}}))
"""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "SSE41", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=patience(1200))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert any("sse42_I8" in kernel for kernel in result["kernels"]), result["kernels"]  # OpenVINO honoured the cap
    checked = result["recheck"]
    assert checked["isa"] == "sse41" and checked["calibrated_on"] == int8_isa.cpu_isa()
    assert checked["cosine_to_calibration_min"] > 0.99  # other kernels, the same vectors within the guard
    assert abs(checked["top10_agreement"] - made.report["top10_agreement"]) <= 0.1


def test_models_saved_before_isas_were_recorded_are_not_rechecked(tmp_path, caplog):
    def embed(images):
        raise AssertionError("nothing to re-check against")

    old = {"top10_agreement": 0.95}  # no "isa": saved before 2026-12-03, no reference.npz
    vnni = {"overflow_fix": "disable"}
    with caplog.at_level("WARNING", logger="similar_images"):
        assert int8_isa.recheck("m", tmp_path, old, embed, min_agreement=0.9, force=False, settings=vnni,
                                isa="avx2") is None
    assert "quantised for a CPU with VNNI" in caplog.text and "(avx2) has no VNNI" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="similar_images"):
        int8_isa.recheck("m", tmp_path, old, embed, min_agreement=0.9, force=False, settings=vnni,
                         isa="avx512_vnni")
        int8_isa.recheck("m", tmp_path, {**old, "isa": "avx2"}, embed, min_agreement=0.9, force=False, isa="avx2")
    assert caplog.text == ""  # VNNI runs what it was made for; the same ISA needs no re-check
