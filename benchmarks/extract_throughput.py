#!/usr/bin/env python3
"""Extraction throughput: model only (as tuned) vs end to end, from one run on one machine.

* model only: the tuned OpenVINO setting (hint, batch size, requests in flight) on
  decoded images in memory (the compiled model preprocesses in its graph), timed as the tuning times it
  (``openvino_requests.time_setting``), before, between and after the end-to-end runs;
* end to end: photo-like 640x480 JPEG files on disk -> vectors file on disk through
  :func:`similar_images.extract.run_extraction` (decode threads, preparation thread,
  requests in flight, checkpoints, final atomic save), at the default ``-b`` and at ``-b 8``;
* tuning re-measured: the model-only figure against the one the tuning recorded in
  ``speeds.json`` (goal: within 5%);
* decode only: the same files decoded and resized in one thread (core-seconds per image),
  for the core limit ``cores / (model + decode core-seconds per image)``.

Goals (issue 15): VGG16 INT8 end to end >= 0.95 x model only at both batch sizes;
EfficientNet-Lite0 INT8 end to end >= 0.9 x the core limit.

Usage::

    .venv/bin/python benchmarks/extract_throughput.py                  # VGG16 INT8, 2,000 photos
    .venv/bin/python benchmarks/extract_throughput.py --model efficientnet-lite0
    .venv/bin/python benchmarks/extract_throughput.py --images 200     # a quick look

The photos (``_photos.py``) are made once in ``<cache>/benchmarks/photos-640x480`` and reused. VGG16 runs with
random weights (``weights="none"``): the same network, so the same speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _machine import load_average, machine_info
from _photos import photo_collection

GOALS = {"vgg16": ("model only", 0.95), "efficientnet-lite0": ("core limit", 0.9)}


def model_only(extractor, seconds: float) -> float:
    """Images/s of the extractor's tuned setting, timed as the tuning times it (compiled from the cache)."""
    from similar_images.models.openvino_requests import time_setting

    return time_setting(extractor.compiled, extractor.prepare, tuple(extractor.input_size), extractor.batch_size,
                        min_seconds=seconds)


def end_to_end(extractor, folder: Path, names: list[str], batch_size: int, workers: int | None):
    from similar_images.extract import run_extraction

    with tempfile.TemporaryDirectory(prefix="extract-bench-") as tmp:
        file_list = Path(tmp) / "files.txt"
        file_list.write_text("\n".join(names) + "\n")
        start = time.perf_counter()
        manifest = run_extraction(file_list, folder, Path(tmp) / "vectors.npy", extractor, batch_size=batch_size,
                                  workers=workers, show_progress=False)
        rate = len(names) / (time.perf_counter() - start)
    if manifest["count"] != len(names):
        raise SystemExit(f"end-to-end run skipped images: {manifest['skipped'][:3]}")
    return rate, manifest


def decode_seconds(folder: Path, names: list[str], size) -> float:
    """Decode core-seconds per image (one thread, the first 100 files)."""
    from similar_images.images import load_for_model

    sample = names[:100]
    start = time.perf_counter()
    for name in sample:
        load_for_model(folder / name, size)
    return (time.perf_counter() - start) / len(sample)


def parse(argv):
    from similar_images.extract import DEFAULT_BATCH_SIZE

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="photo-like JPEGs (default 2000)")
    parser.add_argument("--model", default="vgg16", choices=sorted(GOALS))
    parser.add_argument("--precision", default="int8", choices=("int8", "fp32"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[DEFAULT_BATCH_SIZE, 8],
                        help=f"end-to-end -b values (default {DEFAULT_BATCH_SIZE} and 8)")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: package default)")
    parser.add_argument("--model-seconds", type=float, default=15.0, help="seconds per model-only timing")
    parser.add_argument("--rounds", type=int, default=3, help="end-to-end runs per batch size, interleaved "
                        "with model-only timings (medians; more on a busy machine)")
    parser.add_argument("--keep-tuning", action="store_true",
                        help="use the tuning already in speeds.json (default: tune again in this run)")
    parser.add_argument("--hint", choices=("LATENCY", "THROUGHPUT"), default=None,
                        help="an OpenVINO hint instead of the tuned one (with --request-batch: A/B runs)")
    parser.add_argument("--request-batch", type=int, default=None, help="images per request instead of the tuned size")
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: the package's)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from similar_images.features import get_extractor
    from similar_images.jobs import time_summary
    from similar_images.models import speeds

    info = machine_info()
    print(f"machine: {info['cpu']}, {info['cores']} cores, load {info['load']}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    folder = speeds.cache_root(args.cache) / "benchmarks" / "photos-640x480"  # shared with coco_scale.py
    start = time.perf_counter()
    names = photo_collection(folder, args.images, show_progress=False)
    print(f"photos: {len(names)} x 640x480 JPEG in {folder} ({time.perf_counter() - start:.0f} s to make or find)")
    options = {"weights": "none"} if args.model == "vgg16" else {}
    if args.precision == "int8":
        options["calibration_paths"] = [folder / n for n in names]
    if args.hint or args.request_batch:  # a given setting: no tuning (and nothing re-measured)
        options.update(hint=args.hint, batch_size=args.request_batch or 8)
    elif not args.keep_tuning:  # the recorded figure to re-measure is this run's, under this load
        speeds.forget_tuning(args.model, "openvino", args.precision, cache_dir=args.cache)
    start = time.perf_counter()
    extractor = get_extractor(args.model, runtime="openvino", precision=args.precision, cache_dir=args.cache,
                              show_progress=False, **options)
    startup = time.perf_counter() - start
    key = speeds.config_key(args.model, "openvino", args.precision)
    recorded = {} if args.hint or args.request_batch else speeds.measured(args.cache, section="tuning").get(key, {})
    print(f"model: {args.model} OpenVINO {args.precision}, tuned {extractor.hint}/{extractor.batch_size}, "
          f"start-up {startup:.1f} s")

    models, runs = [model_only(extractor, args.model_seconds)], []
    for _ in range(args.rounds):  # interleaved: model, end to end, model, end to end, model, ...
        for b in args.batch_sizes:
            rate, manifest = end_to_end(extractor, folder, names, b, args.workers)
            t = manifest["timings"]
            runs.append({"batch_size": b, "images_per_s": round(rate, 3), "timings": t,
                         "model_busy": round(t["model_s"] / t["elapsed_s"], 3),
                         "time_summary": time_summary(manifest), "model_before": models[-1]})
            models.append(model_only(extractor, args.model_seconds))
            runs[-1]["model_after"] = models[-1]
    decode_s = decode_seconds(folder, names, tuple(extractor.input_size))
    cores = info["cores"]
    model = statistics.median(models)
    limit = cores / (cores / model + decode_s)
    goal_of, goal = GOALS[args.model]
    result = {"model": extractor.describe(), "images": len(names), "startup_s": round(startup, 1),
              "hint": extractor.hint, "request_batch": extractor.batch_size,
              "model_only_images_per_s": [round(m, 2) for m in models], "decode_ms_per_image": round(1000 * decode_s, 2),
              "core_limit_images_per_s": round(limit, 2), "runs": runs, "tuning_recorded": recorded,
              "machine": {**info, "load_after": load_average()}}
    print(f"model only : {model:8.2f} images/s (median of {', '.join(f'{m:.2f}' for m in models)})")
    print(f"decode     : {1000 * decode_s:8.2f} ms a core per image; core limit {cores} / (model + decode) "
          f"= {limit:.2f} images/s")
    for run in runs:
        reference = (run["model_before"] + run["model_after"]) / 2 if goal_of == "model only" else limit
        run["ratio"] = round(run["images_per_s"] / reference, 3)
    for b in args.batch_sizes:
        mine = [r for r in runs if r["batch_size"] == b]
        ratio = statistics.median(r["ratio"] for r in mine)
        met = "met" if ratio >= goal else "NOT met"
        print(f"end to end -b {b:<3}: {statistics.median(r['images_per_s'] for r in mine):8.2f} images/s, "
              f"{ratio:.3f} x {goal_of} (goal >= {goal}: {met}); model thread busy "
              f"{100 * statistics.median(r['model_busy'] for r in mine):.0f}% of the run")
        print(f"    {mine[-1]['time_summary']}")
    if recorded.get("images_per_s"):
        drift = model / recorded["images_per_s"] - 1
        result["tuning_drift"] = round(drift, 3)
        print(f"tuning re-measured: {model:.2f} vs {recorded['images_per_s']:.2f} images/s recorded "
              f"{recorded.get('measured_at', '')} (spread {recorded.get('spread', '?')}): {100 * drift:+.1f}% "
              f"(goal within 5%: {'met' if abs(drift) <= 0.05 else 'NOT met'})")
    print(f"load after: {result['machine']['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
