#!/usr/bin/env python3
"""Search at millions: import, build, memory, disk, recall and latency, from 40,504 to 10,000,000 vectors.

For each size N it writes N + ``--queries`` clustered synthetic vectors of dimension 1280
(``evaluation/synthetic.py``) as **float16** straight into the import's source file (the
held-out queries into a file of their own), so the float32 and float16 stores hold the very
same values and only their speed differs. Then, for each variant:

* ``old``: the defaults before this change: PQ16 codes at every size, a float32 store;
* ``new``: what ``similar-images import`` and ``build`` do now (``db/index_plan.py``: the
  code size from N; ``db/vectors.py``: the store from the size);
* ``new-f16``: today's codes with a float16 store;
* ``pqM`` / ``pqM-f16`` / ``pqM-f32``: 8-bit PQ codes of M bytes, with the default store or the one named.

it runs the real commands' code: ``import_vectors`` (time, peak memory), ``build_index_files``
(time; peak anonymous and file-backed memory sampled from ``/proc/self/status``: RssAnon and
RssFile), the database's files on disk, and then, on the held-out queries (new vectors, not
rows): recall@10 against exact search, median and p95 latency of one query at a time
(re-ranking included; wall clock and this process's CPU time), and batched queries a second.
With ``--serve`` it also starts ``similar-images serve`` on the largest size's ``new``
database and times it to healthy, its first query, and what it has mapped by then.

Usage::

    .venv/bin/python benchmarks/millions.py --sizes 40504,400000 --data-dir /work/millions
    .venv/bin/python benchmarks/millions.py --sizes 2000000 --variants old,new --serve --json rows.jsonl

Disk: the source (2 bytes a value) + each store (2 or 4) + the index; 2,000,000 x 1280 with
``old,new``: 5.1 + 10.2 + 5.1 GB. 10,000,000 x 1280: 26 GB of source and 26 GB of float16 store.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from _machine import machine_line

from similar_images.db.build import build_index_files
from similar_images.db.database import Database, read_index_manifest
from similar_images.db.importing import import_vectors
from similar_images.db.ranking import exact_search
from similar_images.db.recall import recall_of_ids
from similar_images.db.searching import search_database
from similar_images.db.vectors import default_store
from similar_images.evaluation.synthetic import clustered_vectors
from similar_images.fileio.files import manifest_path

DIM, K = 1280, 10


class Peak:
    """Peak RssAnon and RssFile (bytes) of this process while the block runs, sampled every 0.2 s."""

    def __enter__(self):
        self.anon = self.file = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while True:
            now = rss()
            self.anon, self.file = max(self.anon, now["RssAnon"]), max(self.file, now["RssFile"])
            if self._stop.wait(0.2):
                return

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def rss(pid: str = "self") -> dict[str, int]:
    """RssAnon, RssFile (and VmHWM) of a process, in bytes."""
    out = {"RssAnon": 0, "RssFile": 0, "VmHWM": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in out:
            out[key] = int(value.split()[0]) * 1024
    return out


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


class SplitOut:
    """Rows ``0..n-1`` into ``first``, the rest into ``second``: one generator run, two files."""

    def __init__(self, first: np.ndarray, second: np.ndarray):
        self.first, self.second = first, second
        self.shape, self.dtype = (len(first) + len(second), first.shape[1]), first.dtype

    def __setitem__(self, key: slice, value):
        n = len(self.first)
        if key.start < n:
            self.first[key.start:min(key.stop, n)] = value[: min(key.stop, n) - key.start]
        if key.stop > n:
            self.second[max(key.start, n) - n:key.stop - n] = value[max(n - key.start, 0):]


def source(n: int, queries: int, folder: Path, seed: int) -> tuple[Path, Path, np.ndarray]:
    """``vectors-N.npy`` (n, d) float16, ``names-N.txt`` and the held-out queries (q, d), made once."""
    vectors, names, held = (folder / f"vectors-{n}.npy", folder / f"names-{n}.txt", folder / f"queries-{n}.npy")
    if not held.exists():
        first = np.lib.format.open_memmap(vectors, mode="w+", dtype=np.float16, shape=(n, DIM))
        second = np.lib.format.open_memmap(folder / f"queries-{n}.part.npy", mode="w+", dtype=np.float16,
                                           shape=(queries, DIM))
        _, seconds = timed(clustered_vectors, n + queries, DIM, seed=seed, out=SplitOut(first, second))
        first.flush(), second.flush()
        del first, second
        with names.open("w") as out:
            for start in range(0, n, 100_000):
                out.write("".join(f"img/{i:08d}.jpg\n" for i in range(start, min(n, start + 100_000))))
        (folder / f"queries-{n}.part.npy").rename(held)
        print(f"  generated {n:,} + {queries} float16 vectors in {seconds:.0f} s", flush=True)
    return vectors, names, np.load(held).astype(np.float32)


def exact_answers(vectors_path: Path, queries: np.ndarray, folder: Path, n: int) -> np.ndarray:
    """Ids ``(q, K)`` of exact search (float32 arithmetic over the float16 values), cached."""
    cached = folder / f"exact-{n}-{len(queries)}.npy"
    if not cached.exists():
        (_, ids), seconds = timed(exact_search, np.load(vectors_path, mmap_mode="r"), queries, K)
        np.save(cached, ids)
        print(f"  exact answers in {seconds:.0f} s", flush=True)
    return np.load(cached)


def variant(name: str, n: int) -> tuple[int | None, str]:
    """``(pq, store)`` of a variant at size ``n``."""
    if name == "old":
        return 16, "float32"
    if name == "new":
        return None, default_store(n, DIM)
    if name == "new-f16":  # today's codes with a float16 store: 10,000,000 x 1280 in 26 GB, not 51
        return None, "float16"
    pq, _, store = name.removeprefix("pq").partition("-")
    return int(pq), {"f16": "float16", "f32": "float32", "": default_store(n, DIM)}[store]


def database(n: int, store: str, vectors: Path, names: Path, folder: Path) -> tuple[Path, dict]:
    """The imported database of size ``n`` and ``store`` (made once; the import measured then)."""
    path = folder / f"db-{n}-{store}" / "db.npy"
    record = path.parent / "import.json"
    if not record.exists():
        shutil.rmtree(path.parent, ignore_errors=True)
        with Peak() as peak:
            _, seconds = timed(import_vectors, vectors, names, path, store=store, name_rule="text")
        record.write_text(json.dumps({"import_s": seconds, "import_anon": peak.anon, "import_file": peak.file}))
    return path, json.loads(record.read_text())


def latencies(db, queries, pool: int, passes: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall and CPU seconds of each single query (re-ranking included)."""
    wall, cpu = [], []
    for _ in range(passes):
        for q in queries:
            w, c = time.perf_counter(), time.process_time()
            search_database(db, q[None, :], K, pool_factor=pool)
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
    return np.array(wall), np.array(cpu)


def bench(name: str, n: int, vectors: Path, names: Path, queries, exact, folder: Path, args) -> dict:
    pq, store = variant(name, n)
    path, imported = database(n, store, vectors, names, folder)
    index = path.parent / f"{name}.faiss.index"
    load = os.getloadavg()
    if args.reuse_index and manifest_path(index).exists():  # measured again on a kept index: its recorded build
        manifest = read_index_manifest(index)
        build_s, peak = manifest["build_seconds"], None
    else:
        index.unlink(missing_ok=True)
        with Peak() as peak:
            manifest, build_s = timed(build_index_files, path, index, pq=pq, force=True, show_progress=False,
                                      refine=args.refine)
    db, open_s = timed(Database.open, path, index)
    warm_s = timed(db.refine.warm, wait=True)[1] if args.warm_codes and db.refine is not None else None
    pool = int(manifest["pool_factor"])
    _, found = search_database(db, queries, K, pool_factor=pool)
    wall, cpu = latencies(db, queries[: args.single], pool, args.passes)
    _, batch_s = timed(search_database, db, queries, K, pool_factor=pool)
    # the database's files (vectors, manifest, catalog) and this variant's index; not the other variants'
    disk = sum(p.stat().st_size for p in path.parent.iterdir()
               if p.is_file() and (".faiss.index" not in p.name or p.name.startswith(name + ".")))
    return {
        "n": n, "variant": name, "store": store, "search_params": manifest["search_params"],
        "spec": manifest["spec"] + (f", refine {manifest['refine']['exact_factor']} x k" if "refine" in manifest else ""),
        "pool": pool, "own_recall": manifest["plan"]["recall"], "reached": manifest["plan"]["reached"],
        **imported, "build_s": build_s, "build_anon": peak and peak.anon, "build_file": peak and peak.file,
        "open_s": open_s, "warm_codes_s": warm_s,
        "disk": disk, "index_bytes": manifest["index_bytes"],
        "r10": float(recall_of_ids(db.vectors, queries, found, exact, K).mean()),
        "ms_median": 1e3 * float(np.median(wall)), "ms_p95": 1e3 * float(np.percentile(wall, 95)),
        "cpu_ms_median": 1e3 * float(np.median(cpu)), "qps_batched": len(queries) / batch_s,
        "load": [round(x, 1) for x in (*load, *os.getloadavg())],
    }


def serve(path: Path, index: Path, query_id: int = 0) -> dict:
    """``similar-images serve`` on ``path``: seconds to healthy, the first query, mapped and anonymous memory."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = [sys.executable, "-m", "similar_images.cli", "serve", "--vectors", str(path), "--index", str(index),
           "--port", str(port)]
    started = time.perf_counter()
    proc = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(proc.stderr.read().decode()[-2000:]) from None
                time.sleep(0.1)
        healthy = time.perf_counter() - started
        memory = rss(str(proc.pid))
        body = json.dumps({"id": query_id, "k": K}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/search", body,
                                         {"content-type": "application/json"})
        (response, first_s) = timed(urllib.request.urlopen, request, timeout=60)
        response.read()
        return {"healthy_s": healthy, "first_query_s": first_s, "anon_at_healthy": memory["RssAnon"],
                "file_at_healthy": memory["RssFile"], "after_first_query": rss(str(proc.pid)),
                "store_bytes": path.stat().st_size}
    finally:
        proc.terminate()
        proc.wait(30)


def table(rows) -> str:
    gb = 1 << 30
    lines = ["| N | variant | spec (store) | nprobe | pool | import s | build s | build peak anon / file GiB | disk GiB | "
             "recall@10 held-out | median ms | p95 ms | CPU ms/query | batched q/s | load |",
             "|---:|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['variant']} | {r['spec']} ({r['store']}) | {r['search_params'].get('nprobe', '-')} | "
            f"{r['pool']} | {r['import_s']:.0f} | {r['build_s']:.0f} | "
            + (f"{r['build_anon'] / gb:.2f} / {r['build_file'] / gb:.2f}" if r["build_anon"] is not None else "kept")
            + f" | {r['disk'] / gb:.2f} | {r['r10']:.3f}"
            f"{'' if r['reached'] else ' (own: missed)'} | {r['ms_median']:.2f} | {r['ms_p95']:.2f} | "
            f"{r['cpu_ms_median']:.2f} | {r['qps_batched']:.0f} | {'-'.join(str(round(x)) for x in r['load'][::3])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",") if x], default=[40_504, 400_000])
    parser.add_argument("--variants", type=lambda s: [x for x in s.split(",") if x], default=["old", "new"])
    parser.add_argument("--queries", type=int, default=200, help="held-out query vectors")
    parser.add_argument("--single", type=int, default=100, help="held-out queries timed one at a time")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, required=True, help="sources, databases and caches go here")
    parser.add_argument("--serve", action="store_true", help="time `serve` on the last size's last variant")
    parser.add_argument("--keep", action="store_true", help="keep the databases (the sources are always kept)")
    parser.add_argument("--json", type=Path, help="append each row here (JSON lines)")
    parser.add_argument("--refine", default="auto", choices=["auto", "yes", "no"],
                        help="the builds' refine stage (build --refine; auto: from 4,000,000 vectors)")
    parser.add_argument("--reuse-index", action="store_true",
                        help="measure a kept variant's index again instead of building it (its recorded build time)")
    parser.add_argument("--warm-codes", action="store_true",
                        help="read a refine stage's codes into memory before timing (what serve's warm() starts)")
    parser.add_argument("--drop-source", action="store_true",
                        help="delete a size's source vectors once imported and answered exactly (10,000,000 x 1280 "
                             "with its refine codes: 26 + 26 + 13 GB otherwise)")
    args = parser.parse_args(argv)
    print(f"machine: {machine_line()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        vectors, names, queries = source(n, args.queries, args.data_dir, args.seed)
        exact = exact_answers(vectors, queries, args.data_dir, n)
        if args.drop_source:  # every variant imported and the answers known: the disk goes to the indexes
            for name in args.variants:
                database(n, variant(name, n)[1], vectors, names, args.data_dir)
            vectors.unlink(missing_ok=True)
        for name in args.variants:
            rows.append(bench(name, n, vectors, names, queries, exact, args.data_dir, args))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
            if args.json:
                with args.json.open("a") as out:
                    out.write(json.dumps({**rows[-1], "machine": machine_line()}, default=float) + "\n")
    if args.serve:
        n, name = args.sizes[-1], args.variants[-1]
        path = args.data_dir / f"db-{n}-{variant(name, n)[1]}" / "db.npy"
        started = serve(path, path.parent / f"{name}.faiss.index")
        print(f"serve at {n:,}: {json.dumps(started)}", flush=True)
        if args.json:
            with args.json.open("a") as out:
                out.write(json.dumps({"serve": started, "n": n, "machine": machine_line()}) + "\n")
    if not args.keep:
        for n in args.sizes:
            for store in ("float16", "float32"):
                shutil.rmtree(args.data_dir / f"db-{n}-{store}", ignore_errors=True)
    print()
    print(table(rows))
    print(f"machine after: {machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
