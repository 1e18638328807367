#!/usr/bin/env python3
"""Extraction throughput: model only vs end to end, from one run on one machine.

* model only: images already decoded and resized, in memory: ``extractor.embed`` on
  batches (images/s);
* decode only: the same files decoded and resized in one thread (what the pool hides);
* end to end: photo-like 640x480 JPEG files on disk -> vectors file on disk through
  :func:`similar_images.extract.run_extraction` (decoding in its thread pool, batching,
  checkpoints, final atomic save) (images/s).

The goal is end to end >= 0.85 x model only: decoding must hide behind the model.
Model-only is measured before and after the end-to-end run and averaged, so a change
in machine load during the run shows up as a spread instead of a biased ratio.

Usage::

    .venv/bin/python benchmarks/extract_throughput.py            # VGG16, 96 images
    .venv/bin/python benchmarks/extract_throughput.py --images 256 --model efficientnet-lite0

``--weights none`` (the default here) gives the speed of ImageNet weights: same network.
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
from _machine import machine_info
from PIL import Image, ImageOps

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
          "stereo_motorcycle", "cat", "colorwheel", "retina")


def make_jpegs(folder: Path, count: int, size=(640, 480), seed: int = 0) -> list[str]:
    """``count`` photo-like JPEGs: random crops of real photos (skimage), flipped, resized."""
    import skimage.data

    rng = np.random.default_rng(seed)
    sources = []
    for name in PHOTOS:
        image = getattr(skimage.data, name)()
        image = image[0] if isinstance(image, tuple) else image
        sources.append(Image.fromarray(image).convert("RGB"))
    names = []
    for i in range(count):
        source = sources[i % len(sources)]
        w, h = source.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        image = source.crop((x, y, x + cw, y + ch)).resize(size, Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            image = ImageOps.mirror(image)
        names.append(f"img{i:05d}.jpg")
        image.save(folder / names[-1], quality=90)
    return names


def model_only(extractor, batches: list[np.ndarray]) -> float:
    start = time.perf_counter()
    for batch in batches:
        extractor.embed(batch)
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def machine() -> dict:
    info = machine_info()
    info["load_before"] = info.pop("load")
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=96, help="number of JPEGs (default 96)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: package default)")
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--weights", default="none", help="vgg16 weights (default none: same speed)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from similar_images.extract import run_extraction
    from similar_images.features import get_extractor
    from similar_images.images import load_for_model
    from similar_images.pipeline import default_workers

    info = machine()
    options = {"weights": args.weights} if args.model == "vgg16" else {}
    extractor = get_extractor(args.model, **options)
    workers = args.workers or default_workers()
    with tempfile.TemporaryDirectory(prefix="extract-bench-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        names = make_jpegs(folder, args.images)
        file_list = Path(tmp) / "files.txt"
        file_list.write_text("\n".join(names) + "\n")
        size = tuple(extractor.input_size)
        start = time.perf_counter()
        decoded = np.stack([load_for_model(folder / n, size) for n in names])  # (n, h, w, 3) uint8
        decode_only = len(names) / (time.perf_counter() - start)  # one thread
        batches = [decoded[i : i + args.batch_size] for i in range(0, len(decoded), args.batch_size)]
        extractor.embed(batches[0])  # warm-up: graph tracing, memory pools

        before = model_only(extractor, batches)
        start = time.perf_counter()
        manifest = run_extraction(file_list, folder, Path(tmp) / "vectors.npy", extractor,
                                  batch_size=args.batch_size, workers=workers, show_progress=False)
        end_to_end = len(names) / (time.perf_counter() - start)
        after = model_only(extractor, batches)
    if manifest["count"] != len(names):
        raise SystemExit(f"end-to-end run skipped images: {manifest['skipped']}")

    model = (before + after) / 2
    result = {
        "model": extractor.describe(),
        "images": len(names),
        "image_size": "640x480 JPEG, quality 90",
        "batch_size": args.batch_size,
        "workers": workers,
        "model_only_images_per_s": round(model, 3),
        "model_only_before_after": [round(before, 3), round(after, 3)],
        "end_to_end_images_per_s": round(end_to_end, 3),
        "ratio": round(end_to_end / model, 3),
        "decode_only_images_per_s_1_thread": round(decode_only, 1),
        "decode_wait_s": manifest["timings"]["decode_wait_s"],
        "machine": {**info, "load_after": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None},
    }
    m = result["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, load {m['load_before']} -> {m['load_after']}")
    print(f"model: {args.model} ({result['model'].get('weights')}), batch {args.batch_size}, "
          f"{workers} decoding threads, {len(names)} images 640x480")
    print(f"model only : {model:8.2f} images/s  (before {before:.2f}, after {after:.2f})")
    print(f"end to end : {end_to_end:8.2f} images/s  (waited {result['decode_wait_s']:.2f} s for decoding)")
    print(f"decode only: {decode_only:8.1f} images/s  (one thread: JPEG -> {size[0]}x{size[1]} array)")
    print(f"ratio      : {result['ratio']:8.3f}  (goal >= 0.85: {'met' if result['ratio'] >= 0.85 else 'NOT met'})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
