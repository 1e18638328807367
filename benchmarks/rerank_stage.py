#!/usr/bin/env python3
"""An in-memory re-ranking stage between the index and the exact rows, measured on a ``millions.py`` database.

At 10,000,000 x 1280 the float16 store (25.6 GB) does not fit a 24 GB machine, and the
index hands the exact re-ranking 100 x k candidates: a query reads 1,000 random rows from
the disk (benchmarks/README.md, "Search at millions"). This measures what a stage of 8-bit
scalar codes of the rows (1 byte a value, 12.8 GB at that size: it fits) would give: the
index's ``pool x k`` candidates scored from their 8-bit codes, then only the best ``--exact``
of them re-ranked from the exact rows. It reports recall@10 against exact search on the
held-out queries, and the parts of a staged query's time (medians of single queries): the
index's scan, scoring ``pool x k`` rows gathered from an in-memory code array (``--rows``
codes, not the collection), and reading ``--exact`` random rows of the store.

Nothing here is in the product yet: it sizes the next step.

Usage (after ``millions.py --sizes 10000000 --variants new-f16 --keep --data-dir DIR``)::

    .venv/bin/python benchmarks/rerank_stage.py --data-dir DIR --n 10000000 --variant new-f16 --store float16
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np
from _machine import machine_line
from millions import K

from similar_images.db import index as ix
from similar_images.db.database import Database
from similar_images.db.ranking import normalize
from similar_images.db.recall import recall_of_ids


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="millions.py's --data-dir")
    parser.add_argument("--n", type=int, required=True, help="the database's size")
    parser.add_argument("--variant", default="new-f16", help="the millions.py variant whose index to use")
    parser.add_argument("--store", default="float16", help="that database's store")
    parser.add_argument("--pools", default="100", help="candidates a query, x k (comma-separated)")
    parser.add_argument("--exact", default="10,20,40", help="how many of them the exact rows re-rank")
    parser.add_argument("--train", type=int, default=100_000, help="rows the 8-bit ranges are fitted on")
    parser.add_argument("--rows", type=int, default=1_000_000, help="codes in memory for the timing")
    args = parser.parse_args(argv)
    if any(not K <= int(e) <= int(p) * K for e in args.exact.split(",") for p in args.pools.split(",")):
        parser.error(f"--exact: each between k ({K}) and the smallest pool x k")
    return args


def staged_ids(stage, rows, query: np.ndarray, candidates: np.ndarray, exact: int) -> np.ndarray:
    """The top ``K`` ids: ``candidates`` scored by their 8-bit codes, the best ``exact`` re-ranked exactly."""
    ids = np.sort(candidates[candidates >= 0])
    x = normalize(rows[ids])
    approx = stage.sa_decode(stage.sa_encode(x)) @ query
    best = np.argsort(-approx)[:exact]
    return ids[best[np.argsort(-(x[best] @ query))[:K]]]


def main(argv=None) -> None:
    args = parse_args(argv)
    folder = Path(args.data_dir)
    path = folder / f"db-{args.n}-{args.store}" / "db.npy"
    db = Database.open(path, path.parent / f"{args.variant}.faiss.index")
    queries = normalize(np.load(folder / f"queries-{args.n}.npy"))
    truth = np.load(folder / f"exact-{args.n}-{len(queries)}.npy")
    print(f"machine: {machine_line()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    rng = np.random.default_rng(0)
    sample = normalize(db.vectors[np.sort(rng.choice(len(db.vectors), min(args.train, len(db.vectors)), replace=False))])
    stage = faiss.IndexScalarQuantizer(sample.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    stage.train(sample)
    print("| pool | exact re-rank of | recall@10 held-out |\n|---:|---:|---:|")
    for pool in (int(p) for p in args.pools.split(",")):
        _, candidates = ix.search(db.index, queries, pool * K)
        for exact in (int(e) for e in args.exact.split(",")):
            found = np.stack([staged_ids(stage, db.vectors, q, c, exact) for q, c in zip(queries, candidates)])
            print(f"| {pool} x k | {exact} | {recall_of_ids(db.vectors, queries, found, truth, K).mean():.3f} |",
                  flush=True)
        codes = np.concatenate([stage.sa_encode(sample)] * max(1, args.rows // len(sample)))
        scan, scores = [], []
        for q in queries:
            start = time.perf_counter()
            ix.search(db.index, q[None, :], pool * K)
            scan.append(time.perf_counter() - start)
            start = time.perf_counter()
            stage.sa_decode(codes[np.sort(rng.integers(0, len(codes), pool * K))]) @ q
            scores.append(time.perf_counter() - start)
        print(f"pool {pool} x k: the index's scan median {1e3 * np.median(scan):.2f} ms; 8-bit scores of "
              f"{pool * K:,} rows gathered from {len(codes):,} codes in memory median {1e3 * np.median(scores):.2f} ms",
              flush=True)
    for exact in (int(e) for e in args.exact.split(",")):
        reads = []
        for _ in queries:  # rows no query read before: the cold reads a query of the staged search makes
            start = time.perf_counter()
            normalize(db.vectors[np.sort(rng.integers(0, len(db.vectors), exact))])
            reads.append(time.perf_counter() - start)
        print(f"{exact} random exact rows read: median {1e3 * np.median(reads):.2f} ms", flush=True)

if __name__ == "__main__":
    main()
