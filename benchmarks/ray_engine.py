#!/usr/bin/env python3
"""The Ray engine against the local one, from one run on one machine.

1. **extract**: the same photo-like JPEGs through ``run_extraction`` (local engine) and
   ``run_ray_extraction`` (a local Ray with every core, decode tasks + one model actor
   per 2 CPUs); images/s of each and their ratio (goal: Ray >= 0.9 x local).
2. **build**: 40,504 x 4096 synthetic CNN-like vectors
   (:func:`similar_images.evaluation.synthetic.clustered_vectors`), IVF100,PQ16: the
   one-process build (in a subprocess, for its own peak memory) against the sharded
   build on Ray; seconds, peak RSS per process, recall@10. One encode task is also run
   alone in a fresh worker to measure its peak RSS against the formula of
   :mod:`similar_images.cluster.ray_build`.
3. **re-ranking storage**: recall@10 of the IVF-PQ index re-ranked with the float32
   vectors, float16 vectors, PCA-256 float16 vectors, or not at all (for docs/scale.md).

Usage::

    .venv/bin/python benchmarks/ray_engine.py --images 400 [--json result.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine_info
from _photos import photo_collection

N_VECTORS, DIM = 40_504, 4096


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_extract(folder: Path, count: int, model: str, batch_size: int) -> dict:
    from similar_images.cluster.ray_extract import run_ray_extraction
    from similar_images.cluster.recipes import recipe_for
    from similar_images.cluster.session import ray_session
    from similar_images.extract import run_extraction
    from similar_images.features import get_extractor

    (folder / "images").mkdir(parents=True)
    names = photo_collection(folder / "images", count, show_progress=False)
    (folder / "files.txt").write_text("\n".join(names) + "\n")
    warm = get_extractor(model)  # imports and the weights' pages, paid before either timer
    warm.embed(np.zeros((2, *warm.input_size, 3), np.uint8))
    # Both timers start before the model is built, as a user's `extract` does: local builds it
    # in the process, Ray in the driver (for the job's description) and again in its actor.
    start = time.perf_counter()
    extractor = get_extractor(model)
    local = run_extraction(folder / "files.txt", folder / "images", folder / "local.npy", extractor,
                           batch_size=batch_size, show_progress=False)
    local_s = time.perf_counter() - start
    with ray_session(None):
        start = time.perf_counter()
        extractor = get_extractor(model)
        ray_run = run_ray_extraction(folder / "files.txt", folder / "images", folder / "ray.npy", extractor,
                                     recipe_for(extractor, model, {}), batch_size=batch_size, show_progress=False)
        ray_s = time.perf_counter() - start  # includes starting the actor (model load)
    diff = float(np.abs(np.load(folder / "ray.npy") - np.load(folder / "local.npy")).max())
    return {"images": count, "model": model, "batch_size": batch_size, "local_s": round(local_s, 2),
            "ray_s": round(ray_s, 2), "local_img_s": round(count / local_s, 2), "ray_img_s": round(count / ray_s, 2),
            "ratio": round(local_s / ray_s, 3), "actors": ray_run["timings"]["actors"],
            "max_abs_diff": diff, "same_names": ray_run["names"] == local["names"]}


ONE_PROCESS = """
import json, resource, sys, time
from similar_images.db.build import build_index_files
start = time.perf_counter()
m = build_index_files(sys.argv[1], sys.argv[2], show_progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mb": peak,
                  "recall": m["recall"], "pool_factor": m["pool_factor"], "build_seconds": m["build_seconds"]}))
"""


def bench_build(folder: Path) -> dict:
    from similar_images.db.vectors import save_vectors
    from similar_images.evaluation.synthetic import clustered_vectors

    vectors = clustered_vectors(N_VECTORS, DIM, seed=0)
    save_vectors(folder / "v.npy", vectors, {"model": {"name": "synthetic"},
                                              "names": [f"{i}.jpg" for i in range(N_VECTORS)]})
    del vectors
    out = subprocess.run([sys.executable, "-c", ONE_PROCESS, str(folder / "v.npy"), str(folder / "one.index")],
                         capture_output=True, text=True, check=True)
    one = json.loads(out.stdout.strip().splitlines()[-1])
    sharded = subprocess.run([sys.executable, __file__, "--sharded-build", str(folder)],
                             capture_output=True, text=True, check=True)
    ray_result = json.loads(sharded.stdout.strip().splitlines()[-1])
    same = (folder / "one.index").read_bytes() == (folder / "ray.index").read_bytes()
    return {"vectors": [N_VECTORS, DIM], "one_process": one, "sharded": ray_result, "identical_index_file": same}


def sharded_build(folder: Path) -> None:
    """Child process: the sharded build on a local Ray, plus one encode task alone in a fresh worker."""
    import faiss
    import ray

    from similar_images.cluster import ray_build
    from similar_images.cluster.session import ray_session
    from similar_images.db import index as ix
    from similar_images.db.vectors import open_vectors

    with ray_session(None):
        start = time.perf_counter()
        manifest = ray_build.build_index_files(folder / "v.npy", folder / "ray.index", show_progress=False,
                                               builder=_builder(folder))
        seconds = time.perf_counter() - start
        driver_peak = peak_rss_mb()
        vectors = open_vectors(folder / "v.npy")
        index = ix.new_index(ix.plan_index("ivfpq", N_VECTORS, DIM), DIM)
        ix.train_index(index, vectors)
        ix.drop_training_state(index)
        ranges = ray_build.shard_ranges(N_VECTORS, manifest["shards"])
        rows = ranges[0][1] - ranges[0][0]

        @ray.remote(num_cpus=1, max_calls=1)  # a fresh worker: its peak RSS is this task's
        def one_task(path, start, stop, trained):
            import os
            import resource as r

            with open("/proc/self/statm") as f:  # resident pages now (the peak so far includes Ray's start-up)
                before = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
            ray_build.encode_shard(path, start, stop, trained)
            return before, r.getrusage(r.RUSAGE_SELF).ru_maxrss / 1024

        before, after = ray.get(one_task.remote(str(folder / "v.npy"), *ranges[0], faiss.serialize_index(index)))
    print(json.dumps({"seconds": seconds, "build_seconds": manifest["build_seconds"], "shards": manifest["shards"],
                      "driver_peak_rss_mb": driver_peak, "task_rows": rows,
                      "task_peak_rss_mb": after, "task_rss_before_mb": before,
                      "task_formula_mb": ray_build.task_memory_bytes(index, rows) / 1e6,
                      "recall": manifest["recall"], "pool_factor": manifest["pool_factor"]}))


def _builder(folder: Path):
    from functools import partial

    from similar_images.cluster.ray_build import build_sharded

    return partial(build_sharded, vectors_path=str(folder / "v.npy"))


def bench_rerank_storage(folder: Path, n_queries: int = 200, k: int = 10) -> dict:
    """Recall@10 (own vectors as queries) of IVF-PQ candidates re-ranked with cheaper stored vectors."""
    from similar_images.db import index as ix
    from similar_images.db.ranking import exact_search, normalize, rerank
    from similar_images.db.recall import recall_of_ids
    from similar_images.db.vectors import open_vectors

    vectors = np.asarray(open_vectors(folder / "v.npy"))
    index = ix.read_index(folder / "one.index")
    ix.set_search_params(index, {"nprobe": ix.DEFAULT_NPROBE})
    rows = np.sort(np.random.default_rng(0).choice(len(vectors), n_queries, replace=False))
    queries = vectors[rows]
    _, exact = exact_search(vectors, queries, k)
    _, raw = ix.search(index, queries, k)
    out = {"none (PQ scores)": (float(recall_of_ids(vectors, queries, raw, exact, k).mean()), 16)}
    unit = normalize(vectors)
    mean = unit.mean(axis=0)
    _, _, vt = np.linalg.svd(unit[:: 4] - mean, full_matrices=False)  # PCA fit on a quarter
    pca = lambda x: ((normalize(x) - mean) @ vt[:256].T).astype(np.float16)  # noqa: E731
    stores = {"float32": (vectors, queries, DIM * 4), "float16": (vectors.astype(np.float16), queries, DIM * 2),
              "PCA-256 float16": (pca(vectors), pca(queries), 256 * 2)}
    for pool in (10, 20):
        _, candidates = ix.search(index, queries, pool * k)
        for name, (store, q, nbytes) in stores.items():
            _, found = rerank(store, q, candidates, k)
            out[f"{name}, pool {pool}x"] = (float(recall_of_ids(vectors, queries, found, exact, k).mean()), nbytes)
    return {name: {"recall_at_10": round(r, 4), "bytes_per_vector": b} for name, (r, b) in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip", nargs="*", default=[], choices=["extract", "build", "rerank"])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--sharded-build", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sharded_build:
        return sharded_build(args.sharded_build)
    result = {"machine_before": machine_info()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "extract" not in args.skip:
            result["extract"] = bench_extract(tmp / "extract", args.images, args.model, args.batch_size)
            print(json.dumps(result["extract"]), flush=True)
        if "build" not in args.skip:
            (tmp / "build").mkdir()
            result["build"] = bench_build(tmp / "build")
            print(json.dumps(result["build"]), flush=True)
            if "rerank" not in args.skip:
                result["rerank"] = bench_rerank_storage(tmp / "build")
                print(json.dumps(result["rerank"]), flush=True)
    result["machine_after"] = machine_info()
    print(json.dumps({"load_before": result["machine_before"]["load"], "load_after": result["machine_after"]["load"]}))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
