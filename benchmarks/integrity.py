#!/usr/bin/env python3
"""Integrity-on-open benchmark: what the checks cost at 40,504 x 4096 (the COCO size).

It writes N x D float32 vectors (default 40,504 x 4096, 664 MB) to a temporary folder
and measures, each the median of ``--repeats`` runs with the file in the page cache:

* ``Database.open(trust=True)``: the structural checks only (header, size, fields);
* ``Database.open(fresh=True)``: plus the content check by chunks (sha256 and finite
  values), what the first open after a change pays;
* ``Database.open()`` with a matching verification stamp: what every later open pays;
* a CLI search start-up (``similar-images search --id 0 --exact``, a separate process,
  no model load): with ``--trust``, with a stamp, and with the stamp removed.

The content check's share of a CLI search start-up is the number to keep small.

Usage::

    .venv/bin/python benchmarks/integrity.py
    .venv/bin/python benchmarks/integrity.py --n 10000 --dim 1280 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine_line

from similar_images.db.database import Database
from similar_images.db.integrity import stamp_path
from similar_images.db.vectors import save_vectors


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cli_start(vectors: Path, *extra: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(Path(__file__).resolve().parents[1]))}
    command = [sys.executable, "-c", "from similar_images.cli import main; main()", "search", "--vectors",
               str(vectors), "--id", "0", "-k", "5", "--exact", *extra]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"the CLI failed: {done.stderr.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40_504)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.npy"
        rng = np.random.default_rng(0)
        vectors = rng.random((args.n, args.dim), dtype=np.float32)  # (n, d)
        save_vectors(path, vectors, {"model": {"name": "synthetic"}, "names": [f"{i}.jpg" for i in range(args.n)]})
        del vectors
        size_mb = path.stat().st_size / 1e6
        Database.open(path, fresh=True)  # page cache warm, stamp written
        structural = timed(lambda: Database.open(path, trust=True), args.repeats)
        content = timed(lambda: Database.open(path, fresh=True), args.repeats)
        stamped = timed(lambda: Database.open(path), args.repeats)
        cli_trust = timed(lambda: cli_start(path, "--trust"), args.repeats)
        cli_stamped = timed(lambda: cli_start(path), args.repeats)

        def unstamped():
            stamp_path(path).unlink(missing_ok=True)
            cli_start(path)

        cli_unstamped = timed(unstamped, args.repeats)
    print(f"machine: {machine_line()}")
    print(f"vectors: {args.n:,} x {args.dim} float32 ({size_mb:.0f} MB), median of {args.repeats}, page cache warm\n")
    print("| what | seconds | share of a CLI search start-up (--trust) |")
    print("|---|---:|---:|")
    rows = [
        ("open, structural checks only (`trust=True`)", structural),
        ("open with the content check (sha256 + finite, by chunks; first open after a change)", content),
        ("open with a matching verification stamp (every later open)", stamped),
        ("CLI `search --id 0 --exact --trust` start-up (process, imports, open, search)", cli_trust),
        ("CLI start-up, stamp matches (the default after the first open)", cli_stamped),
        ("CLI start-up, no stamp (content checked in the process)", cli_unstamped),
    ]
    for what, seconds in rows:
        print(f"| {what} | {seconds:.3f} | {seconds / cli_trust:.0%} |")
    print(f"\ncontent check: {size_mb / content:.0f} MB/s; stamp overhead vs --trust: "
          f"{(cli_stamped - cli_trust) / cli_trust:+.1%} of the start-up")


if __name__ == "__main__":
    main()
