#!/usr/bin/env python3
"""Sync benchmark: how long ``similar-images sync`` takes on an unchanged folder, and that it loads no model.

The folder is the benchmarks' photo-like collection (``_photos.py``: 640x480 JPEGs, default
40,504 of them, COCO's count; made once in the cache, reused). The database that follows
it is populated directly through :func:`similar_images.db.changes.commit_batch` with
**synthetic vectors** and each file's **real size and mtime** (and a stand-in hash): an
unchanged sync compares ``(name, size, mtime_ns)`` only and never reads a vector or a
hash, so embedding 40,504 photos first (about an hour on 2 cores) would not change what is
measured. The database is then compacted, as a settled one is.

Measured, each in a fresh process, page cache warm (one run before the timed ones):

* **CLI**: ``similar-images sync FOLDER --vectors V --no-progress``, from the command to its
  summary line, interpreter start-up included; median and best of ``--runs``;
* **API**: ``sync_folder(FOLDER, V)`` inside the process (walk, catalog read, plan), and
  whether ``torch`` was imported and a model built (they must not be).

Usage::

    .venv/bin/python benchmarks/sync.py                  # 40,504 photos
    .venv/bin/python benchmarks/sync.py --images 2000    # quicker
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
DIM = 1280
GOAL_S = 3.0

API = r"""
import json, sys, time
started = time.perf_counter()
from similar_images.sync import sync_folder
report = sync_folder(sys.argv[1], sys.argv[2], show_progress=False)
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "torch": "torch" in sys.modules, "model_loaded": report.model_loaded,
                  "unchanged": report.plan.unchanged, "empty": report.plan.empty}))
"""


def populate(folder: Path, vectors: Path, names: list[str]) -> None:
    """A database following ``folder``: synthetic vectors, the files' real size and mtime."""
    import numpy as np

    from similar_images.db.changes import commit_batch
    from similar_images.db.compaction import compact
    from similar_images.db.file_stats import FileStat
    from similar_images.db.vectors import save_vectors

    save_vectors(vectors, np.zeros((0, DIM), np.float32), {
        "model": {"name": "synthetic", "weights": "none(seed=0)", "dim": DIM}, "names": [], "name_rule": "path",
        "image_dir": str(folder)})
    rng = np.random.default_rng(0)
    for start in range(0, len(names), 10_000):
        part = names[start:start + 10_000]
        stats = []
        for name in part:
            stat = (folder / name).stat()
            stand_in = hashlib.sha256(name.encode()).hexdigest()  # never compared by an unchanged sync
            stats.append(FileStat(stat.st_size, stat.st_mtime_ns, stand_in))
        commit_batch(vectors, None, vectors=rng.random((len(part), DIM), dtype=np.float32), names=part,
                     stats=stats, auto_compact=False)
    compact(vectors)


def run_cli(folder: Path, vectors: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "similar_images.cli", "sync", str(folder), "--vectors",
                           str(vectors), "--no-progress"], capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or "0 added, 0 removed, 0 changed, 0 renamed" not in done.stdout:
        raise SystemExit(f"the sync did not find the folder unchanged:\n{done.stdout}{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--images", type=int, default=40504, help="photos in the folder (default: COCO's 40,504)")
    parser.add_argument("--runs", type=int, default=5, help="timed CLI runs (default 5)")
    parser.add_argument("--folder", default=None, help="the photo folder (default: the benchmarks' cache)")
    parser.add_argument("--work", default=None, help="where the database goes (default: a temporary folder)")
    parser.add_argument("--no-make", action="store_true",
                        help="do not make missing photos: the ones in the cache, made up to --images with hard "
                             "links to them (each a file entry of its own to stat and compare; said in the output)")
    args = parser.parse_args()
    from _photos import default_folder, photo_collection, photo_name

    folder = Path(args.folder) if args.folder else default_folder(args.images)
    if not args.no_make:
        photo_collection(folder, args.images)
    made = sorted(p.name for p in folder.glob("img*.jpg"))[:args.images]
    if not made:
        raise SystemExit(f"no photos in {folder}; run without --no-make")
    # a folder of exactly --images entries: hard links to the cache's photos (same bytes, same mtimes)
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        photos = Path(work) / "photos"
        photos.mkdir()
        names = [photo_name(i) for i in range(args.images)]
        for i, name in enumerate(names):
            os.link(folder / made[i % len(made)], photos / name)
        vectors = Path(work) / "photos.npy"
        populate(photos, vectors, names)
        run_cli(photos, vectors)  # warm the page cache
        times = [run_cli(photos, vectors) for _ in range(args.runs)]
        api = json.loads(subprocess.run([sys.executable, "-c", API, str(photos), str(vectors)], capture_output=True,
                                        text=True, cwd=ROOT, check=True).stdout)
    load = os.getloadavg()
    median = statistics.median(times)
    print("| files | CLI median (s) | CLI best (s) | API (s) | model loaded | torch imported | load (1/5 min) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {len(names):,} | {median:.2f} | {min(times):.2f} | {api['seconds']:.2f} | {api['model_loaded']} | "
          f"{api['torch']} | {load[0]:.1f} / {load[1]:.1f} |")
    verdict = "met" if median <= GOAL_S and not api["model_loaded"] and not api["torch"] else "NOT met"
    if len(made) < len(names):
        print(f"note: {len(made):,} distinct photos, linked to make up {len(names):,} file entries (--no-make)")
    print(f"goal (an unchanged {len(names):,}-file folder synced in <= {GOAL_S:g} s, no model loaded): {verdict}")


if __name__ == "__main__":
    main()
