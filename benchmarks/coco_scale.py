#!/usr/bin/env python3
"""COCO at scale, end to end: extract, build, search and query, for each model, from one run.

The collection is COCO 2014 val when ``--coco DIR`` names its image folder, else
40,504 photo-like 640x480 JPEGs made once in the cache (``benchmarks/_photos.py``).
Every stage runs the way a user runs it, as its own process (the CLI for extract and
build), so each stage's wall time includes its start-up and its peak RSS is its own:

* **extract**: ``similar-images extract`` of the whole list (start-up = wall - the
  extraction loop's elapsed time, from the manifest);
* **model only**: the database's own model (the INT8 model saved beside the vectors)
  on images already decoded in memory, batches of ``-b``: what the pipeline could do
  if decoding and writing were free. Projected COCO time = start-up + 40,504 / this rate;
* **build**: ``similar-images build`` (its recall@10 line is kept);
* **search**: single queries through ``SimilarImages.search_vectors`` (own vectors, own
  id left out: what a new photo gets), median / p95, and recall@10 against exact search;
* **query**: an image file to results (``SimilarImages.search(path)``) against the same
  image's decode plus one batch-1 forward.

Usage::

    .venv/bin/python benchmarks/coco_scale.py                       # both models, 40,504 photos
    .venv/bin/python benchmarks/coco_scale.py --models efficientnet-lite0 --images 2000
    .venv/bin/python benchmarks/coco_scale.py --coco ms_coco/val2014 --weights imagenet
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_line  # noqa: E402
from _photos import default_folder, photo_collection, write_file_list  # noqa: E402

COCO_IMAGES = 40_504
MODELS = ("efficientnet-lite0", "vgg16")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=COCO_IMAGES, help="collection size (default: COCO's 40,504)")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: both)")
    p.add_argument("--runtime", default="openvino", choices=("native", "openvino"))
    p.add_argument("--precision", default="int8", choices=("fp32", "int8"))
    p.add_argument("--device", default=None, help="passed to extract --device (cpu, cuda) when given")
    p.add_argument("--weights", default=None, help="vgg16 weights (default 'none': random, same speed)")
    p.add_argument("-b", "--batch-size", type=int, default=32)
    p.add_argument("--coco", default=None, help="a COCO val2014 image folder (default: the photo-like stand-in)")
    p.add_argument("--photos", default=None, help="where the stand-in photos live (default: the cache)")
    p.add_argument("--workdir", default=None, help="where vectors and indexes go (default: the cache)")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--cold", action="store_true",
                   help="fully cold start-up: every stage gets a new, empty model cache (conversion, calibration, "
                        "tuning paid as on a new machine); the photos and results stay in the usual cache")
    p.add_argument("--stage", help=argparse.SUPPRESS)
    p.add_argument("--vectors", help=argparse.SUPPRESS)
    p.add_argument("--image-dir", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_process(cmd: list[str]) -> dict:
    """Run ``cmd``; its wall time, peak RSS (MB) and output (the child's own figures)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{out[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "output": out}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "similar_images.cli", *args]


def stage(name: str, args, vectors: Path, image_dir: Path) -> dict:
    """Run one measuring stage of this script in a fresh process; its JSON result."""
    cmd = [sys.executable, __file__, "--stage", name, "--vectors", str(vectors), "--image-dir", str(image_dir),
           "-b", str(args.batch_size), "--queries", str(args.queries)]
    result = run_process(cmd)
    line = [ln for ln in result["output"].splitlines() if ln.startswith("{")][-1]
    return {**json.loads(line), "peak_rss_mb": result["peak_rss_mb"]}


def collection(args) -> tuple[Path, list[str], str]:
    if args.coco:
        folder = Path(args.coco)
        names = sorted(p.name for p in folder.glob("*.jpg"))[: args.images]
        return folder, names, f"COCO images in {folder}"
    folder = Path(args.photos) if args.photos else default_folder(args.images)
    names = photo_collection(folder, args.images)
    return folder, names, "photo-like 640x480 JPEGs (benchmarks/_photos.py)"


def bench_model(model: str, args, folder: Path, file_list: Path, work: Path) -> dict:
    vectors = work / f"{model}-{args.runtime}-{args.precision}-{args.images}.npy"
    extract = ["extract", "-l", str(file_list), "-d", str(folder), "-o", str(vectors), "--model", model,
               "--runtime", args.runtime, "--precision", args.precision, "-b", str(args.batch_size),
               "--force", "--no-progress"]
    if model == "vgg16":
        extract += ["--weights", args.weights or "none"]
    if args.device:
        extract += ["--device", args.device]
    print(f"[{model}] extract ...", flush=True)
    ex = run_process(cli(*extract))
    manifest = json.loads(Path(f"{vectors}.manifest.json").read_text())
    timings = manifest["timings"]
    count = manifest["count"]
    e2e = count / timings["elapsed_s"]
    print(f"[{model}] model only ...", flush=True)
    model_only = stage("model-only", args, vectors, folder)
    print(f"[{model}] build ...", flush=True)
    build = run_process(cli("build", "-i", str(vectors), "--force", "--no-progress"))
    print(f"[{model}] search, query ...", flush=True)
    search = stage("search", args, vectors, folder)
    query = stage("query", args, vectors, folder)
    startup = ex["wall_s"] - timings["elapsed_s"]
    rate = model_only["images_per_s"]
    return {
        "model": model, "count": count, "dim": manifest.get("dimension"), "extract_wall_s": ex["wall_s"],
        "startup_s": startup, "extract_rss_mb": ex["peak_rss_mb"], "e2e_images_per_s": e2e,
        "model_only_images_per_s": rate, "ratio": e2e / rate, "timings": timings,
        "projected_coco_s": startup + COCO_IMAGES / rate,
        "measured_coco_s": ex["wall_s"] if count >= COCO_IMAGES else startup + COCO_IMAGES / e2e,
        "build_wall_s": build["wall_s"], "build_rss_mb": build["peak_rss_mb"],
        "build_lines": [ln for ln in build["output"].splitlines() if ln.startswith(("build time", "recall", "re-ranking"))],
        "search": search, "query": query,
    }


# --- the measuring stages (each runs in its own process) -------------------------------------


def decoded_sample(db, count: int) -> np.ndarray:
    return np.stack([db.load_query(db.image_path(i)) for i in range(min(count, len(db)))])


def stage_model_only(args) -> dict:
    """The database's own model on decoded, preprocessed batches, requests kept in flight as the
    pipeline keeps them (``stream``), for at least 20 s; native models through ``embed``."""
    from similar_images.search import SimilarImages

    db = SimilarImages.open(args.vectors, index=None, trust=True)
    images = decoded_sample(db, 256)
    extractor = db.extractor
    streaming = hasattr(extractor, "stream")
    batches = [images[i:i + args.batch_size] for i in range(0, len(images), args.batch_size)]
    if streaming:
        batches = [extractor.prepare(b) for b in batches]  # checked uint8, as the preparation thread hands them
    run = stream_batches if streaming else embed_batches
    run(extractor, batches[:2])  # warm-up
    done, start = 0, time.perf_counter()
    while done < 3 * len(images) or time.perf_counter() - start < 20:
        done += run(extractor, batches)
    return {"images_per_s": done / (time.perf_counter() - start), "batch_size": args.batch_size,
            "streaming": streaming}


def stream_batches(extractor, batches) -> int:
    stream = extractor.stream()
    depth = max(2, stream.depth)  # batches in flight, as the pipeline keeps them
    for batch in batches:
        if stream.pending >= depth:  # batch k+1 submitted before batch k is collected
            stream.collect()
        stream.submit(batch)
    while stream.pending:
        stream.collect()
    return sum(len(b) for b in batches)


def embed_batches(extractor, batches) -> int:
    for batch in batches:
        extractor.embed(batch)
    return sum(len(b) for b in batches)


def stage_search(args, k: int = 10) -> dict:
    from similar_images.db.ranking import exact_search
    from similar_images.db.recall import recall_of_ids, without_self
    from similar_images.search import SimilarImages

    db = SimilarImages.open(args.vectors, trust=True)
    db.warm(model=False)  # the row norms, as a service computes them once
    vectors = db.database.vectors
    rows = np.random.default_rng(1).choice(len(db), args.queries, replace=False)
    queries = np.asarray(vectors[rows], dtype=np.float32)
    found = np.empty((len(rows), k + 1), dtype=np.int64)
    times = []
    for _ in range(2):  # the second pass is the measured one: a warm page cache, as in a service
        times = []
        for q, vec in enumerate(queries):
            start = time.perf_counter()
            _, ids = db.search_vectors(vec[None], k + 1)
            times.append(time.perf_counter() - start)
            found[q] = ids[0]
    _, exact = exact_search(vectors, queries, k + 1)
    found_k, exact_k = without_self(found, rows, k), without_self(exact, rows, k)
    recall = float(recall_of_ids(vectors, queries, found_k, exact_k, k).mean())
    ms = np.array(times) * 1e3
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)), "recall_at_10": recall,
            "index": str(db.database.index_path) if db.has_index else None, "pool_factor": db.pool_factor}


def stage_query(args, n: int = 30) -> dict:
    from similar_images.search import SimilarImages

    db = SimilarImages.open(args.vectors, trust=True)
    paths = [db.image_path(i) for i in range(0, len(db), max(1, len(db) // n))][:n]
    db.warm()  # the model and the row norms, as a service warms up
    db.search(paths[0], 10)
    decode, forward, whole = [], [], []
    for path in paths:
        t0 = time.perf_counter()
        image = db.load_query(path)
        t1 = time.perf_counter()
        db.extractor.embed(image[None])
        t2 = time.perf_counter()
        db.search(path, 10)
        t3 = time.perf_counter()
        decode.append(t1 - t0)
        forward.append(t2 - t1)
        whole.append(t3 - t2)
    med = {name: float(np.median(v) * 1e3) for name, v in (("decode_ms", decode), ("forward_ms", forward),
                                                            ("whole_ms", whole))}
    return {**med, "ratio": med["whole_ms"] / (med["decode_ms"] + med["forward_ms"])}


STAGES = {"model-only": stage_model_only, "search": stage_search, "query": stage_query}


def report(results: list[dict], source: str, args, started: str, line_before: str) -> str:
    out = [f"COCO scale: {args.images:,} {source}; {args.runtime} {args.precision}, -b {args.batch_size}; "
           + ("fully cold model cache" if args.cold else "model cache as found (conversion, INT8 model, tuning may be reused)"),
           f"started {started}; machine before: {line_before}", f"machine after: {machine_line()}", "",
           "| model | extract (wall) | start-up | end to end | model only | ratio | COCO projected / measured "
           "| extract RSS | build (wall) | build RSS | search median / p95 | recall@10 | image query / (decode+forward) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        s, q = r["search"], r["query"]
        out.append(
            f"| {r['model']} ({r['dim']}-d) | {r['extract_wall_s']:.0f} s | {r['startup_s']:.0f} s "
            f"| {r['e2e_images_per_s']:.1f} img/s | {r['model_only_images_per_s']:.1f} img/s | {r['ratio']:.2f} "
            f"| {r['projected_coco_s'] / 60:.1f} / {r['measured_coco_s'] / 60:.1f} min | {r['extract_rss_mb']:.0f} MB "
            f"| {r['build_wall_s']:.1f} s | {r['build_rss_mb']:.0f} MB | {s['median_ms']:.2f} / {s['p95_ms']:.2f} ms "
            f"| {s['recall_at_10']:.3f} | {q['whole_ms']:.1f} / ({q['decode_ms']:.1f}+{q['forward_ms']:.1f}) ms "
            f"= {q['ratio']:.2f} |")
    for r in results:
        t = r["timings"]
        extra = ", ".join(f"{k} {v}" for k, v in t.items() if k.endswith("_s") and k not in ("elapsed_s", "images_per_s"))
        out.append(f"\n* {r['model']}: extraction loop {t['elapsed_s']:.1f} s ({extra}); "
                   + "; ".join(r["build_lines"]))
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.stage:
        print(json.dumps(STAGES[args.stage](args)))
        return 0
    started, before = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), machine_line()
    folder, names, source = collection(args)
    from similar_images.models.speeds import cache_root

    work = Path(args.workdir) if args.workdir else cache_root() / "benchmarks" / "coco-scale"
    work.mkdir(parents=True, exist_ok=True)
    file_list = write_file_list(work / f"files-{len(names)}.txt", names)
    if args.cold:  # the stages are subprocesses: they inherit it
        os.environ["SIMILAR_IMAGES_CACHE"] = tempfile.mkdtemp(prefix="coco-scale-cold-cache-")
        print(f"fully cold: model cache {os.environ['SIMILAR_IMAGES_CACHE']}", flush=True)
    results = [bench_model(m, args, folder, file_list, work) for m in args.models.split(",")]
    print(report(results, source, args, started, before))
    (work / "result.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
