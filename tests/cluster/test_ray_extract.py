"""extract --engine ray on a local Ray with 2 CPUs: the local engine's result, skips, resume, a killed actor."""

from __future__ import annotations

import numpy as np
import pytest
from _cluster_models import FailingPixelExtractor, KilledOncePixelExtractor
from _extract_data import BAD, PixelExtractor, make_collection
from _ray_cluster import local_ray, ray_auth_off  # noqa: F401 (fixtures)

from similar_images.cluster.ray_extract import decode_chunk, decoded_pairs, run_ray_extraction
from similar_images.cluster.recipes import ExtractorRecipe, recipe_for
from similar_images.db.checkpoint import Checkpoint, partial_dir
from similar_images.db.vectors import load_vectors_manifest, open_vectors
from similar_images.errors import ImageError, SimilarImagesError
from similar_images.extract import run_extraction
from similar_images.pipeline import decode_one

BATCH, CHUNK_BATCHES = 4, 2  # chunks of 8 names


def local_result(file_list, folder, output, extractor):
    manifest = run_extraction(file_list, folder, output, extractor, batch_size=BATCH, chunk_batches=CHUNK_BATCHES,
                              show_progress=False)
    return manifest, np.load(output)


def ray_result(file_list, folder, output, extractor, recipe, **options):
    manifest = run_ray_extraction(file_list, folder, output, extractor, recipe, batch_size=BATCH,
                                  chunk_batches=CHUNK_BATCHES, show_progress=False, **options)
    return manifest, np.load(output)


def assert_same(ray_run, local_run, tol=0.0):
    (rm, rv), (lm, lv) = ray_run, local_run
    assert rm["names"] == lm["names"]
    assert rm["skipped"] == lm["skipped"]
    assert rm["model"] == lm["model"] and rm["file_list_sha256"] == lm["file_list_sha256"]
    assert rv.shape == lv.shape and float(np.abs(rv - lv).max()) <= tol


def test_decode_task_is_the_local_decoder(tmp_path):
    """Fast: the decode task and the pairs the actor rebuilds are decode_one's results, in order."""
    _, folder, names = make_collection(tmp_path)
    row = decode_chunk({"chunk": 0, "names": names}, image_root=str(folder), size=(4, 4))
    pairs = list(decoded_pairs(row["names"], row["errors"], row["images"]))
    assert [name for name, _ in pairs] == names
    for name, got in pairs:
        want = decode_one(name, folder, (4, 4))
        if isinstance(want, ImageError):
            assert isinstance(got, ImageError) and (str(got), got.reason) == (str(want), want.reason)
        else:
            assert np.array_equal(got, want)


@pytest.mark.slow
def test_ray_equals_local_engine_efficientnet(tmp_path, local_ray):  # noqa: F811
    from similar_images.features import get_extractor

    file_list, folder, _ = make_collection(tmp_path, noise_images=14)
    extractor = get_extractor("efficientnet-lite0")
    local = local_result(file_list, folder, tmp_path / "local.npy", extractor)
    ray_run = ray_result(file_list, folder, tmp_path / "ray.npy", extractor,
                         recipe_for(extractor, "efficientnet-lite0", {}), actors=2)
    assert_same(ray_run, local, tol=1e-5)
    assert {s["path"]: s["reason"] for s in ray_run[0]["skipped"]} == {k: v for k, v in BAD.items() if k != "huge.png"}
    assert ray_run[0]["timings"]["engine"] == "ray" and ray_run[0]["timings"]["actors"] == 2
    assert not partial_dir(tmp_path / "ray.npy").exists()
    assert load_vectors_manifest(tmp_path / "ray.npy", with_names=True)["vectors_sha256"] == ray_run[0]["vectors_sha256"]


@pytest.mark.slow
def test_resume_keeps_finished_shards(tmp_path, local_ray):  # noqa: F811
    file_list, folder, names = make_collection(tmp_path, noise_images=30)
    local = local_result(file_list, folder, tmp_path / "local.npy", PixelExtractor())
    output = tmp_path / "ray.npy"
    failing = ExtractorRecipe(None, {"good_calls": 2}, factory=FailingPixelExtractor)
    with pytest.raises(SimilarImagesError, match=r"Ray job failed \(.*model failed.*--resume"):
        ray_result(file_list, folder, output, PixelExtractor(), failing, actors=1)
    assert not output.exists()  # nothing under the final name
    checkpoint = Checkpoint(output)
    chunks = -(-len(names) // (BATCH * CHUNK_BATCHES))
    kept = checkpoint.finished(chunks)
    assert 1 <= len(kept) < chunks
    stamps = {i: checkpoint.chunk_path(i).stat().st_mtime_ns for i in kept}
    assert not list(checkpoint.dir.glob("*.tmp*")) and not list(checkpoint.dir.glob(".*"))  # no half-written shard
    resumed = ray_result(file_list, folder, output, PixelExtractor(), ExtractorRecipe(None, factory=PixelExtractor),
                         resume=True, actors=1)
    assert_same(resumed, local)
    assert resumed[0]["timings"]["resumed_chunks"] == len(kept)
    kept_names = sum(len(names[i * 8:(i + 1) * 8]) for i in kept)
    assert resumed[0]["timings"]["images_this_run"] < len(resumed[0]["names"])
    assert kept_names > 0 and stamps  # the kept shards were not redone (read, not rewritten, before removal)


@pytest.mark.slow
def test_killed_actor_is_restarted_and_the_result_is_the_same(tmp_path, local_ray):  # noqa: F811
    file_list, folder, _ = make_collection(tmp_path, noise_images=20)
    local = local_result(file_list, folder, tmp_path / "local.npy", PixelExtractor())
    marker = tmp_path / "killed.pid"
    recipe = ExtractorRecipe(None, {"marker": str(marker)}, factory=KilledOncePixelExtractor)
    ray_run = ray_result(file_list, folder, tmp_path / "ray.npy", PixelExtractor(), recipe, actors=2)
    assert marker.is_file()  # an actor process was really killed with SIGKILL
    assert_same(ray_run, local)
    assert len(open_vectors(tmp_path / "ray.npy")) == len(local[0]["names"])
    assert not partial_dir(tmp_path / "ray.npy").exists()


@pytest.mark.slow
def test_ray_equals_local_engine_clip(tmp_path, local_ray):  # noqa: F811
    from _clip_data import MODEL, clip_extractor

    file_list, folder, _ = make_collection(tmp_path)
    extractor = clip_extractor()  # random weights, seed 0: each actor builds the same model
    local = local_result(file_list, folder, tmp_path / "local.npy", extractor)
    options = {"weights": "none", "seed": 0, "device": "cpu"}
    ray_run = ray_result(file_list, folder, tmp_path / "ray.npy", extractor, recipe_for(extractor, MODEL, options),
                         actors=1)
    assert_same(ray_run, local, tol=1e-5)
    assert ray_run[0]["model"]["towers"] == ["image", "text"]
