"""INT8 on Ray: calibrated once on the driver, the quantised model shipped to the actors."""

from __future__ import annotations

import numpy as np
import pytest
from _ray_cluster import local_ray, ray_auth_off  # noqa: F401 (fixtures)

from similar_images.cluster.ray_extract import run_ray_extraction
from similar_images.cluster.recipes import recipe_for
from similar_images.extract import run_extraction

INT8 = {"runtime": "openvino", "precision": "int8", "calibration_size": 36, "holdout_size": 12}


@pytest.mark.slow
def test_int8_model_is_shipped_not_recalibrated(tmp_path, monkeypatch, local_ray):  # noqa: F811
    from similar_images.demo.sample_photos import write_collection
    from similar_images.features import get_extractor

    monkeypatch.setenv("SIMILAR_IMAGES_CACHE", str(tmp_path / "cache"))  # the driver's cache only
    folder = tmp_path / "photos"
    folder.mkdir()
    names = write_collection(folder, show_progress=False)
    (tmp_path / "files.txt").write_text("\n".join(names) + "\n")
    options = {**INT8, "calibration_paths": [folder / n for n in names], "show_progress": False,
               "batch_size": 8, "hint": "LATENCY"}
    extractor = get_extractor("efficientnet-lite0", **options)
    assert extractor.calibrated  # calibrated here, on the driver
    recipe = recipe_for(extractor, "efficientnet-lite0", options)
    assert "calibration_paths" not in recipe.options and any(p.endswith("model.xml") for p in recipe.files)
    local = run_extraction(tmp_path / "files.txt", folder, tmp_path / "local.npy", extractor, batch_size=8,
                           chunk_batches=2, show_progress=False)
    ray_run = run_ray_extraction(tmp_path / "files.txt", folder, tmp_path / "ray.npy", extractor, recipe,
                                 batch_size=8, chunk_batches=2, show_progress=False, actors=1)
    assert ray_run["names"] == local["names"] and ray_run["model"] == local["model"]
    assert ray_run["model"]["precision"] == "int8"
    assert float(np.abs(np.load(tmp_path / "ray.npy") - np.load(tmp_path / "local.npy")).max()) <= 1e-5
