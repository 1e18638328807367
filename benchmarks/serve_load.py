#!/usr/bin/env python3
"""Load test of ``similar-images serve``: concurrent uploads, micro-batching vs serialisation.

Starts the service (a subprocess, ``similar-images serve`` on 127.0.0.1) over the demo
database (EfficientNet-Lite0), then N concurrent clients (asyncio + httpx, in this
process) upload photos of the demo collection for a bounded number of requests and
seconds. Each client count runs twice: with micro-batching (``--batch-size``) and with
plain serialisation (``--batch-size 1``: one model call per request). In the same run,
in process, without HTTP:

* one query: ``SimilarImages.search(jpeg_bytes)`` (decode + model + search), median;
* the model's batch throughput: ``extractor.embed`` on batches of ``--batch-size``
  preprocessed images, images per second;

both measured before and after the load runs (the ratios use their mean: on a shared
machine the load drifts).

Goals (issue 13): 8 clients 0 errors; throughput >= 0.8 x the model's batch throughput;
p50 at 1 client <= 1.3 x one in-process query. Only 127.0.0.1 is contacted.

``--engines`` compares, in one run at ``--clients`` (8), the one-process service with
``serve --engine ray`` (issue 29): ``local``, and ``ray:RxS`` for R replicas and S shards
(``ray:1x1`` is Ray Serve's overhead, ``ray:2x1`` two replicas, ``ray:1x2`` two shards;
``ray:1x1:serve`` the ingress batching with Ray Serve's ``@serve.batch``, ``--batcher serve``).
Each Ray row starts its own local Ray (``similar-images serve --engine ray``, 127.0.0.1)
under a temporary ``RAY_TMPDIR`` and stops it (Ctrl-C, then its leftover processes).

Usage::

    .venv/bin/python benchmarks/serve_load.py                    # needs `similar-images demo` first
    .venv/bin/python benchmarks/serve_load.py --clients 1,8 --requests 120 --json out.json
    .venv/bin/python benchmarks/serve_load.py --engines local,ray:1x1,ray:2x1,ray:1x2 --clients 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _machine import machine_info, machine_line

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo_output"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", default=str(DEMO / "sample_efficientnet-lite0.saved_predictions.npy"))
    parser.add_argument("--index", default=str(DEMO / "sample_efficientnet-lite0.faiss.index"))
    parser.add_argument("--image-dir", default=str(DEMO / "photos"))
    parser.add_argument("--clients", default="1,8", help="client counts, comma-separated")
    parser.add_argument("--requests", type=int, default=96, help="requests per (mode, client count)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="time bound per (mode, client count)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("-k", type=int, default=8)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--engines", default=None,
                        help="compare engines at --clients: local and ray:RxS[:serve] (R replicas, S shards, "
                             "@serve.batch), comma-separated")
    parser.add_argument("--cpus-per-replica", type=float, default=0.25, help="ray: CPUs each replica reserves")
    return parser.parse_args(argv)


def photos(image_dir: str, limit: int = 32) -> list[bytes]:
    if not Path(image_dir).is_dir():
        sys.exit(f"no photo folder {image_dir}: run `similar-images demo` first, or pass --image-dir")
    files = sorted(p for p in Path(image_dir).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[:limit]
    if not files:
        sys.exit(f"no JPEG photos in {image_dir}: run `similar-images demo` first")
    return [p.read_bytes() for p in files]


def in_process(args, uploads: list[bytes]) -> dict:
    """One-query latency (median) and the model's batch throughput, without HTTP.

    Run with the server's threads: the model is warmed in the main thread, then measured
    in one worker thread. On a loaded 2-core machine PyTorch ran several times faster in
    a second thread than in the thread that first used it (its OpenMP team spinning on
    busy cores), so measuring in the main thread would flatter the server.
    """
    from concurrent.futures import ThreadPoolExecutor

    from similar_images.search import SimilarImages

    db = SimilarImages.open(args.vectors, args.index, image_dir=args.image_dir)
    db.warm()  # in the main thread, as Engine.warm_up: the model run once, the row norms computed
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_in_process, db, args, uploads).result()


def _in_process(db, args, uploads: list[bytes]) -> dict:
    from similar_images.images import load_for_model

    size = tuple(db.extractor.input_size)
    for data in uploads[:3]:
        db.search(data, k=args.k)  # warm up
    one = []
    for data in uploads[:24]:
        started = time.perf_counter()
        db.search(data, k=args.k)
        one.append(time.perf_counter() - started)
    batch = np.stack([load_for_model(data, size) for data in (uploads * 4)[:args.batch_size]])
    db.extractor.embed(batch)
    rounds, started = 6, time.perf_counter()
    for _ in range(rounds):
        db.extractor.embed(batch)
    model_rate = rounds * len(batch) / (time.perf_counter() - started)
    return {"one_query_ms": 1000 * float(np.median(one)), "model_batch_img_s": model_rate}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args, batch_size: int, extra=(), env=None, wait_s: float = 120) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    command = [sys.executable, "-c", "from similar_images.cli import main; main()", "serve",
               "--vectors", args.vectors, "--index", args.index, "--image-dir", args.image_dir,
               "--port", str(port), "--batch-size", str(batch_size), "--batch-wait-ms", str(args.batch_wait_ms),
               *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("the server exited: " + process.stderr.read().decode()[-2000:])
        try:
            if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    sys.exit("the server did not start")


async def load(url: str, uploads: list[bytes], clients: int, requests: int, max_seconds: float, k: int) -> dict:
    import httpx

    latencies, errors, issued = [], [], 0
    stop_at = time.monotonic() + max_seconds

    async def client(http, number):
        nonlocal issued
        while issued < requests and time.monotonic() < stop_at:
            data = uploads[(issued + number) % len(uploads)]
            issued += 1
            started = time.perf_counter()
            try:
                response = await http.post("/api/search", files={"image": ("q.jpg", data, "image/jpeg")},
                                           data={"k": str(k)})
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
                    continue
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
                continue
            latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        for data in uploads[:4]:  # warm up the server's first requests
            await http.post("/api/search", files={"image": ("q.jpg", data, "image/jpeg")})
        started = time.perf_counter()
        await asyncio.gather(*(client(http, i) for i in range(clients)))
        elapsed = time.perf_counter() - started
        stats = (await http.get("/api/stats")).json()
    ms = np.array(latencies) * 1000
    p50, p95, p99 = (np.percentile(ms, [50, 95, 99]).tolist() if len(ms) else [float("nan")] * 3)
    return {"clients": clients, "requests": len(latencies), "errors": len(errors), "error_samples": errors[:3],
            "seconds": elapsed, "throughput_req_s": len(latencies) / elapsed, "p50_ms": p50, "p95_ms": p95,
            "p99_ms": p99, "mean_batch_size": stats.get("mean_batch_size")}


def compare_engines(args, uploads: list[bytes]) -> None:
    """One row per engine at ``--clients`` (issue 29): throughput and p50/p95/p99."""
    import shutil
    import signal
    import tempfile

    clients = int(args.clients.split(",")[-1])
    print(f"machine: {machine_line()}")
    rows = []
    for engine in args.engines.split(","):
        temp = tempfile.mkdtemp(prefix="rb", dir="/tmp")  # Ray's session files (short: socket paths)
        if engine == "local":
            process, url = start_server(args, args.batch_size)
        else:
            shape, _, batcher = engine.removeprefix("ray:").partition(":")
            replicas, shards = shape.split("x")
            extra = ["--engine", "ray", "--replicas", replicas, "--shards", shards,
                     "--cpus-per-replica", str(args.cpus_per_replica), *(["--batcher", batcher] if batcher else [])]
            # Ray's processes start without rfc3987-syntax's 2.3 s import (docs/scale.md, "A busy machine")
            no_rfc = ROOT / "tests" / "cluster" / "_no_rfc3987"
            env = {"RAY_TMPDIR": temp, "PYTHONPATH": f"{no_rfc}{os.pathsep}{ROOT}", "RAY_USAGE_STATS_ENABLED": "0"}
            process, url = start_server(args, args.batch_size, extra, env, wait_s=900)
        try:
            load_start = os.getloadavg()[0]
            row = asyncio.run(load(url, uploads, clients, args.requests, args.max_seconds, args.k))
            row.update(engine=engine, load=[round(load_start, 2), round(os.getloadavg()[0], 2)])
            rows.append(row)
            print(f"{engine:8s} {clients} clients: {row['throughput_req_s']:6.2f} req/s, p50 {row['p50_ms']:.0f} "
                  f"p95 {row['p95_ms']:.0f} p99 {row['p99_ms']:.0f} ms, mean batch {row['mean_batch_size']}, "
                  f"{row['errors']} errors "
                  f"{row['error_samples'][:1]}, {row['requests']} requests in {row['seconds']:.1f} s, load "
                  f"{row['load'][0]:.1f} -> {row['load'][1]:.1f}", flush=True)
        finally:
            process.send_signal(signal.SIGTERM)  # the CLI stops Ray Serve and its local Ray (so does Ctrl-C)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
            _kill_leftovers(temp)
            shutil.rmtree(temp, ignore_errors=True)
    print("| engine | clients | throughput | p50 | p95 | p99 | mean batch | errors | load (start -> end) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['clients']} | {r['throughput_req_s']:.1f} req/s | {r['p50_ms']:.0f} ms | "
              f"{r['p95_ms']:.0f} ms | {r['p99_ms']:.0f} ms | {r['mean_batch_size']} | {r['errors']} | "
              f"{r['load'][0]:.1f} -> {r['load'][1]:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_info(), "rows": rows}, indent=1))


def _kill_leftovers(temp: str) -> None:
    """Ray's processes of one row (their command lines name its temporary folder), by id."""
    import signal

    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if temp.encode() in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass


def main(argv=None) -> None:
    args = parse_args(argv)
    uploads = photos(args.image_dir)
    if args.engines:
        compare_engines(args, uploads)
        return
    load_before = os.getloadavg()
    print(f"machine: {machine_line()}")
    before = in_process(args, uploads)
    print(f"in process (before): one query {before['one_query_ms']:.1f} ms (median); model batch of "
          f"{args.batch_size}: {before['model_batch_img_s']:.1f} img/s")
    rows = []
    for mode, batch_size in (("micro-batching", args.batch_size), ("serialised", 1)):
        process, url = start_server(args, batch_size)
        try:
            for clients in [int(c) for c in args.clients.split(",")]:
                row = asyncio.run(load(url, uploads, clients, args.requests, args.max_seconds, args.k))
                row["mode"], row["load"] = mode, round(os.getloadavg()[0], 2)
                rows.append(row)
                print(f"{mode:15s} {clients:2d} clients: {row['throughput_req_s']:6.2f} req/s, p50 {row['p50_ms']:.0f} "
                      f"p95 {row['p95_ms']:.0f} p99 {row['p99_ms']:.0f} ms, {row['errors']} errors, "
                      f"mean batch {row['mean_batch_size']}, {row['requests']} requests in {row['seconds']:.1f} s")
        finally:
            process.terminate()
            process.wait(timeout=30)
    after = in_process(args, uploads)
    print(f"in process (after): one query {after['one_query_ms']:.1f} ms (median); model batch of "
          f"{args.batch_size}: {after['model_batch_img_s']:.1f} img/s")
    # the machine may be shared: the baselines are the mean of before and after the load runs
    base = {key: (before[key] + after[key]) / 2 for key in before}
    batched = {r["clients"]: r for r in rows if r["mode"] == "micro-batching"}
    most = max(batched)
    ratios = {"throughput_vs_model_batch": batched[most]["throughput_req_s"] / base["model_batch_img_s"],
              "p50_1_client_vs_one_query": batched[1]["p50_ms"] / base["one_query_ms"] if 1 in batched else None}
    print(f"throughput at {most} clients / model batch throughput: {ratios['throughput_vs_model_batch']:.2f} (goal >= 0.8)")
    if ratios["p50_1_client_vs_one_query"] is not None:
        print(f"p50 at 1 client / one in-process query: {ratios['p50_1_client_vs_one_query']:.2f} (goal <= 1.3)")
    load_after = os.getloadavg()
    print(f"load average before -> after: {load_before[0]:.2f} -> {load_after[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_info(), "in_process": base, "in_process_before": before,
                                               "in_process_after": after, "rows": rows,
                                               "ratios": ratios, "load_before": load_before,
                                               "load_after": load_after}, indent=1))


if __name__ == "__main__":
    main()
