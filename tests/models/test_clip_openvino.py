"""CLIP's image tower on OpenVINO: fp32 gives torch's vectors; INT8 sits behind the fidelity
guard, calibrated on images fitted as open_clip fits them. Random seeded weights."""

from __future__ import annotations

import numpy as np
import pytest
from _clip_data import MODEL, clip_extractor

from similar_images.errors import ModelError
from similar_images.features import get_extractor
from similar_images.images import fit_of, load_for_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    from similar_images.demo.sample_photos import write_collection

    folder = tmp_path_factory.mktemp("photos")
    return [folder / name for name in write_collection(folder, show_progress=False)]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_openvino_fp32_image_tower_gives_the_torch_vectors(collection, tmp_path):
    native = clip_extractor()
    ov = get_extractor(MODEL, weights="none", runtime="openvino", batch_size=4, cache_dir=tmp_path,
                       show_progress=False)
    assert fit_of(ov) == native.fit  # the decode threads crop for it as for torch
    batch = np.stack([load_for_model(p, native.fit) for p in collection[::16]])  # (8, 224, 224, 3)
    assert cosines(ov.embed(batch), native.embed(batch)).min() >= 0.999
    described = ov.describe()
    assert described["runtime"] == "openvino" and described["towers"] == ["image", "text"]
    assert {k: described[k] for k in ("name", "weights", "dim", "input_size")} == {
        k: native.describe()[k] for k in ("name", "weights", "dim", "input_size")}
    np.testing.assert_allclose(ov.encode_text(["a dog"]), native.encode_text(["a dog"]))  # torch's text tower


def test_int8_image_tower_is_behind_the_fidelity_guard(collection, tmp_path):
    options = dict(weights="none", runtime="openvino", precision="int8", batch_size=4, calibration_paths=collection,
                   cache_dir=tmp_path, show_progress=False, calibration_size=24, holdout_size=12)
    int8 = get_extractor(MODEL, force_int8=True, **options)  # calibrated here; its fidelity measured
    report = int8.fidelity
    assert report["images"] == 12 and 0.0 <= report["top10_agreement"] <= 1.0
    assert int8.describe()["precision"] == "int8" and "calibration" in int8.describe()
    assert fit_of(int8) == clip_extractor().fit
    batch = np.stack([load_for_model(p, int8.fit) for p in collection[:4]])
    assert int8.embed(batch).shape == (4, 512)
    with pytest.raises(ModelError, match="INT8 refused for clip-vit-b-32"):  # the same model, from the cache
        get_extractor(MODEL, min_agreement=report["top10_agreement"] + 0.01, **options)
