#!/usr/bin/env python3
"""Duplicate finder benchmarks: the threshold curves per model, and speed and memory.

``calibrate``: for each model, the generated set of ``similar_images.duplicates.
calibration`` (the demo photos, their edits, unrelated photos) is written to a temporary
folder and embedded; the precision/recall curves of "is an edited copy of" (raw pair
scores, and pairs of the groups formed) are printed, saved as JSON and plotted as a PNG,
with the threshold chosen (target pair precision 0.95). Each model is checked on the
second edit set too.

``speed``: N synthetic vectors (default 40,504, of 1280 and 4096 dimensions; clustered
like CNN features, plus planted near-duplicates: noisy copies of random rows) are saved
as a database with an IVF-PQ index (by one child process); ``find_duplicates`` then
runs in another child process that reports its wall time, its peak RSS
(``resource.getrusage``; it counts the pages of the memory-mapped vectors file it read)
and its peak anonymous memory (``RssAnon``, sampled every 50 ms), and which of the
planted pairs scoring at least the threshold it grouped.

Usage::

    .venv/bin/python benchmarks/duplicates.py calibrate --out evaluation/duplicates
    .venv/bin/python benchmarks/duplicates.py speed --dims 1280,4096 [--pool-factors 3,10 --workdir /tmp/dups]
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
from _machine import machine_line

MODELS = {"efficientnet-lite0": {}, "vgg16": {"weights": "none"}}


def calibrate(args) -> None:
    from similar_images.duplicates.evaluate import calibrate_models, summary
    from similar_images.features import get_extractor

    start = time.perf_counter()
    extractors = {model: get_extractor(model, **MODELS[model]) for model in args.models.split(",")}
    report = calibrate_models(extractors, args.out, rule=args.rule)
    print(summary(report))
    print(f"\nsaved {', '.join(report['files'])} in {time.perf_counter() - start:.0f} s; {machine_line()}")


def planted(n: int, dim: int, copies: int, seed: int):
    """``n`` vectors: clustered ones plus ``copies`` noisy copies of random rows (the truth);
    the noise is 10% to 50% of a row's norm, so the copies score about 0.89 to 0.995."""
    from similar_images.evaluation.synthetic import clustered_vectors

    base = clustered_vectors(n - copies, dim, seed=seed)
    rng = np.random.default_rng(seed + 1)
    sources = rng.choice(n - copies, copies, replace=False)
    noise = rng.standard_normal((copies, dim), dtype=np.float32)
    noise *= rng.uniform(0.1, 0.5, (copies, 1)).astype(np.float32)
    noise *= np.linalg.norm(base[sources], axis=1, keepdims=True) / np.sqrt(dim)
    return np.concatenate([base, base[sources] + noise]), sources


def make_child(args) -> None:
    """Write the synthetic database (in its own process: the finder's process must not
    inherit a large parent's peak RSS, which Linux carries across exec)."""
    from similar_images.db.build import build_index_files
    from similar_images.db.vectors import save_vectors

    vectors, sources = planted(args.n, args.dim, args.copies, args.seed)
    path = Path(args.folder) / "synthetic.txt.saved_predictions.npy"
    names = [f"img_{i:06d}.jpg" for i in range(len(vectors))]
    save_vectors(path, vectors, {"model": {"name": "synthetic", "dim": args.dim}, "names": names,
                                 "image_dir": str(args.folder)})
    del vectors
    start = time.perf_counter()
    build_index_files(path, index_type="ivfpq", show_progress=False)
    truth = [[int(s), args.n - args.copies + i] for i, s in enumerate(sources)]
    (Path(args.folder) / "planted.json").write_text(json.dumps({"build_s": time.perf_counter() - start,
                                                                "pairs": truth}))


def speed(args) -> None:
    from similar_images.db.vectors import open_vectors

    rows = []
    for dim in (int(d) for d in args.dims.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(args.workdir or tmp) / f"d{dim}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "synthetic.txt.saved_predictions.npy"
            if not (folder / "planted.json").exists():
                subprocess.run([sys.executable, __file__, "_make", str(folder), "--n", str(args.n), "--dim", str(dim),
                                "--copies", str(args.copies), "--seed", str(args.seed)], check=True)
            made = json.loads((folder / "planted.json").read_text())
            for pool in (int(p) for p in args.pool_factors.split(",")):
                child = subprocess.run([sys.executable, __file__, "_find", str(path), "--threshold", str(args.threshold),
                                        "-k", str(args.k), "--pool-factor", str(pool)],
                                       capture_output=True, text=True, check=True)
                result = json.loads(child.stdout.strip().splitlines()[-1])
                found = {tuple(p) for p in result.pop("pairs")}
                stored = open_vectors(path)
                cosines = [float(stored[a] @ stored[b] / np.linalg.norm(stored[a]) / np.linalg.norm(stored[b]))
                           for a, b in made["pairs"]]
                above = {tuple(p) for p, c in zip(made["pairs"], cosines) if c >= args.threshold}
                result.update(dim=dim, n=args.n, pool_factor=pool, build_s=round(made["build_s"], 1),
                              planted_above=len(above), planted_recall=len(above & found) / max(1, len(above)))
                rows.append(result)
                print(json.dumps(result), flush=True)
    print(f"\n| vectors | pool | find (s) | peak RSS (MB) | peak anonymous (MB) | pairs >= {args.threshold} | groups | "
          f"planted pairs >= threshold grouped | index build (s, not counted) |")
    for r in rows:
        print(f"| {r['n']:,} x {r['dim']} | {r['pool_factor']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | "
              f"{r['peak_anon_mb']:.0f} | {r['pairs_above']:,} | {r['groups']:,} | "
              f"{r['planted_recall']:.3f} of {r['planted_above']:,} | {r['build_s']} |")
    print(machine_line())


def anonymous_mb() -> float:
    """This process's anonymous resident memory (not the mapped vectors file's pages)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def find_child(args) -> None:
    """Run in a fresh process, so the peak RSS is the finder's own."""
    import threading

    from similar_images.duplicates import find_duplicates
    from similar_images.search import SimilarImages

    peak = [0.0]
    done = threading.Event()

    def sample():
        while not done.wait(0.05):
            peak[0] = max(peak[0], anonymous_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    db = SimilarImages.open(args.vectors)
    found = find_duplicates(db, threshold=args.threshold, k=args.k, pool_factor=args.pool_factor, show_progress=True)
    seconds = time.perf_counter() - start
    done.set()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    pairs = [[int(a.id), int(b.id)] for g in found.groups for a in g.members for b in g.members if a.id < b.id]
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mb": round(rss_mb, 1),
                      "peak_anon_mb": round(max(peak[0], anonymous_mb()), 1), "pairs": pairs,
                      "groups": len(found.groups), "pairs_above": found.pairs}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cal = sub.add_parser("calibrate")
    cal.add_argument("--models", default="efficientnet-lite0,vgg16")
    cal.add_argument("--rule", default="centre")
    cal.add_argument("--out", default="evaluation/duplicates")
    sp = sub.add_parser("speed")
    sp.add_argument("--n", type=int, default=40_504)
    sp.add_argument("--dims", default="1280,4096")
    sp.add_argument("--copies", type=int, default=2000)
    sp.add_argument("--threshold", type=float, default=0.9)
    sp.add_argument("-k", type=int, default=10)
    sp.add_argument("--pool-factors", default="10", help="re-rank pools to compare, e.g. 3,10")
    sp.add_argument("--workdir", default=None, help="keep (and reuse) the generated databases here")
    make = sub.add_parser("_make")
    make.add_argument("folder")
    for name in ("--n", "--dim", "--copies", "--seed"):
        make.add_argument(name, type=int)
    sp.add_argument("--seed", type=int, default=0)
    child = sub.add_parser("_find")
    child.add_argument("vectors")
    child.add_argument("--threshold", type=float)
    child.add_argument("-k", type=int)
    child.add_argument("--pool-factor", type=int)
    args = parser.parse_args()
    {"calibrate": calibrate, "speed": speed, "_make": make_child, "_find": find_child}[args.command](args)


if __name__ == "__main__":
    main()
