"""OpenVINO runtime and INT8: vectors match native, fidelity report, refusal, cache reuse."""

from __future__ import annotations

import json

import numpy as np
import pytest

from similar_images.errors import ModelError
from similar_images.features import get_extractor
from similar_images.images import load_for_model
from similar_images.models import calibration, int8_fidelity, openvino_runtime, quantize, speeds

SIZE = (224, 224)
# Small INT8 runs for the tests: 36 calibration + 12 held-out images.
INT8 = {"calibration_size": 36, "holdout_size": 12}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """The offline sample photos (real photos + edited copies) as JPEG files."""
    from similar_images.demo.sample_photos import write_collection

    folder = tmp_path_factory.mktemp("photos")
    return [folder / name for name in write_collection(folder, show_progress=False)]


@pytest.fixture(scope="module")
def batch(collection):
    return np.stack([load_for_model(p, SIZE) for p in collection[::9]])  # (14, 224, 224, 3) uint8


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def effnet_int8(collection, cache):
    return get_extractor("efficientnet-lite0", runtime="openvino", precision="int8", batch_size=8,
                         calibration_paths=collection, cache_dir=cache, show_progress=False, **INT8)


# --- pure parts ---------------------------------------------------------------------------


def test_fidelity_report_identical_and_scrambled():
    rng = np.random.default_rng(0)
    x = rng.random((30, 16)).astype(np.float32)
    same = int8_fidelity.int8_vs_fp32_report(x, x * 3)  # scale does not matter: cosine
    assert same == {"images": 30, "cosine_min": 1.0, "cosine_mean": 1.0, "top10_agreement": 1.0}
    noisy = int8_fidelity.int8_vs_fp32_report(x, x + rng.normal(0, 0.3, x.shape))
    assert noisy["cosine_min"] < 0.99 and noisy["top10_agreement"] < 0.9
    with pytest.raises(ValueError, match="more than 10"):
        int8_fidelity.int8_vs_fp32_report(x[:10], x[:10])


def test_calibration_sample_is_deterministic_and_hashes_content(tmp_path):
    paths = []
    for i in range(60):
        paths.append(tmp_path / f"img{i:02d}.jpg")
        paths[-1].write_bytes(b"x" * (i + 1))
    first = calibration.calibration_sample(paths, 36, 12)
    assert calibration.calibration_sample(list(reversed(paths)), 36, 12) == first  # list order is irrelevant
    assert (len(first.calibration), len(first.holdout)) == (36, 12)
    assert not set(first.calibration) & set(first.holdout)
    other_split = calibration.calibration_sample(paths, 37, 11)
    assert set(other_split.calibration + other_split.holdout) == set(first.calibration + first.holdout)
    assert other_split.sha256 != first.sha256  # the split is part of the identity
    first.calibration[0].write_bytes(b"changed")
    assert calibration.calibration_sample(paths, 36, 12).sha256 != first.sha256
    small = calibration.calibration_sample(paths[:20] + [tmp_path / "gone.jpg"], 300, 100)
    assert (len(small.calibration), len(small.holdout)) == (9, 11)  # unreadable file left out


def test_fidelity_check_refuses_below_threshold_unless_forced():
    report = {"images": 12, "cosine_min": 0.8, "cosine_mean": 0.95, "top10_agreement": 0.85}
    with pytest.raises(ModelError, match=r"INT8 refused for m: .*0\.850 is below 0\.90.*--force-int8"):
        int8_fidelity.check_fidelity("m", report, min_agreement=0.9, force=False)
    int8_fidelity.check_fidelity("m", report, min_agreement=0.9, force=True)
    int8_fidelity.check_fidelity("m", report, min_agreement=0.8, force=False)


def test_hint_and_batch_size_are_timed_once_and_remembered(tmp_path):
    timed = []
    speed = {("LATENCY", 1): 10.0, ("LATENCY", 2): 18.0, ("LATENCY", 4): 25.0, ("LATENCY", 8): 20.0,
             ("THROUGHPUT", 1): 12.0, ("THROUGHPUT", 2): 8.0, ("THROUGHPUT", 4): 9.0}

    def timer(hint, b, first):
        timed.append((hint, b))
        return speed[hint, b]

    desc = {"name": "m", "runtime": "openvino", "precision": "int8"}
    hints, sizes = ("LATENCY", "THROUGHPUT"), (1, 2, 4)
    assert speeds.tuned_setting(desc, timer, hints, sizes, cache_dir=tmp_path) == ("LATENCY", 4)
    assert len(timed) == 2 * 6 + 1  # every setting twice (steady timings), the winner re-timed
    assert speeds.tuned_setting(desc, timer, hints, sizes, cache_dir=tmp_path) == ("LATENCY", 4)
    assert len(timed) == 13  # not timed again
    record = json.loads((tmp_path / "speeds.json").read_text())
    (entry,) = record.values()
    saved = entry["tuning"]["m/openvino/int8"]
    assert (saved["images_per_s"], saved["hint"], saved["batch_size"], saved["spread"]) == (25.0, "LATENCY", 4, 0)
    assert speeds.measured(tmp_path)["m/openvino/int8"]["images_per_s"] == 25.0  # for the hint
    # the benchmark's figure wins over tuning's, and does not disturb the tuning record
    speeds.record_speed("m", "openvino", "int8", 40.0, source="benchmark", cache_dir=tmp_path)
    speeds.record_speed("m", "openvino", "int8", 5.0, source="batch tuning", cache_dir=tmp_path)
    assert speeds.measured(tmp_path)["m/openvino/int8"]["images_per_s"] == 40.0
    assert speeds.tuned_setting(desc, timer, hints, sizes, cache_dir=tmp_path) == ("LATENCY", 4)
    assert len(timed) == 13


def test_runtime_hint_names_faster_options(tmp_path):
    assert speeds.runtime_hint("vgg16", "native", "fp32", 40504, cache_dir=tmp_path).startswith(
        "40,504 images to extract with vgg16 (native, fp32). Faster: --runtime openvino")
    speeds.record_speed("vgg16", "native", "fp32", 10.0, cache_dir=tmp_path)
    speeds.record_speed("vgg16", "openvino", "int8", 40.0, batch_size=8, cache_dir=tmp_path)
    hint = speeds.runtime_hint("vgg16", "native", "fp32", 40504, cache_dir=tmp_path)
    assert "--model vgg16 --runtime openvino --precision int8: 40.0 images/s, 4.0x, about 17 min" in hint
    assert speeds.runtime_hint("vgg16", "native", "fp32", 100, cache_dir=tmp_path) is None  # short run
    assert speeds.runtime_hint("vgg16", "openvino", "int8", 40504, cache_dir=tmp_path) is None  # fastest


def test_bad_options():
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        get_extractor("efficientnet-lite0", weights="none", runtime="openvino", precision="int4")
    with pytest.raises(ValueError, match="needs calibration images"):
        get_extractor("efficientnet-lite0", weights="none", runtime="openvino", precision="int8")


# --- real models --------------------------------------------------------------------------


@pytest.mark.slow
def test_openvino_fp32_matches_pytorch(batch, cache):
    native = get_extractor("efficientnet-lite0")
    ov = get_extractor("efficientnet-lite0", runtime="openvino", cache_dir=cache)
    assert ov.describe() == {**native.describe(), "runtime": "openvino", "precision": "fp32"}
    assert ov.batch_size in openvino_runtime.BATCH_CANDIDATES and ov.hint in ("LATENCY", "THROUGHPUT")  # measured
    assert "efficientnet-lite0/openvino/fp32" in speeds.measured(cache)
    a, b = native.embed(batch), ov.embed(batch)  # (14, 1280)
    assert b.shape == a.shape and b.dtype == np.float32
    assert _cosines(a, b).min() >= 0.999
    assert ov.embed(batch[:0]).shape == (0, 1280)
    with pytest.raises(ValueError, match="expected a"):
        ov.embed(batch[:, :100])


def test_queries_run_on_the_latency_compile_and_batches_on_the_streams(batch, cache):
    """Fewer images than the tuned requests hold (a query) run as one request on all cores;
    the vectors are the streams' vectors, and the LATENCY compile is made once."""
    ov = get_extractor("efficientnet-lite0", runtime="openvino", batch_size=4, hint="THROUGHPUT", cache_dir=cache)
    assert ov.images_in_flight >= 2 * 4  # at least two requests of 4
    hints = []
    compile_for = ov.compile_for
    ov.compile_for = lambda hint: hints.append(hint) or compile_for(hint)
    query = ov.embed(batch[:3])  # (3, 1280)
    assert hints == ["LATENCY"]
    stream = ov.stream()
    stream.submit(ov.prepare(batch[:3]))
    assert _cosines(query, stream.collect()).min() >= 0.9999
    hints.clear()
    many = ov.embed(batch[: ov.images_in_flight])
    assert hints == [] and many.shape == (ov.images_in_flight, 1280)
    assert _cosines(many[:3], query).min() >= 0.9999
    assert compile_for("LATENCY") is compile_for("LATENCY")  # compiled once


@pytest.mark.slow
def test_openvino_fp32_matches_tensorflow_vgg16(batch, cache):
    native = get_extractor("vgg16", weights="none")
    ov = get_extractor("vgg16", weights="none", runtime="openvino", batch_size=4, cache_dir=cache)
    assert ov.describe() == {**native.describe(), "runtime": "openvino", "precision": "fp32"}
    x = batch[:6]
    assert _cosines(native.embed(x), ov.embed(x)).min() >= 0.999


@pytest.mark.slow
def test_int8_reports_fidelity_and_records_calibration(effnet_int8, batch):
    report = effnet_int8.fidelity
    assert effnet_int8.calibrated
    assert report["images"] == 12 and report["calibration_images"] == 36
    assert 0.5 < report["cosine_min"] <= report["cosine_mean"] <= 1.0
    assert 0.0 <= report["top10_agreement"] <= 1.0
    desc = effnet_int8.describe()
    assert desc["runtime"] == "openvino" and desc["precision"] == "int8"
    assert len(desc["calibration"]["sample_sha256"]) == 64 and desc["calibration"]["images"] == 36
    assert effnet_int8.embed(batch).shape == (len(batch), 1280)


@pytest.mark.slow
def test_int8_model_is_cached_not_recalibrated(effnet_int8, collection, cache, batch, monkeypatch, capsys):
    def no_calibration(*args, **kwargs):
        raise AssertionError("calibrated again")

    monkeypatch.setattr(quantize, "quantize", no_calibration)
    again = get_extractor("efficientnet-lite0", runtime="openvino", precision="int8", batch_size=8,
                          calibration_paths=list(reversed(collection)), cache_dir=cache,
                          show_progress=False, **INT8)
    assert not again.calibrated
    printed = capsys.readouterr().err
    assert "efficientnet-lite0 INT8 model from the cache" in printed
    assert "on 12 held-out images, cosine to fp32 min" in printed and "top-10 neighbour agreement" in printed
    assert again.fidelity == effnet_int8.fidelity
    assert again.describe() == effnet_int8.describe()
    np.testing.assert_array_equal(again.embed(batch), effnet_int8.embed(batch))
    # A query side that only has the database's describe() finds the same model.
    query = get_extractor("efficientnet-lite0", runtime="openvino", precision="int8", batch_size=8,
                          calibration=effnet_int8.describe()["calibration"], cache_dir=cache)
    assert query.describe() == effnet_int8.describe()


@pytest.mark.slow
def test_int8_missing_from_cache_or_other_images(effnet_int8, collection, tmp_path):
    calibration = effnet_int8.describe()["calibration"]
    with pytest.raises(ModelError, match="is not in the cache"):
        get_extractor("efficientnet-lite0", runtime="openvino", precision="int8",
                      calibration=calibration, cache_dir=tmp_path)
    with pytest.raises(ModelError, match="calibrated on other images"):
        get_extractor("efficientnet-lite0", runtime="openvino", precision="int8", cache_dir=tmp_path,
                      calibration=calibration, calibration_paths=collection[:40], **INT8)


@pytest.mark.slow
def test_int8_refused_below_threshold_unless_forced(effnet_int8, collection, cache):
    options = dict(runtime="openvino", precision="int8", batch_size=8, calibration_paths=collection,
                   cache_dir=cache, show_progress=False, **INT8)
    with pytest.raises(ModelError, match=r"INT8 refused for efficientnet-lite0: .* below 1\.01"):
        get_extractor("efficientnet-lite0", min_agreement=1.01, **options)
    forced = get_extractor("efficientnet-lite0", min_agreement=1.01, force_int8=True, **options)
    assert forced.describe() == effnet_int8.describe()


@pytest.mark.slow
def test_int8_needs_enough_readable_images(collection, tmp_path):
    junk = []
    for i in range(30):
        junk.append(tmp_path / f"junk{i}.jpg")
        junk[-1].write_bytes(b"not a picture")
    with pytest.raises(ModelError, match=r"needs at least 20 readable images \(11 held out\), got 5"):
        get_extractor("efficientnet-lite0", runtime="openvino", precision="int8", cache_dir=tmp_path,
                      calibration_paths=junk + collection[:5], show_progress=False)


@pytest.mark.slow
def test_vgg16_int8(collection, batch, cache):
    """VGG16 (random weights: ImageNet's cannot be downloaded here) quantises and stays close to fp32."""
    int8 = get_extractor("vgg16", weights="none", runtime="openvino", precision="int8", batch_size=4,
                         calibration_paths=collection, calibration_size=20, holdout_size=11,
                         cache_dir=cache, show_progress=False, force_int8=True)
    assert int8.fidelity["images"] == 11 and int8.fidelity["calibration_images"] == 20
    assert int8.fidelity["cosine_mean"] > 0.9
    assert int8.describe()["weights"] == "none(seed=0)" and int8.describe()["precision"] == "int8"
    assert int8.embed(batch[:3]).shape == (3, 4096)


@pytest.mark.slow
def test_extract_cli_int8_reuses_cached_model(effnet_int8, collection, cache, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from similar_images.cli import main
    from similar_images.db.vectors import load_vectors_manifest

    # The CLI's sizes set to the fixture's (36 + 12): its list holds the fixture's whole sample
    # and 6 more images (sorting after it), so the cached model is found, not calibrated again.
    monkeypatch.setitem(quantize.CALIBRATION_SIZES, "efficientnet-lite0", 36)
    monkeypatch.setattr(quantize, "HOLDOUT_SIZE", 12)
    sample = calibration.calibration_sample(collection, 36, 12)
    extra = [p for p in collection if p not in sample.calibration + sample.holdout][:6]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(p.name for p in sample.calibration + sample.holdout + extra) + "\n")
    monkeypatch.setenv("SIMILAR_IMAGES_CACHE", str(cache))
    monkeypatch.setattr(quantize, "quantize", lambda *a, **k: pytest.fail("calibrated again"))
    out = tmp_path / "vectors.npy"
    args = ["extract", "-l", str(listing), "-d", str(collection[0].parent), "-o", str(out),
            "--model", "efficientnet-lite0", "--no-progress", "-b", "16"]
    result = CliRunner().invoke(main, [*args, "--runtime", "openvino", "--precision", "int8"])
    assert result.exit_code == 0, result.output
    manifest = load_vectors_manifest(out, with_names=True)
    assert manifest["model"] == effnet_int8.describe() and manifest["count"] == 54

    bad = CliRunner().invoke(main, [*args, "--precision", "int8", "--force"])
    assert bad.exit_code == 2 and "--precision int8 and --force-int8 need --runtime openvino" in bad.output


@pytest.mark.slow
def test_int8_database_refuses_fp32_queries(effnet_int8, collection, batch, cache, tmp_path,
                                            monkeypatch):
    from similar_images.db.vectors import save_vectors
    from similar_images.search import SimilarImages

    vectors = tmp_path / "vectors.npy"
    save_vectors(vectors, effnet_int8.embed(batch),
                 {"model": effnet_int8.describe(), "names": [p.name for p in collection[::9]],
                  "image_dir": str(collection[0].parent)})
    assert SimilarImages.open(vectors, index=None, extractor=effnet_int8).search(0, k=1)[0].id == 0
    fp32 = get_extractor("efficientnet-lite0", runtime="openvino", batch_size=8, cache_dir=tmp_path)
    with pytest.raises(ModelError, match="precision"):
        SimilarImages.open(vectors, index=None, extractor=fp32)

    # With no extractor given, an image query loads the database's own INT8 model from
    # the cache (no second calibration) and finds the image's row with score 1.
    monkeypatch.setenv("SIMILAR_IMAGES_CACHE", str(cache))
    monkeypatch.setattr(quantize, "quantize", lambda *a, **k: pytest.fail("calibrated again"))
    db = SimilarImages.open(vectors, index=None)
    hit = db.search(collection[9], k=1)[0]
    assert hit.path == collection[9].name and hit.score == pytest.approx(1.0, abs=1e-5)
    assert db.extractor.describe() == effnet_int8.describe()
