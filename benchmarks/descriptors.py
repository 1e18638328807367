#!/usr/bin/env python3
"""Descriptor recipes side by side: copy detection, semantic neighbours, duplicates, speed, size.

Every recipe (``similar_images.models.descriptors``) of one model is run on the same
images in one run:

* ``robustness``: recall@1 of the original per edit (``similar_images.edits.EDITS``, as
  ``evaluate robustness``: each photo edited, searched among the unedited photos by exact
  cosine) on two offline photo sets:
  - ``photos``: every distinct real photo that ships offline (the demo's 17, the 13
    unrelated ones of the duplicates set but ``colorwheel``, already in): 29 photos;
  - ``views``: 200 photo-like JPEGs of ``_photos.py`` (random 60-100% crops of 10 real
    photos, mirrored half of the time, 640 x 480): many photos of each scene, so a
    copy must beat other views of its own scene (harder);
* ``semantic``: on ``views``, precision@10 of same-scene neighbours (an image's other
  views of its source photo; itself left out): do photos of the same subject still rank
  together?
* ``duplicates``: the duplicate finder's generated set (``duplicates/calibration.py``,
  robustness edits; the check set with the demo's edits): pair recall at the threshold
  the calibration rule picks, and the best raw pair recall at precision >= 0.95;
* ``speed``: images per second of ``embed`` on batches of 32 (model only, median of 3),
  and the vector's bytes; ``--speed-rounds N`` times every recipe in turns instead (on a
  loaded machine, only the interleaved ratios mean something).

Whitening (``+w``) is fitted on each set's database vectors (the unedited photos), as a
database does, and applied to its queries.

Usage::

    .venv/bin/python benchmarks/descriptors.py [--model efficientnet-lite0] [--recipes avg,gem3,rmac,...]
        [--views 200] [--out evaluation/descriptors]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine_info, machine_line

DEFAULT_RECIPES = "avg,max,gem3,rmac,avg@1,0.707,gem3@1,0.707,rmac@1,0.707"


def parse_recipe(text: str):
    """``gem3@1,0.707`` -> Descriptor(pooling="gem", gem_p=3, scales=(1, 0.707))."""
    from similar_images.models.descriptors import Descriptor, parse_scales

    pooling, _, scales = text.partition("@")
    p = 3.0
    if pooling.startswith("gem"):
        p, pooling = float(pooling[3:] or 3), "gem"
    return Descriptor(pooling=pooling, gem_p=p, scales=parse_scales(scales) if scales else (1.0,))


def split_recipes(text: str) -> list[str]:
    """``avg,gem3@1,0.707`` -> ``["avg", "gem3@1,0.707"]`` (a scale list continues a recipe)."""
    out: list[str] = []
    for item in text.split(","):
        if out and "@" in out[-1] and item.replace(".", "", 1).isdigit():
            out[-1] += "," + item
        else:
            out.append(item)
    return out


def photo_set() -> tuple[list, np.ndarray]:
    """The distinct offline photos as PIL images, each its own group (scikit-image's ``cat``
    is ``chelsea``, so it is not added twice)."""
    from similar_images.demo import sample_photos
    from similar_images.duplicates import calibration

    images = [sample_photos.load_photo(name) for name in sample_photos.PHOTOS]
    images += [calibration.load_unrelated(name) for name in calibration.UNRELATED if name != "colorwheel"]
    return images, np.arange(len(images))


def view_set(count: int) -> tuple[list, np.ndarray]:
    """``count`` views from ``_photos.py`` (decoded JPEGs) and their source photo numbers."""
    from _photos import PHOTOS, default_folder, photo_collection

    from similar_images.images import load_image

    folder = default_folder(count)
    names = photo_collection(folder, count, show_progress=False)
    return [load_image(folder / name) for name in names], np.arange(count) % len(PHOTOS)


def embed(extractor, images, batch: int = 32) -> np.ndarray:
    from similar_images.images import prepare_batch

    size = tuple(extractor.input_size)
    return np.concatenate([extractor.embed(prepare_batch(images[i:i + batch], size))
                           for i in range(0, len(images), batch)])


def ranks(database: np.ndarray, queries: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """1-based rank of the first member of each query's group (query i's truth: ``groups[i]``)."""
    unit = database / np.linalg.norm(database, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    order = np.argsort(-(q @ unit.T), axis=1, kind="stable")  # (m, n)
    hit = groups[order] == groups[:, None]
    return hit.argmax(axis=1) + 1


def whiten_pair(database, queries_by_edit, shrinkage=None):
    from similar_images.models import whitening

    mean, projection = whitening.fit(database, **({} if shrinkage is None else {"shrinkage": shrinkage}))
    return (whitening.apply(database, mean, projection),
            {k: whitening.apply(v, mean, projection) for k, v in queries_by_edit.items()})


def robustness(extractor, images, groups, whiten_variants) -> dict:
    from similar_images.edits import EDITS

    database = embed(extractor, images)
    queries = {name: embed(extractor, [edit(image) for image in images]) for name, edit in EDITS.items()}
    out = {"": _recalls(database, queries, groups)}
    for label, shrinkage in whiten_variants.items():
        out[label] = _recalls(*whiten_pair(database, queries, shrinkage), groups)
    return out, database, queries


def _recalls(database, queries, groups) -> dict:
    """Recall@1 of each edited copy's own original (not another view of its scene: copy
    detection); same-scene precision@10 of the unedited views (``groups``: their scenes)."""
    own = np.arange(len(database))
    result = {name: float(np.mean(ranks(database, q, own) == 1)) for name, q in queries.items()}
    result["all"] = float(np.mean(list(result.values())))
    result["_semantic_p10"] = semantic_p10(database, groups)
    return result


def semantic_p10(database, groups, k: int = 10) -> float:
    """Mean share of an image's 10 nearest others (itself left out) from its own group."""
    unit = database / np.linalg.norm(database, axis=1, keepdims=True)
    scores = unit @ unit.T
    np.fill_diagonal(scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(groups[order] == groups[:, None]))


def duplicates(extractor, sets, whiten_variants) -> dict:
    from similar_images.duplicates import calibration

    out = {}
    for name, (folder, names) in sets.items():
        vectors = calibration.embed_files(folder, names, extractor)
        truth = calibration.truth(names)
        for label, shrinkage in {"": None, **whiten_variants}.items():
            v = vectors if not label else whiten_pair(vectors, {}, shrinkage)[0]
            cal = calibration.curves(v, truth)
            at = cal.at(cal.chosen) if cal.chosen is not None else None
            best = max((p.recall for p in cal.scores if p.precision >= 0.95), default=0.0)
            out.setdefault(label, {})[name] = {"chosen": cal.chosen, "at_chosen": at, "best_recall_at_p95": best}
    return out


def speed(extractor, images) -> float:
    from similar_images.images import prepare_batch

    batch = prepare_batch((images * 2)[:32], tuple(extractor.input_size))
    extractor.embed(batch)  # warm-up
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        extractor.embed(batch)
        times.append(time.perf_counter() - t0)
    return len(batch) / statistics.median(times)


def interleaved_speed(extractors: dict, images, rounds: int) -> dict[str, float]:
    """Images per second of each extractor, timed in turns (``rounds`` x each, medians), so a
    machine whose load changes slows every recipe alike."""
    from similar_images.images import prepare_batch

    batch = prepare_batch((images * 2)[:32], (224, 224))
    times: dict[str, list[float]] = {label: [] for label in extractors}
    for extractor in extractors.values():
        extractor.embed(batch)  # warm-up
    for _ in range(rounds):
        for label, extractor in extractors.items():
            t0 = time.perf_counter()
            extractor.embed(batch)
            times[label].append(time.perf_counter() - t0)
    return {label: round(len(batch) / statistics.median(t), 2) for label, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--weights", default=None, help="e.g. 'none' for VGG16 offline (random: not meaningful)")
    parser.add_argument("--runtime", default="native")
    parser.add_argument("--recipes", default=DEFAULT_RECIPES)
    parser.add_argument("--views", type=int, default=200)
    parser.add_argument("--whiten-shrinkage", default="1", help="shrinkages of the +w variants, comma-separated")
    parser.add_argument("--skip", default="", help="parts to skip: duplicates,speed")
    parser.add_argument("--speed-rounds", type=int, default=0,
                        help="only time the recipes, interleaved, this many rounds each (no quality measures)")
    parser.add_argument("--out", default="evaluation/descriptors")
    args = parser.parse_args(argv)
    from similar_images.duplicates import calibration
    from similar_images.features import get_extractor

    options = {"runtime": args.runtime, **({"weights": args.weights} if args.weights else {})}
    if args.speed_rounds:
        extractors = {parse_recipe(t).label: get_extractor(args.model, descriptor=parse_recipe(t), **options)
                      for t in split_recipes(args.recipes)}
        print(f"# {args.model} ({options}) images/s, batches of 32: "
              f"{json.dumps(interleaved_speed(extractors, photo_set()[0], args.speed_rounds))}; {machine_line()}")
        return 0
    whiten_variants = {("+w" if s == "1" else f"+w{s}"): float(s) for s in args.whiten_shrinkage.split(",") if s}
    sets = {"photos": photo_set(), "views": view_set(args.views)}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine_info(), "model": args.model, "options": options, "recipes": {}}
    print(f"# {args.model} ({options}); {machine_line()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        dup_sets = {} if "duplicates" in args.skip else {
            name: (Path(tmp) / name, calibration.write_generated_set(Path(tmp) / name, edit_set=name,
                                                                     show_progress=False))
            for name in calibration.EDIT_SETS}
        for text in split_recipes(args.recipes):
            recipe = parse_recipe(text)
            started = time.perf_counter()
            extractor = get_extractor(args.model, descriptor=recipe, **options)
            entry = {"label": recipe.label, "dim": extractor.dim, "bytes": 4 * extractor.dim}
            for set_name, (images, groups) in sets.items():
                entry[set_name], database, queries = robustness(extractor, images, groups, whiten_variants)
                np.savez(out_dir / f"{args.model}-{recipe.label}-{set_name}.npz", database=database, **queries)
            if "speed" not in args.skip:
                entry["images_per_s"] = speed(extractor, sets["photos"][0])
            if dup_sets:
                entry["duplicates"] = duplicates(extractor, dup_sets, whiten_variants)
            entry["seconds"] = round(time.perf_counter() - started, 1)
            report["recipes"][recipe.label] = entry
            print(json.dumps(entry), flush=True)
            (out_dir / f"descriptors-{args.model}.json").write_text(json.dumps(report, indent=1))
    print(f"# done; {machine_line()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
