#!/usr/bin/env python3
"""Catalog guard benchmark: what the guard costs, and the re-read of every name it spares.

The catalog refuses SQL edits of its items by itself (triggers, ``db/catalog_guard.py``),
so an open whose verification stamps match need not re-read the base rows' names to know
they are unchanged. For each size N (default 40,504, 400,000, 2,000,000 and 10,000,000
items with COCO-like path names), it measures:

* **catalog insert**: one generation's N items and its segment in one transaction, as a
  full write (extraction, compaction, import) inserts them, into a fresh catalog: without
  the guard, with it as the program writes (its per-row ``REPLACE`` check off while a new
  generation goes in), and with that check on (why it is off);
* **add 10**: ``add_rows`` of 10 items to the guarded database (median of ``--repeats``);
* **stamped open, names vouched for**: ``Database.open`` with matching stamps: O(1) in N;
* **stamped open, names re-read**: the same with the names stamp removed, which is what every
  stamped open would pay without the guard (and what one pays after the guard was removed).

Vectors are 8-d (the names, not the vectors, are what is measured here). Everything is
written under ``--work`` (default: a temporary folder; 10,000,000 items need about 5 GB).

Usage::

    .venv/bin/python benchmarks/catalog_guard.py
    .venv/bin/python benchmarks/catalog_guard.py --sizes 40504,400000 --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from _machine import machine_line
from integrity import timed  # the median of repeats, page cache warm

from similar_images.db import catalog
from similar_images.db.catalog_guard import inserting_a_new_generation
from similar_images.db.changes import add_rows
from similar_images.db.database import Database
from similar_images.db.integrity import stamp_path
from similar_images.db.vectors import save_vectors

DIM = 8


def coco_names(n: int) -> list[str]:
    return [f"val2014/COCO_val2014_{i:012d}.jpg" for i in range(n)]


def catalog_insert(path: Path, names: list[str], how: str) -> float:
    """Seconds to insert one generation's items and base segment into a fresh catalog:
    ``how`` is ``"no guard"`` (the catalog before it), ``"full write"`` (as the program does it:
    the guard, its REPLACE check off while the new generation goes in) or ``"check on"``."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript(catalog.SCHEMA)
    con.execute("INSERT INTO meta VALUES ('format', ?)", (str(catalog.CATALOG_FORMAT),))
    start = time.perf_counter()
    if how == "no guard":
        con.execute("BEGIN IMMEDIATE")
        _insert(con, names)
        con.execute("COMMIT")
    else:
        with catalog.transaction(con, path):  # puts the guard in
            with inserting_a_new_generation(con) if how == "full write" else contextlib.nullcontext():
                _insert(con, names)
    seconds = time.perf_counter() - start
    con.close()
    return seconds


def _insert(con, names: list[str]) -> None:
    catalog.insert_items(con, "g", 0, names, names)
    catalog.insert_segment(con, "g", catalog.Segment(0, "v.npy", 0, len(names), 0, "0" * 64))


def measure(n: int, work: Path, repeats: int) -> dict:
    folder = work / f"n{n}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    names = coco_names(n)
    inserts = {how: catalog_insert(folder / f"{i}.sqlite", names, how)
               for i, how in enumerate(("no guard", "full write", "check on"))}
    vectors = folder / "db.npy"
    rng = np.random.default_rng(0)
    save_vectors(vectors, rng.random((n, DIM), dtype=np.float32), {"model": {"name": "synthetic", "dim": DIM},
                                                                   "names": names})
    del names
    Database.open(vectors)  # the first open: vectors hashed, names read, both stamped
    rows = np.ones((10, DIM), np.float32)
    added = iter(range(10**9))
    add = timed(lambda: add_rows(vectors, None, rows, [f"new/{next(added)}.jpg" for _ in range(10)],
                                          auto_compact=False), repeats)
    Database.open(vectors)
    vouched = timed(lambda: Database.open(vectors), repeats)

    def names_re_read():
        stamp_path(catalog.catalog_path(vectors)).unlink()
        Database.open(vectors)

    re_read = timed(names_re_read, repeats)
    shutil.rmtree(folder)
    return {"n": n, **inserts, "add": add, "vouched": vouched, "re_read": re_read}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="40504,400000,2000000,10000000", help="comma-separated item counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="where the databases are written (default: a temp folder)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{started}; {machine_line()}")
    with tempfile.TemporaryDirectory(dir=args.work) as folder:
        results = []
        for n in sizes:
            results.append(measure(n, Path(folder), args.repeats))
            r = results[-1]
            print(f"measured N={n:,}: {r}", flush=True)
    print(f"finished {datetime.now(UTC).strftime('%H:%M UTC')}; {machine_line()}\n")
    print("| N | a full write's catalog insert, no guard | with the guard (as written) | with the REPLACE check on | "
          "add 10 | stamped open, names vouched for | names re-read (what the guard spares) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        inserts = " | ".join(f"{r[how]:.2f} s ({r[how] / r['n'] * 1e6:.1f} us/item)"
                             for how in ("no guard", "full write", "check on"))
        print(f"| {r['n']:,} | {inserts} | {r['add']:.3f} s | {r['vouched'] * 1e3:.1f} ms | {r['re_read'] * 1e3:.1f} ms |")

if __name__ == "__main__":
    main()
