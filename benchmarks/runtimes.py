#!/usr/bin/env python3
"""Runtimes and precisions, in one run on one machine: how much faster, and how faithful.

For each model (VGG16 fc2, EfficientNet-Lite0) x runtime/precision (native fp32, OpenVINO
fp32, OpenVINO INT8):

* build time (conversion, timing of hint x batch size; INT8: + NNCF calibration + fidelity check);
* model-only images/s: pre-decoded 224x224 batches through ``extractor.embed``;
* for INT8, the fidelity report on held-out images of the collection;

then, for the fastest setting of each model, end to end: photo-like 640x480 JPEG files
on disk -> vectors file on disk through ``run_extraction`` (decoding threads, batching,
checkpoints, atomic save). Ratios are to the native fp32 model-only speed of the same
model in the same run, and a projected time for COCO's 40,504 images is given.
The measured speeds are also remembered in the cache, so ``extract`` can name the
faster options on this machine.

Goal (issue 8): VGG16 INT8 end to end >= 3.5 x TensorFlow fp32 model only.

Usage::

    .venv/bin/python benchmarks/runtimes.py                      # both models, 256 JPEGs
    .venv/bin/python benchmarks/runtimes.py --models vgg16 --images 96 --calibration-size 60 --holdout-size 24

VGG16 runs with random weights (``--vgg-weights none``, the default: ImageNet weights
cannot be downloaded here; the network, hence the speed, is the same); EfficientNet-Lite0
with its real ImageNet weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _photos import photo_collection  # noqa: E402  (benchmarks/ is not a package)

COCO_IMAGES = 40504
SETTINGS = (("native", "fp32"), ("openvino", "fp32"), ("openvino", "int8"))


def model_only(extractor, decoded: np.ndarray, batch_size: int, *, min_images: int, min_seconds: float) -> float:
    """Images/s of ``extractor.embed`` on batches of ``decoded`` (after one warm-up batch)."""
    batches = [decoded[i : i + batch_size] for i in range(0, len(decoded), batch_size)]
    extractor.embed(batches[0])
    done, start, i = 0, time.perf_counter(), 0
    while done < min_images or time.perf_counter() - start < min_seconds:
        done += len(extractor.embed(batches[i % len(batches)]))
        i += 1
    return done / (time.perf_counter() - start)


def other_hint(extractor, *, min_seconds: float) -> tuple[str, float]:
    """The OpenVINO hint the extractor did not choose, and its images/s at the same batch size."""
    from similar_images.models.openvino_runtime import HINTS, time_setting

    (other,) = [h for h in HINTS if h != extractor.hint]
    compiled = extractor.compile_for(other)
    return other, time_setting(compiled, extractor.prepare, tuple(extractor.input_size), extractor.batch_size,
                               min_seconds=min_seconds)


def build(model: str, runtime: str, precision: str, *, weights: str | None, paths, args):
    from similar_images.features import get_extractor

    options = {} if weights is None else {"weights": weights}
    if runtime == "openvino":
        options.update(runtime=runtime, precision=precision, cache_dir=args.cache, show_progress=False)
        if precision == "int8":
            options.update(calibration_paths=paths, calibration_size=args.calibration_size,
                           holdout_size=args.holdout_size, force_int8=True)
    start = time.perf_counter()
    extractor = get_extractor(model, **options)
    return extractor, time.perf_counter() - start


def end_to_end(extractor, folder: Path, names: list[str], tmp: Path, batch_size: int) -> float:
    from similar_images.extract import run_extraction

    file_list = tmp / "files.txt"
    file_list.write_text("\n".join(names) + "\n")
    output = tmp / f"vectors-{extractor.name}.npy"
    start = time.perf_counter()
    manifest = run_extraction(file_list, folder, output, extractor, batch_size=batch_size,
                              show_progress=False, force=True)
    rate = len(names) / (time.perf_counter() - start)
    if manifest["count"] != len(names):
        raise SystemExit(f"end-to-end run skipped images: {manifest['skipped']}")
    return rate


def run_model(model: str, args, folder: Path, names: list[str], decoded: np.ndarray, tmp: Path) -> dict:
    from similar_images.models import speeds

    weights = args.vgg_weights if model == "vgg16" else None
    paths = [folder / n for n in names]
    rows = []
    for runtime, precision in SETTINGS:
        extractor, build_s = build(model, runtime, precision, weights=weights, paths=paths, args=args)
        rate = model_only(extractor, decoded, args.batch_size, min_images=args.min_images,
                          min_seconds=args.min_seconds)
        speeds.record_speed(model, runtime, precision, rate, batch_size=getattr(extractor, "batch_size", None),
                            hint=getattr(extractor, "hint", None), source="benchmarks/runtimes.py",
                            cache_dir=args.cache)
        hint = getattr(extractor, "hint", None)
        other = other_hint(extractor, min_seconds=args.min_seconds) if hint else None
        rows.append({"runtime": runtime, "precision": precision, "build_s": round(build_s, 1), "hint": hint,
                     "other_hint": [other[0], round(other[1], 2)] if other else None,
                     "images_per_s": round(rate, 2), "batch_size": getattr(extractor, "batch_size", args.batch_size),
                     "fidelity": getattr(extractor, "fidelity", None), "extractor": extractor})
        print(f"  {model:18s} {runtime:8s} {precision}: {rate:7.2f} images/s (built in {build_s:.0f} s)"
              + (f"; {hint} hint, batch {extractor.batch_size}; {other[0]} hint {other[1]:.2f}" if hint else ""),
              flush=True)
    native = rows[0]["images_per_s"]
    fastest = max(rows, key=lambda r: r["images_per_s"])
    e2e = end_to_end(fastest["extractor"], folder, names, tmp, args.batch_size)
    for row in rows:
        row["ratio"] = round(row["images_per_s"] / native, 2)
        row.pop("extractor")
    return {"model": model, "rows": rows, "native_fp32": native,
            "end_to_end": {"runtime": fastest["runtime"], "precision": fastest["precision"],
                           "images_per_s": round(e2e, 2), "ratio": round(e2e / native, 2),
                           "coco_minutes": round(COCO_IMAGES / e2e / 60, 1)}}


def markdown(results: list[dict], info: dict, args) -> str:
    lines = [f"Machine: {info['cpu']}, {info['cores']} usable cores, ISA {' '.join(info['isa'])}; "
             f"load average {info['load_before']} before, {info['load_after']} after. "
             f"Batches of {args.batch_size}; {args.images} JPEGs 640x480 + the offline sample photos; "
             f"INT8 calibration {args.calibration_size} + {args.holdout_size} held out.", "",
             "| model | runtime | precision | model-only images/s | x native fp32 | hint, batch (measured) | "
             "other hint images/s | build s | INT8 fidelity (cos min / mean, top-10 agreement) | "
             "COCO 40,504 model-only |",
             "|---|---|---|---:|---:|---|---:|---:|---|---:|"]
    for res in results:
        for r in res["rows"]:
            f = r["fidelity"]
            fid = (f"{f['cosine_min']:.3f} / {f['cosine_mean']:.4f}, {f['top10_agreement']:.3f}"
                   f" ({f['images']} img)") if f else ""
            minutes = COCO_IMAGES / r["images_per_s"] / 60
            chosen = f"{r['hint']}, {r['batch_size']}" if r["hint"] else ""
            other = f"{r['other_hint'][0]} {r['other_hint'][1]:.1f}" if r["other_hint"] else ""
            lines.append(f"| {res['model']} | {r['runtime']} | {r['precision']} | {r['images_per_s']:.1f} | "
                         f"{r['ratio']:.2f} | {chosen} | {other} | {r['build_s']:.0f} | {fid} | {minutes:.0f} min |")
    lines.append("")
    for res in results:
        e = res["end_to_end"]
        lines.append(f"* {res['model']} end to end (JPEG files -> vectors on disk), {e['runtime']} "
                     f"{e['precision']}: {e['images_per_s']:.1f} images/s = {e['ratio']:.2f}x native fp32 "
                     f"model-only; COCO 40,504 images in about {e['coco_minutes']:.0f} min.")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="vgg16,efficientnet-lite0")
    parser.add_argument("--images", type=int, default=256, help="640x480 JPEGs for end to end (default 256)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per embed() call (default 32)")
    parser.add_argument("--calibration-size", type=int, default=300)
    parser.add_argument("--holdout-size", type=int, default=100)
    parser.add_argument("--min-images", type=int, default=64, help="model-only: at least this many images")
    parser.add_argument("--min-seconds", type=float, default=5.0, help="model-only: at least this long")
    parser.add_argument("--vgg-weights", default="none", help="vgg16 weights (default none: same speed)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="cache folder (default: the user cache; INT8 models found there are reused)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from similar_images.demo.sample_photos import write_collection
    from similar_images.images import load_for_model
    from similar_images.models.speeds import machine

    info = {**machine(), "load_before": [round(x, 2) for x in os.getloadavg()]}
    results = []
    with tempfile.TemporaryDirectory(prefix="runtimes-bench-") as tmp_name:
        tmp = Path(tmp_name)
        folder = tmp / "images"
        folder.mkdir()
        names = write_collection(folder, show_progress=False) + photo_collection(folder, args.images, show_progress=False)
        decoded = np.stack([load_for_model(folder / n, (224, 224)) for n in names[-args.min_images:]])
        for model in args.models.split(","):
            print(f"{model}:", flush=True)
            results.append(run_model(model, args, folder, names, decoded, tmp))
    info["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print()
    print(markdown(results, info, args))
    for res in results:
        if res["model"] == "vgg16":
            e = res["end_to_end"]
            met = e["precision"] == "int8" and e["ratio"] >= 3.5
            print(f"\ngoal: VGG16 INT8 end to end >= 3.5x native fp32 model only: {e['ratio']:.2f}x "
                  f"({e['runtime']} {e['precision']}) -> {'met' if met else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
