"""The CLI on a 2-node local cluster (ray start --head + ray start --address, 127.0.0.1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _extract_data import make_collection
from _ray_cluster import ray_auth_off, two_nodes  # noqa: F401 (fixtures)
from click.testing import CliRunner

from similar_images.cli import main
from similar_images.db.vectors import load_vectors_manifest, save_vectors
from similar_images.evaluation.synthetic import clustered_vectors
from similar_images.extract import run_extraction

pytestmark = pytest.mark.slow


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_extract_on_two_nodes_equals_local(tmp_path, two_nodes):  # noqa: F811
    from similar_images.features import get_extractor

    file_list, folder, _ = make_collection(tmp_path, noise_images=14)
    local = run_extraction(file_list, folder, tmp_path / "local.npy", get_extractor("efficientnet-lite0"),
                           batch_size=4, chunk_batches=2, show_progress=False)
    output = invoke("extract", "-l", file_list, "-d", folder, "-o", tmp_path / "ray.npy", "--model",
                    "efficientnet-lite0", "-b", 4, "--chunk-batches", 2, "--engine", "ray", "--address", two_nodes,
                    "--actors", 2)
    assert "ray: 2 node(s), 2 model actor(s)" in output and f"done {local['count']}" in output
    manifest = load_vectors_manifest(tmp_path / "ray.npy", with_names=True)  # the names are in its catalog
    assert manifest["names"] == local["names"] and manifest["skipped"] == local["skipped"]
    assert manifest["timings"]["nodes"] == 2
    assert float(np.abs(np.load(tmp_path / "ray.npy") - np.load(tmp_path / "local.npy")).max()) <= 1e-5


def test_build_on_two_nodes_matches_one_process_build(tmp_path, two_nodes):  # noqa: F811
    vectors = clustered_vectors(20_000, 128, seed=3)  # 3 x CHUNK rows: 2 shards on 2 CPUs
    save_vectors(tmp_path / "v.npy", vectors, {"model": {"name": "synthetic"},
                                                "names": [f"{i}.jpg" for i in range(len(vectors))]})
    invoke("build", "-i", tmp_path / "v.npy", "-o", tmp_path / "local.index", "-d", 128, "--no-progress")
    output = invoke("build", "-i", tmp_path / "v.npy", "-o", tmp_path / "ray.index", "-d", 128, "--no-progress",
                    "--engine", "ray", "--address", two_nodes)
    assert "recall@10" in output
    local = json.loads((tmp_path / "local.index.manifest.json").read_text())
    ray_built = json.loads((tmp_path / "ray.index.manifest.json").read_text())
    assert ray_built["engine"] == "ray" and ray_built["shards"] == 2
    assert ray_built["pool_factor"] == local["pool_factor"]
    assert abs(ray_built["recall"]["recall_at_10"] - local["recall"]["recall_at_10"]) <= 0.005
    assert set(local) - {"engine", "shards"} <= set(ray_built)
