#!/usr/bin/env python3
"""Growth benchmark: what an add, a remove and an open cost as the collection grows.

For each size N (default 40,504, 400,000 and 2,000,000 vectors of dimension 1280,
synthetic and clustered like CNN features), it writes a database with the default
``ivfpq`` index, then measures, each step in a fresh process of the code under test:

* **add 10**: ``add_rows`` of 10 new vectors (the model's time is not included: it is the
  same for any N), seconds and bytes the process wrote (``/proc/self/io`` ``wchar``);
* **remove 10**: ``remove_rows`` of 10 items, seconds and bytes written;
* **first open + one search (CLI)**: ``similar-images search --id N-1`` from the command to
  the answer, page cache warm, interpreter start-up included;
* **stamped open (API)**: ``Database.open(vectors, index)`` in a process where the files
  were verified before (the verification stamps hold);
* **manifest**: the size of the vectors manifest, read on every open.

``--code DIR`` runs the same steps with another checkout of the project (for example a
``git worktree`` of the commit before the catalog), on the same data, so the old and the
new code are measured side by side. Everything is written under ``--work`` (default: a
temporary folder; 2,000,000 x 1280 needs about 21 GB there, the old code twice that
during each change).

Usage::

    .venv/bin/python benchmarks/growth.py --sizes 40504,400000,2000000
    git worktree add /tmp/before <commit>; .venv/bin/python benchmarks/growth.py --code /tmp/before --sizes 40504
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DIM = 1280
CHUNK = 100_000

WORKER = r"""
import json, os, sys, time
import numpy as np

def written():
    with open("/proc/self/io") as f:
        return int(dict(line.split(": ") for line in f.read().splitlines())["wchar"])

step, folder, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
vectors, index = os.path.join(folder, "db.npy"), os.path.join(folder, "db.faiss.index")
out = dict()
if step == "create":
    from numpy.lib.format import open_memmap
    from similar_images.evaluation.synthetic import clustered_vectors
    from similar_images.db.vectors import save_vectors
    from similar_images.db.build import build_index_files
    tmp = os.path.join(folder, "data.npy")
    data = open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, {dim}))
    for start in range(0, n, {chunk}):
        stop = min(n, start + {chunk})
        data[start:stop] = clustered_vectors(stop - start, {dim}, seed=start // {chunk})
    data.flush()
    t = time.perf_counter()
    save_vectors(vectors, data, {{"model": {{"name": "synthetic", "weights": "none", "dim": {dim}}},
                                 "names": [f"v{{i:08d}}.jpg" for i in range(n)], "image_dir": None}})
    del data
    os.unlink(tmp)
    build_index_files(vectors, index, show_progress=False, eval_queries=50)
    out["create_s"] = time.perf_counter() - t
elif step in ("add", "remove"):
    from similar_images.db import changes
    from similar_images.db.database import Database
    db = Database.open(vectors, index)  # imports and stamps outside the timed change
    if step == "remove":  # 10 items present (a growing database keeps removed ids until compaction)
        import itertools
        ids = (i for i in range(len(db.names)) if not hasattr(db, "is_live") or db.is_live(i))
        names = [db.names[i] for i in itertools.islice(ids, 10)]
    else:
        new = np.random.default_rng(int(time.time())).random((10, {dim}), dtype=np.float32)
        names = [f"new-{{time.time_ns()}}-{{i}}.jpg" for i in range(10)]
    before, t = written(), time.perf_counter()
    if step == "add":
        changes.add_rows(vectors, index, new, names)
    else:
        changes.remove_rows(vectors, index, names)
    out["seconds"], out["bytes"] = time.perf_counter() - t, written() - before
elif step == "stamped_open":
    from similar_images.db.database import Database
    Database.open(vectors, index)
    t = time.perf_counter()
    Database.open(vectors, index)
    out["seconds"] = time.perf_counter() - t
print(json.dumps(out))
"""


def run_step(code: Path, step: str, folder: Path, n: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    script = WORKER.format(dim=DIM, chunk=CHUNK)
    # run in the database's folder: `python -c` puts the current folder first on sys.path, and
    # a checkout there would shadow --code
    proc = subprocess.run([sys.executable, "-c", script, step, str(folder), str(n)], env=env, cwd=folder,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{step} failed at n={n}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cli_open_and_search(code: Path, folder: Path, n: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(code)}
    command = [sys.executable, "-m", "similar_images.cli", "search", "--id", str(n - 1), "-k", "10", "--vectors",
               str(folder / "db.npy"), "--index", str(folder / "db.faiss.index")]
    subprocess.run(command, env=env, cwd=folder, capture_output=True, check=True)  # the page cache warm
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=folder, capture_output=True, check=True)
    return time.perf_counter() - start


def measure(code: Path, work: Path, n: int, repeats: int) -> dict:
    folder = work / f"n{n}"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "db.faiss.index").exists():
        print(f"writing a database of {n:,} x {DIM} ...", flush=True)
        created = run_step(code, "create", folder, n)
        print(f"  written and indexed in {created['create_s']:.0f} s", flush=True)
    adds = [run_step(code, "add", folder, n) for _ in range(repeats)]
    removes = [run_step(code, "remove", folder, n) for _ in range(repeats)]
    return {
        "n": n,
        "add_s": sorted(a["seconds"] for a in adds)[repeats // 2],
        "remove_s": sorted(r["seconds"] for r in removes)[repeats // 2],
        "add_bytes": max(a["bytes"] for a in adds),
        "remove_bytes": max(r["bytes"] for r in removes),
        "cli_open_search_s": cli_open_and_search(code, folder, n),
        "stamped_open_s": run_step(code, "stamped_open", folder, n)["seconds"],
        "manifest_bytes": (folder / "db.npy.manifest.json").stat().st_size,
    }


def table(rows: list[dict]) -> str:
    lines = ["| N | add 10 | remove 10 | bytes written per add / remove | first open + one search (CLI) "
             "| stamped open (API) | manifest JSON |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['add_s']:.3f} s | {r['remove_s']:.3f} s | "
                     f"{_size(r['add_bytes'])} / {_size(r['remove_bytes'])} | {r['cli_open_search_s']:.2f} s | "
                     f"{r['stamped_open_s']:.3f} s | {_size(r['manifest_bytes'])} |")
    return "\n".join(lines)


def _size(b: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if b >= scale:
            return f"{b / scale:.2f} {unit}"
    return f"{int(b)} B"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="40504,400000,2000000", help="comma-separated collection sizes")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose similar_images is measured")
    parser.add_argument("--work", type=Path, default=None, help="folder for the databases (kept for reruns)")
    parser.add_argument("--repeats", type=int, default=3, help="adds and removes per size (median reported)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from _machine import machine_line

    work = args.work or Path(tempfile.mkdtemp(prefix="growth-"))
    rows = [measure(args.code.resolve(), work, int(n), args.repeats) for n in args.sizes.split(",")]
    print(f"machine: {machine_line()}\ncode: {args.code}\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
