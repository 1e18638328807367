#!/usr/bin/env python3
"""Which PQ code past COCO's size: PQ16, PQ32, PQ64 (8-bit) and fast-scan PQ128x4fs on one set of IVF lists.

One coarse quantizer (the lists ``build`` plans for N: ``db/index_plan.py``) is trained
once; each code size then trains only its PQ and encodes the collection with the same
list assignment, so the rows compare codes, not k-means runs (a fast-scan code, ``MxBfs``,
is added through Faiss' own ``add``, so its time includes the list assignment). For each, ``build``'s own
choice of nprobe and pool (``db/tuning.py``, recall@10 >= 0.95 on 200 own vectors), then on
held-out queries: recall@10 against exact search, median single-query latency (wall and CPU)
with the rows re-ranked from a float32 and from a float16 memory map.

Usage::

    .venv/bin/python benchmarks/pq_codes.py --n 400000 --data-dir /work/millions --codes 16,32,64,128x4fs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _machine import machine_line
from millions import DIM, K, exact_answers, source, timed

from similar_images.db import index as ix
from similar_images.db import tuning
from similar_images.db.index_training import train_sample
from similar_images.db.recall import own_queries, recall_of_ids


def latency(index, rows, queries, pool: int) -> tuple[float, float]:
    wall, cpu = [], []
    for _ in range(2):
        for q in queries:
            w, c = time.perf_counter(), time.process_time()
            ix.search_reranked(index, rows, q[None, :], K, pool_factor=pool)
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
    return 1e3 * float(np.median(wall)), 1e3 * float(np.median(cpu))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=400_000)
    parser.add_argument("--codes", default="16,32,64,128x4fs",
                        help="PQ codes: bytes of 8-bit codes (64), or sub-quantizers x bits with fs (128x4fs)")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--single", type=int, default=100)
    args = parser.parse_args(argv)
    import faiss

    print(f"machine: {machine_line()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    vectors_path, _, queries = source(args.n, 200, args.data_dir, 0)
    exact = exact_answers(vectors_path, queries, args.data_dir, args.n)
    rows16 = np.load(vectors_path, mmap_mode="r")  # (n, d) float16
    rows32_path = args.data_dir / f"rows32-{args.n}.npy"
    if not rows32_path.exists():
        out = np.lib.format.open_memmap(rows32_path, mode="w+", dtype=np.float32, shape=rows16.shape)
        for start in range(0, len(rows16), 65_536):
            out[start:start + 65_536] = rows16[start:start + 65_536]
        out.flush()
        del out
    rows32 = np.load(rows32_path, mmap_mode="r")
    plan = ix.plan_index("ivfpq", args.n, DIM, train_size=ix.DEFAULT_TRAIN_SIZE, pq=16)
    print(f"lists: {plan.why}", flush=True)
    sample = train_sample(rows32, min(ix.DEFAULT_TRAIN_SIZE, 64 * plan.nlist))
    first = ix.new_index(plan, DIM)  # kept alive: it owns the shared quantizer
    faiss.extract_index_ivf(first).cp.max_points_per_centroid = 64
    _, coarse_s = timed(first.train, sample)
    quantizer = faiss.extract_index_ivf(first).quantizer
    print(f"coarse k-means of {plan.nlist} lists on {len(sample):,} vectors: {coarse_s:.0f} s", flush=True)
    assign = np.empty(args.n, dtype=np.int64)
    start_t = time.perf_counter()
    for start in range(0, args.n, ix.CHUNK):
        _, a = quantizer.search(ix.normalize(rows32[start:start + ix.CHUNK]), 1)
        assign[start:start + ix.CHUNK] = a[:, 0]
    print(f"list assignment: {time.perf_counter() - start_t:.0f} s", flush=True)
    own = own_queries(rows32, seed=0)
    print("| code | spec | train+encode s | nprobe | pool | own recall | held-out recall@10 | float32 rows: median ms "
          "(CPU) | float16 rows: median ms (CPU) | index MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for code in args.codes.split(","):
        fast_scan = code.endswith("fs")
        spec = f"IVF{plan.nlist},PQ{code if fast_scan else code + 'x8'}"
        index = faiss.index_factory(DIM, spec, faiss.METRIC_INNER_PRODUCT)
        ix.no_polysemous_training(index)
        ivf = faiss.extract_index_ivf(index)
        ivf.quantizer = quantizer  # the same lists for every code: only the PQ trains
        ivf.own_fields = False
        t0 = time.perf_counter()
        index.train(train_sample(rows32, 64 * 256))
        for start in range(0, args.n, ix.CHUNK):
            x = ix.normalize(rows32[start:start + ix.CHUNK])
            if fast_scan:  # packs codes in blocks of 32 itself; no add_core with given lists
                index.add(x)
                continue
            ivf.add_core(len(x), faiss.swig_ptr(x), None,
                         faiss.swig_ptr(np.ascontiguousarray(assign[start:start + ix.CHUNK])))
        build_s = time.perf_counter() - t0
        choice = tuning.choose_search(index, rows16, own, params={"nprobe": 16})
        _, found = ix.search_reranked(index, rows16, queries, K, pool_factor=choice.pool_factor)
        r10 = float(recall_of_ids(rows32, queries, found, exact, K).mean())
        l32 = latency(index, rows32, queries[: args.single], choice.pool_factor)
        l16 = latency(index, rows16, queries[: args.single], choice.pool_factor)
        size = faiss.serialize_index(index).nbytes / 1e6
        print(f"| {code} | {spec} | {build_s:.0f} | {choice.search_params['nprobe']} | {choice.pool_factor} | "
              f"{choice.recall:.3f} | {r10:.3f} | {l32[0]:.2f} ({l32[1]:.2f}) | {l16[0]:.2f} ({l16[1]:.2f}) | "
              f"{size:.0f} |", flush=True)
    print(f"machine after: {machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
