"""The image-query part of ``search.py``: a photo file to results, against decode + forward."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

ROUNDS = 30


def add_arguments(parser) -> None:
    parser.add_argument("--image-query", action=__import__("argparse").BooleanOptionalAction, default=True,
                        help="time SimilarImages.search(path) on an EfficientNet-Lite0 database of --n vectors")
    parser.add_argument("--runtime", default="openvino", help="EfficientNet-Lite0 runtime (native, openvino)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds of each timing")


def _median_ms(times) -> float:
    return 1e3 * float(np.median(times))


def bench_image_query(folder: Path, args) -> dict:
    """Median decode, batch-1 forward and whole ``search(path)``, interleaved, on one 640x480 JPEG."""
    from PIL import Image

    from similar_images.db.build import build_index_files
    from similar_images.db.vectors import save_vectors
    from similar_images.demo.sample_photos import write_query
    from similar_images.evaluation.synthetic import clustered_vectors
    from similar_images.features import get_extractor
    from similar_images.images import load_for_model
    from similar_images.search import SimilarImages

    extractor = get_extractor("efficientnet-lite0", runtime=args.runtime)
    photo = write_query(folder / "query.jpg")
    Image.open(photo).convert("RGB").resize((640, 480)).save(photo, quality=90)  # a COCO-sized photo
    vectors = clustered_vectors(args.n, 1280, seed=args.seed + 1)
    path = folder / "lite0.npy"
    save_vectors(path, vectors, {"model": extractor.describe(), "names": [f"{i}.jpg" for i in range(args.n)]})
    del vectors
    build_index_files(path, folder / "lite0.faiss.index", show_progress=False)
    db = SimilarImages.open(path, folder / "lite0.faiss.index", extractor=extractor)
    size = tuple(extractor.input_size)
    decode, forward, whole = [], [], []
    for round_ in range(args.rounds + 3):  # 3 warm-up rounds
        t0 = time.perf_counter()
        image = load_for_model(photo, size)
        t1 = time.perf_counter()
        extractor.embed(image[None])
        t2 = time.perf_counter()
        db.search(photo, k=10)
        t3 = time.perf_counter()
        if round_ >= 3:
            decode.append(t1 - t0)
            forward.append(t2 - t1)
            whole.append(t3 - t2)
    d, f, w = _median_ms(decode), _median_ms(forward), _median_ms(whole)
    return {"decode_ms": d, "forward_ms": f, "whole_ms": w, "ratio": w / (d + f),
            "summary": (f"image query, file to results ({args.n} x 1280 EfficientNet-Lite0 {args.runtime}, "
                        f"ivfpq, k=10, median of {args.rounds} interleaved rounds): decode {d:.2f} ms, "
                        f"batch-1 forward {f:.2f} ms, search(path) {w:.2f} ms = {w / (d + f):.2f} x "
                        f"(decode + forward)")}
