"""Shards by id range or by IVF lists: what each shard scans, how long, and whether the merge is exact.

``serve --engine ray --shards S`` splits the index by id range (``serving/shards.py``):
every shard holds every list's entries of its ids, runs the coarse quantizer itself and
scans its share of the probed lists. The other split keeps whole lists per shard: a router
runs the quantizer once and sends each query only to the shards that hold a probed list,
which scan those lists whole (``search_preassigned``). This script builds the project's
default index (IVF-PQ, lists and nprobe from its plan) on synthetic clustered vectors and,
for both splits, measures per query:

* entries each shard scans (the sum equals the one index's scan in both splits) and the
  largest shard's share: with shards in parallel, the slowest shard sets the latency;
* shards a query reaches (range: always all of them);
* each shard's search time (one thread), summed (the work) and the largest (the latency);
* the merged top-k against the one index's (approximate scores, no re-rank): both should
  equal it up to ties, since both splits partition the same candidates.

Ids follow the collection's order: ``--order random`` (images added in no order) or
``--order clustered`` (rows sorted by their list, as a collection added folder by folder,
where neighbours share an id range).

    python benchmarks/shard_split.py --n 200000 --dim 128 --shards 2 4
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line  # noqa: E402

from similar_images.db import index as ix  # noqa: E402
from similar_images.evaluation.synthetic import clustered_vectors  # noqa: E402
from similar_images.serving.shards import merge, subset_index  # noqa: E402


def list_contents(ivf) -> list[np.ndarray]:
    """The ids in each inverted list."""
    import faiss

    lists = ivf.invlists
    return [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy() for i in range(ivf.nlist)]


def assign_lists(sizes: np.ndarray, shards: int) -> np.ndarray:
    """Whole lists to shards, balanced by entries (largest list first to the lightest shard)."""
    owner, load = np.zeros(len(sizes), np.int64), np.zeros(shards, np.int64)
    for i in np.argsort(-sizes, kind="stable"):
        owner[i] = int(np.argmin(load))
        load[owner[i]] += sizes[i]
    return owner


def lists_index(index, owned: np.ndarray):
    """A copy of IVF ``index`` holding only the lists ``owned`` (their entries whole)."""
    import faiss

    ivf = ix.ivf_of(index)
    part = faiss.clone_index(index)
    part_ivf = ix.ivf_of(part)
    part_ivf.reset()
    for i in owned:
        size = ivf.invlists.list_size(int(i))
        if size:
            part_ivf.invlists.add_entries(int(i), size, ivf.invlists.get_ids(int(i)), ivf.invlists.get_codes(int(i)))
    part_ivf.ntotal = sum(ivf.invlists.list_size(int(i)) for i in owned)
    part.ntotal = part_ivf.ntotal
    return part


def transformed(index, queries: np.ndarray) -> np.ndarray:
    """Queries as the IVF level sees them (normalised, then PCA/OPQ when the index has them)."""
    import faiss

    q = ix.normalize(queries)
    outer = faiss.downcast_index(index)
    return outer.apply_chain(len(q), q) if isinstance(outer, faiss.IndexPreTransform) else q


def timed_search(fn, q: np.ndarray) -> tuple[float, tuple]:
    start = time.perf_counter()
    found = fn(q)
    return time.perf_counter() - start, found


def split_by_range(index, queries, k, shards, n):
    """Per query: entries each shard scans (``(m, S)``), its seconds (``(m, S)``), and the merge."""
    import faiss

    ivf = ix.ivf_of(index)
    cuts = [n * s // shards for s in range(shards + 1)]
    parts = [subset_index(index, cuts[s], cuts[s + 1]) for s in range(shards)]
    _, probes = ivf.quantizer.search(transformed(index, queries), ivf.nprobe)  # (m, nprobe)
    per_list = np.stack([np.histogram(ids, bins=cuts)[0] for ids in list_contents(ivf)])  # (nlist, S)
    scanned = per_list[probes].sum(axis=1)  # (m, S)
    seconds = np.zeros((len(queries), shards))
    merged = []
    faiss.omp_set_num_threads(1)
    for j, q in enumerate(queries):
        answers = []
        for s, part in enumerate(parts):
            ix.set_search_params(part, {"nprobe": ivf.nprobe})
            seconds[j, s], found = timed_search(lambda x, p=part: ix.search(p, x, k), q[None])
            answers.append(found)
        merged.append(merge(answers, k))
    return scanned, seconds, merged


def split_by_lists(index, queries, k, shards):
    """As :func:`split_by_range`, whole lists per shard; the router's quantizer time apart."""
    import faiss

    ivf = ix.ivf_of(index)
    sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)])
    owner = assign_lists(sizes, shards)
    kept = [lists_index(index, np.flatnonzero(owner == s)) for s in range(shards)]  # owns what ivf_of points into
    parts = [ix.ivf_of(part) for part in kept]
    xt = transformed(index, queries)
    faiss.omp_set_num_threads(1)
    seconds, routing = np.zeros((len(queries), shards)), np.zeros(len(queries))
    scanned = np.zeros((len(queries), shards), np.int64)
    merged = []
    for j in range(len(queries)):
        routing[j], (dq, iq) = timed_search(lambda x: ivf.quantizer.search(x, ivf.nprobe), xt[j:j + 1])
        answers = []
        for s, part in enumerate(parts):
            mine = np.where(owner[iq] == s, iq, -1)  # the probed lists this shard holds; -1: none
            scanned[j, s] = sizes[iq[owner[iq] == s]].sum()
            if (mine < 0).all():
                continue  # the router does not send it
            seconds[j, s], found = timed_search(lambda x, p=part, m=mine, d=dq: p.search_preassigned(x, k, m, d),
                                                xt[j:j + 1])
            answers.append(found)
        merged.append(merge(answers, k))
    del kept
    return scanned, seconds, routing, merged


def same_as_one(merged, one_scores, one_ids, k) -> float:
    """Share of queries whose merged top-k scores equal the one index's (up to ties)."""
    same = [np.allclose(scores[0], one_scores[j], atol=1e-5) for j, (scores, _) in enumerate(merged)]
    return float(np.mean(same))


def report(name, scanned, seconds, extra_s=None) -> dict:
    total = scanned.sum(axis=1)
    reached = (scanned > 0).sum(axis=1)
    work_ms = seconds.sum(axis=1) * 1e3 + (0 if extra_s is None else extra_s * 1e3)
    slowest_ms = seconds.max(axis=1) * 1e3 + (0 if extra_s is None else extra_s * 1e3)
    return {"split": name, "scanned": float(total.mean()),
            "largest_share": float((scanned.max(axis=1) / np.maximum(total, 1)).mean()),
            "reached": float(reached.mean()), "work_ms": float(work_ms.mean()),
            "slowest_ms": float(slowest_ms.mean())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--shards", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--order", choices=["random", "clustered", "both"], default="both")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(machine_line())
    data = clustered_vectors(args.n + args.queries, args.dim, seed=args.seed)
    base, queries = data[:args.n], data[args.n:]
    orders = ["random", "clustered"] if args.order == "both" else [args.order]
    start = time.perf_counter()
    trained, info = ix.build_index(base, "ivfpq", seed=args.seed)  # the project's default type and plan
    built_s = time.perf_counter() - start
    for order in orders:
        index = trained
        if order == "clustered":  # ids in the order of the lists: the same trained index, rows added sorted
            import faiss

            _, assign = ix.ivf_of(trained).quantizer.search(transformed(trained, base), 1)
            index = faiss.clone_index(trained)
            index.reset()
            ix.add_vectors(index, base[np.argsort(assign[:, 0], kind="stable")])
        ix.set_search_params(index, info["search_params"])
        ivf = ix.ivf_of(index)
        one_scores, one_ids = ix.search(index, queries, args.k)
        print(f"\n{order} order: {args.n:,} x {args.dim}, {info['spec']}, nlist {ivf.nlist}, nprobe {ivf.nprobe}, "
              f"built in {built_s:.0f} s; {args.queries} queries, k {args.k}, one thread")
        print("| shards | split | entries scanned | largest shard's share | shards reached | work ms | "
              "slowest shard ms | merged = one index |")
        print("|---|---|---|---|---|---|---|---|")
        for shards in args.shards:
            r_scanned, r_seconds, r_merged = split_by_range(index, queries, args.k, shards, args.n)
            l_scanned, l_seconds, routing, l_merged = split_by_lists(index, queries, args.k, shards)
            for row, merged in ((report("id range", r_scanned, r_seconds), r_merged),
                                (report("IVF lists", l_scanned, l_seconds, routing), l_merged)):
                print(f"| {shards} | {row['split']} | {row['scanned']:,.0f} | {row['largest_share']:.0%} | "
                      f"{row['reached']:.2f} | {row['work_ms']:.2f} | {row['slowest_ms']:.2f} | "
                      f"{same_as_one(merged, one_scores, one_ids, args.k):.0%} |")
    print(f"\n{machine_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
