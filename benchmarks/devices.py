#!/usr/bin/env python3
"""Model-only speed and fidelity per device: how VGG16 and EfficientNet-Lite0 run on CUDA.

For each model, in interleaved rounds (median and spread of ``--rounds``), on the same
pre-decoded 224x224 photos:

* VGG16: Keras/TensorFlow on the CPU (the reference), the torch port of the same Keras
  model on the CPU (what runs on CUDA, here on the CPU to compare frameworks), and the
  torch port on CUDA when torch sees a GPU;
* EfficientNet-Lite0: torch on the CPU (the reference) and on CUDA when present.

Prints images/s, the minimum cosine to the reference's vectors, and the model-only time
projected for COCO's 40,504 images. The issue-15 GPU goal (40,504 photos in <= 60 s on
one H200) is end to end, measured by ``coco_scale.py``; this script gives the model's share.

Usage::

    .venv/bin/python benchmarks/devices.py                           # both models, every device here
    .venv/bin/python benchmarks/devices.py --models vgg16 --images 16 --rounds 3
    .venv/bin/python benchmarks/devices.py --images 512 --batch-size 64   # on a GPU machine
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_line  # noqa: E402  (benchmarks/ is not a package)

COCO_IMAGES = 40504
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "immunohistochemistry")


def photos(count: int) -> np.ndarray:
    """``count`` real photos (skimage, cycled) at 224x224: ``(count, 224, 224, 3)`` uint8."""
    import skimage.data
    from PIL import Image

    from similar_images.images import load_for_model

    images = [load_for_model(Image.fromarray(getattr(skimage.data, n)()), (224, 224)) for n in PHOTOS]
    return np.stack([images[i % len(images)] for i in range(count)])


def extractors(model: str, weights: str, cuda: bool) -> dict[str, object]:
    """``{label: extractor}``; the first is the reference."""
    if model == "vgg16":
        from similar_images.models import vgg16, vgg16_torch

        keras = vgg16.create(weights=weights, device="cpu")
        found = {"keras cpu": keras,
                 "torch port cpu": vgg16_torch.TorchVGG16Extractor(vgg16_torch.from_keras(keras._model),
                                                                   keras.describe(), device="cpu")}
        if cuda:
            found["torch port cuda"] = vgg16.create(weights=weights, device="cuda")
        return found
    from similar_images.models import efficientnet

    found = {"torch cpu": efficientnet.create(device="cpu")}
    if cuda:
        found["torch cuda"] = efficientnet.create(device="cuda")
    return found


def images_per_second(extractor, decoded: np.ndarray, batch_size: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(decoded), batch_size):
        extractor.embed(decoded[i : i + batch_size])
    return len(decoded) / (time.perf_counter() - start)


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def measure(model: str, args, cuda: bool) -> list[dict]:
    decoded = photos(args.images)
    found = extractors(model, args.vgg_weights, cuda)
    reference = None
    for label, extractor in found.items():  # warm-up, and the vectors for fidelity
        vectors = extractor.embed(decoded[: args.batch_size])
        reference = vectors if reference is None else reference
        found[label] = (extractor, cosine_min(vectors, reference))
    speeds: dict[str, list[float]] = {label: [] for label in found}
    for _ in range(args.rounds):  # interleaved: a load change hits every setting alike
        for label, (extractor, _) in found.items():
            speeds[label].append(images_per_second(extractor, decoded, args.batch_size))
    rows = []
    for label, (_, cosine) in found.items():
        median = statistics.median(speeds[label])
        spread = (max(speeds[label]) - min(speeds[label])) / median
        rows.append({"model": model, "setting": label, "images_s": median, "spread": spread, "cosine": cosine,
                     "coco_s": COCO_IMAGES / median})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="vgg16,efficientnet-lite0")
    parser.add_argument("--images", type=int, default=32, help="decoded photos timed per round")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--vgg-weights", default="none", help="'none' (seeded random; same speed) or a path")
    args = parser.parse_args(argv)
    from similar_images.models.devices import cuda_available

    cuda = cuda_available()
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {machine_line()}")
    if cuda:
        import torch

        print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    else:
        print("GPU: none (torch.cuda.is_available() is False): CPU rows only")
    rows = [row for model in args.models.split(",") for row in measure(model, args, cuda)]
    print(f"\n{args.images} photos a round, batch {args.batch_size}, median of {args.rounds} interleaved rounds\n")
    print("| model | setting | images/s | spread | min cosine to the first row | COCO model-only |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['setting']} | {row['images_s']:.1f} | {row['spread']:.0%} | "
              f"{row['cosine']:.6f} | {row['coco_s']:.0f} s |")
    faithful = all(row["cosine"] >= 0.999 for row in rows)
    print(f"\nfidelity (every setting >= 0.999 cosine to its model's CPU reference): {'met' if faithful else 'NOT met'}")
    return 0 if faithful else 1


if __name__ == "__main__":
    sys.exit(main())
