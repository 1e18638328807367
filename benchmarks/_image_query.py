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
    parser.add_argument("--image-vectors", type=Path, default=None,
                        help="a real EfficientNet-Lite0 vectors file for the image query (its own model; "
                             "default: --n synthetic vectors)")


def _median_ms(times) -> float:
    return 1e3 * float(np.median(times))


def bench_image_query(folder: Path, args) -> list[dict]:
    """For each index type of ``--types``: median decode, batch-1 forward and whole ``search(path)``,
    interleaved, on one new 640x480 JPEG, against ``--image-vectors`` (a real EfficientNet-Lite0
    database, its own model) or ``--n`` synthetic 1280-d vectors (the model: ``--runtime`` fp32)."""
    from PIL import Image

    from similar_images.demo.sample_photos import write_query

    photo = write_query(folder / "query.jpg")
    Image.open(photo).convert("RGB").resize((640, 480)).save(photo, quality=90)  # a COCO-sized photo
    path, extractor = _image_database(folder, args)
    return [_time_image_query(photo, path, index_type, folder, extractor, args) for index_type in args.types]


def _image_database(folder: Path, args):
    """The vectors file image queries search, and the extractor (None: the database's own)."""
    if args.image_vectors:
        return args.image_vectors, None
    from similar_images.db.vectors import save_vectors
    from similar_images.evaluation.synthetic import clustered_vectors
    from similar_images.features import get_extractor

    extractor = get_extractor("efficientnet-lite0", runtime=args.runtime)
    vectors = clustered_vectors(args.n, 1280, seed=args.seed + 1)
    path = folder / "lite0.npy"
    save_vectors(path, vectors, {"model": extractor.describe(), "names": [f"{i}.jpg" for i in range(args.n)]})
    return path, extractor


def _time_image_query(photo: Path, vectors: Path, index_type: str, folder: Path, extractor, args) -> dict:
    from similar_images.db.build import build_index_files
    from similar_images.images import load_for_model
    from similar_images.search import SimilarImages

    index = folder / f"{index_type}.faiss.index"
    build_index_files(vectors, index, index_type=index_type, force=True, show_progress=False)
    db = SimilarImages.open(vectors, index, extractor=extractor, trust=True)
    db.warm()  # the model and the row norms, as a service warms up
    size = tuple(db.extractor.input_size)
    decode, forward, whole = [], [], []
    for round_ in range(args.rounds + 3):  # 3 warm-up rounds
        t0 = time.perf_counter()
        image = load_for_model(photo, size)
        t1 = time.perf_counter()
        db.extractor.embed(image[None])
        t2 = time.perf_counter()
        db.search(photo, k=10)
        t3 = time.perf_counter()
        if round_ >= 3:
            decode.append(t1 - t0)
            forward.append(t2 - t1)
            whole.append(t3 - t2)
    d, f, w = _median_ms(decode), _median_ms(forward), _median_ms(whole)
    model = "EfficientNet-Lite0 " + (f"of {vectors.name}" if args.image_vectors else f"{args.runtime} fp32")
    return {"type": index_type, "pool": db.pool_factor, "decode_ms": d, "forward_ms": f, "whole_ms": w,
            "ratio": w / (d + f),
            "summary": (f"image query, file to results ({len(db)} x 1280, {model}, {index_type}, pool "
                        f"{db.pool_factor} x k, k=10, median of {args.rounds} interleaved rounds): decode {d:.2f} ms, "
                        f"batch-1 forward {f:.2f} ms, search(path) {w:.2f} ms = {w / (d + f):.2f} x "
                        f"(decode + forward)")}
