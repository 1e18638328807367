"""CLIP speed on this machine: the image tower (model only on torch fp32, OpenVINO fp32 and
OpenVINO INT8; extraction end to end) and the text tower (one query at a time, and batched),
with random seeded weights (no download; the same network and FLOPs as the real weights),
beside EfficientNet-Lite0 in the same run.

Usage::

    python benchmarks/clip.py                      # 200 photos, ViT-B/32
    python benchmarks/clip.py -n 500 --also MobileCLIP-S1 MobileCLIP2-S0   # other open_clip image towers

Prints one line per figure and the machine with its load average (at the start and the end).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine_line
from _photos import default_folder, photo_collection


def per_second(run, items: int, *, min_seconds: float) -> float:
    """Items a second of ``run()`` (which handles ``items``), after one warm-up call."""
    run()
    started, done = time.perf_counter(), 0
    while time.perf_counter() - started < min_seconds:
        run()
        done += items
    return done / (time.perf_counter() - started)


def image_tower(extractor, batch: int, seconds: float) -> float:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, *extractor.input_size, 3), dtype=np.uint8)
    return per_second(lambda: extractor.embed(images), batch, min_seconds=seconds)


def extraction(extractor, names: list[str], folder: Path, batch: int) -> float:
    from similar_images.extract import run_extraction

    out = Path(tempfile.mkdtemp(prefix="clip-bench-"))
    (out / "list.txt").write_text("\n".join(names) + "\n")
    started = time.perf_counter()
    run_extraction(out / "list.txt", folder, out / "v.npy", extractor, batch_size=batch, show_progress=False)
    return len(names) / (time.perf_counter() - started)


def text_tower(clip, seconds: float) -> tuple[float, float]:
    """(median ms of one query, texts/s in batches of 64)."""
    texts = [f"a photo of {w} number {i}" for i, w in enumerate(("a red bicycle", "a cat on a sofa", "a bowl") * 22)]
    clip.encode_text(texts[:1])
    one = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(one) < 5:
        t = time.perf_counter()
        clip.encode_text([texts[len(one) % len(texts)]])
        one.append(time.perf_counter() - t)
    return 1000 * statistics.median(one), per_second(lambda: clip.encode_text(texts[:64]), 64, min_seconds=seconds)


def other_tower(arch: str, batch: int, seconds: float) -> str:
    """Model-only images/s of another open_clip architecture's image tower (random weights)."""
    import torch

    from similar_images.models.clip import open_clip_module

    open_clip = open_clip_module()
    model = open_clip.create_model(arch, pretrained=None).eval()
    size = model.visual.image_size if hasattr(model.visual, "image_size") else 224
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    x = torch.rand(batch, 3, size, size)
    with torch.inference_mode():
        rate = per_second(lambda: model.encode_image(x), batch, min_seconds=seconds)
    params = sum(p.numel() for p in model.visual.parameters()) / 1e6
    return f"{arch}: image tower {rate:.1f} images/s model only ({size}x{size}, {params:.1f} M parameters)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="photos for the end-to-end extraction (640x480 JPEGs)")
    parser.add_argument("-b", "--batch-size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="least time per model-only figure")
    parser.add_argument("--also", nargs="*", default=[], help="other open_clip architectures (image tower only)")
    parser.add_argument("--calibration", type=int, default=50, help="INT8 calibration images")
    args = parser.parse_args()

    from similar_images.features import get_extractor

    print(f"machine at start: {machine_line()}", flush=True)
    folder = default_folder(args.n)
    names = photo_collection(folder, args.n, show_progress=False)
    clip = get_extractor("clip-vit-b-32", weights="none", device="cpu")
    effnet = get_extractor("efficientnet-lite0", device="cpu")
    cache = Path(tempfile.mkdtemp(prefix="clip-bench-cache-"))  # a fresh conversion and calibration
    ov = get_extractor("clip-vit-b-32", weights="none", runtime="openvino", batch_size=args.batch_size,
                       cache_dir=cache, show_progress=False)
    int8 = get_extractor("clip-vit-b-32", weights="none", runtime="openvino", precision="int8",
                         batch_size=args.batch_size, cache_dir=cache, show_progress=False, force_int8=True,
                         calibration_paths=[folder / n for n in names], calibration_size=args.calibration)
    print(f"clip-vit-b-32 INT8 (random weights, forced): fidelity {int8.fidelity}", flush=True)
    for label, extractor in (("clip-vit-b-32 torch fp32", clip), ("clip-vit-b-32 OpenVINO fp32", ov),
                             ("clip-vit-b-32 OpenVINO INT8", int8), ("efficientnet-lite0 torch fp32", effnet)):
        rate = image_tower(extractor, args.batch_size, args.seconds)
        print(f"{label}: image tower {rate:.1f} images/s model only (batch {args.batch_size})", flush=True)
    for label, extractor in (("clip-vit-b-32 torch fp32", clip), ("clip-vit-b-32 OpenVINO fp32", ov)):
        rate = extraction(extractor, names, folder, args.batch_size)
        print(f"{label}: extraction {rate:.1f} images/s end to end ({args.n} photos, decode threads)", flush=True)
    one_ms, batched = text_tower(clip, args.seconds)
    print(f"clip-vit-b-32: text tower {one_ms:.1f} ms a query (median, one at a time), "
          f"{batched:.1f} texts/s in batches of 64", flush=True)
    for arch in args.also:
        print(other_tower(arch, args.batch_size, args.seconds), flush=True)
    print(f"machine at end: {machine_line()}")


if __name__ == "__main__":
    main()
