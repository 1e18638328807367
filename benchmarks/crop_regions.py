#!/usr/bin/env python3
"""Crops against whole photos: what it takes for a 70% crop to find its photo.

A 70% central crop, resized to the model's 224 x 224 input, shows the network the middle
of the photo 1.43 times larger than the photo's own vector saw it; pooled over the whole
map, the two vectors differ more than any other edit's. This script measures, with
EfficientNet-Lite0 (pretrained, offline, PyTorch on the CPU), copy detection recall@1 per
edit (``similar_images.edits.EDITS``; the original must come first among the unedited
photos, exact cosine) for **database layouts**:

* one vector a photo, as today: ``avg`` (the classic vector), ``gem3``, at 224 or 320 px
  input (the query at the same size);
* a photo stored as **several vectors** (a multi-vector item): its whole-image vector and
  vectors of large regions; a query scores an item by its best row. The regions are
  either crops of the photo embedded again (``crops5``: the 70% crops at the 4 corners
  and the centre; ``crops9``: a 3 x 3 grid of them; 5 or 9 more passes) or windows of the
  last convolutional map of the photo's own pass (``map5``/``map9``: the 5 x 5 windows of
  the 7 x 7 map, 7 x 7 of 10 x 10 at 320 px; no extra pass), or windows of a second pass
  at 320 px beside the 224 px whole vector (``win320x5``/``x9``: a 7 x 7 window of the
  10 x 10 map sees a 70% region at the scale a 224 px crop shows it). The query stays one
  whole-image vector. ``:sum`` beside a layout: its rows summed into one vector a photo
  (no multi-vector item needed).

Besides the 8 edits, three crops off the regions' grid test that region rows generalise
(``crop70@0.25``: 70% at a quarter of the room; ``crop60``: the central 60%;
``crop80@0.8,0.2``). Sets: ``photos`` and ``views`` of ``descriptors.py``, and ``tiles``:
each of the 29 photos cut into 2 x 2 disjoint tiles (116 images, 4 a subject, no shared
pixels: distinct photos of one subject). On ``views`` the script also counts the crop70
queries whose region lies inside another view of the same scene, mirrored alike (then the
crop is a crop of that view too: its "original" is not defined by the pixels).
``--duplicates``: pair recall at precision >= 0.95 on the duplicate finder's generated set.

Usage::

    .venv/bin/python benchmarks/crop_regions.py [--views 100] [--sizes 224,320] [--duplicates] [--out DIR]
    .venv/bin/python benchmarks/crop_regions.py --speed-rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _machine import machine_info, machine_line
from descriptors import photo_set, view_set

GRID = [(x, y) for y in (0.0, 0.5, 1.0) for x in (0.0, 0.5, 1.0)]  # 3 x 3 window places
FIVE = [(0.0, 0.0), (1.0, 0.0), (0.5, 0.5), (0.0, 1.0), (1.0, 1.0)]  # corners and centre
FRACTION = 0.7


def crop_xy(image, fraction: float, wx: float, wy: float):
    """``fraction`` of the width and height, placed at ``wx``, ``wy`` (0 .. 1) of the room left."""
    w, h = image.size
    cw, ch = max(1, round(w * fraction)), max(1, round(h * fraction))
    left, top = round((w - cw) * wx), round((h - ch) * wy)
    return image.crop((left, top, left + cw, top + ch))


CROPS = {"crop70": (0.7, 0.5, 0.5), "crop70@0.25": (0.7, 0.25, 0.25), "crop60": (0.6, 0.5, 0.5),
         "crop80@0.8,0.2": (0.8, 0.8, 0.2)}  # crop edit -> (fraction, wx, wy), as query_edits() makes them


def query_edits() -> dict:
    """The 8 edits of the robustness report, then the crops off the regions' grid."""
    from similar_images.edits import EDITS

    extra = {name: (lambda im, c=c: crop_xy(im, *c)) for name, c in CROPS.items() if name not in EDITS}
    return {**EDITS, **extra}


def tile_set() -> tuple[list, np.ndarray]:
    """The 29 photos of ``photo_set`` cut into 2 x 2 disjoint tiles; group: the photo."""
    images, out, groups = photo_set()[0], [], []
    for number, image in enumerate(images):
        w, h = image.size
        for top in (0, h // 2):
            for left in (0, w // 2):
                out.append(image.crop((left, top, left + w // 2, top + h // 2)))
                groups.append(number)
    return out, np.array(groups)


class Maps:
    """EfficientNet-Lite0's last convolutional map at any square input size, pooled on the fly."""

    def __init__(self):
        from similar_images.models.efficientnet import _load_network, _set_threads

        _set_threads()
        self.net = _load_network("pretrained", 0)

    def maps(self, images, size: int, batch: int = 32):
        """Yield ``(b, 1280, s, s)`` torch maps of the images resized to ``size`` (the package's resize)."""
        import torch

        from similar_images.images import prepare_batch
        from similar_images.models.efficientnet import preprocess

        for i in range(0, len(images), batch):
            x = torch.from_numpy(preprocess(prepare_batch(images[i:i + batch], (size, size))))
            with torch.inference_mode():
                yield self.net.extract_features(x)

    def pooled(self, images, size: int, windows: bool = False) -> dict[str, np.ndarray]:
        """``{"avg": (n, d), "gem3": (n, d)}``; with ``windows`` also ``"avg@win"``/``"gem3@win"``:
        ``(n, 9, d)``, the windows of side round(0.7 s) at :data:`GRID` places."""
        parts: dict[str, list] = {}
        for m in self.maps(images, size):
            for key, value in pool_map(m, windows).items():
                parts.setdefault(key, []).append(value)
        return {key: np.concatenate(v) for key, v in parts.items()}


def pool_map(m, windows: bool) -> dict[str, np.ndarray]:
    out = {"avg": m.mean(dim=(2, 3)), "gem3": m.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)}
    if windows:
        s = int(m.shape[2])
        side = round(FRACTION * s)
        regions = [m[:, :, round((s - side) * wy):round((s - side) * wy) + side,
                     round((s - side) * wx):round((s - side) * wx) + side] for wx, wy in GRID]
        out["avg@win"] = np.stack([r.mean(dim=(2, 3)).numpy() for r in regions], axis=1)
        out["gem3@win"] = np.stack([r.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3).numpy()
                                    for r in regions], axis=1)
    return {k: (v if isinstance(v, np.ndarray) else v.numpy()) for k, v in out.items()}


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def item_scores(queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``(m, d)`` queries, ``(n, r, d)`` rows per item -> ``(m, n)``: each item's best row."""
    n, r, d = rows.shape
    return (unit(queries) @ unit(rows).reshape(n * r, d).T).reshape(len(queries), n, r).max(axis=2)


def layouts(db: dict, crops: dict | None, sizes: list[int]) -> dict[str, tuple[str, np.ndarray]]:
    """Layout name -> (the query vectors' key, ``(n, r, d)`` rows per item)."""
    five = [GRID.index(p) for p in FIVE]
    out = {}
    for size in sizes:
        tag = "" if size == 224 else f"@{size}"
        for pooling in ("avg", "gem3"):
            whole = db[size][pooling][:, None]
            key = f"{pooling}{tag}"
            out[key] = (key, whole)
            out[f"{key}+map5"] = (key, np.concatenate([whole, db[size][f"{pooling}@win"][:, five]], axis=1))
            out[f"{key}+map9"] = (key, np.concatenate([whole, db[size][f"{pooling}@win"]], axis=1))
            if crops is not None and size == 224:
                out[f"{key}+crops5"] = (key, np.concatenate([whole, crops[pooling][:, five]], axis=1))
                out[f"{key}+crops9"] = (key, np.concatenate([whole, crops[pooling]], axis=1))
    if 224 in sizes and 320 in sizes:  # the query at 224; windows of the 320 px map see the crop's scale
        for pooling in ("avg", "gem3"):
            whole = db[224][pooling][:, None]
            for count, places in (("5", five), ("9", slice(None))):
                out[f"{pooling}+win320x{count}"] = (pooling, np.concatenate(
                    [whole, db[320][f"{pooling}@win"][:, places]], axis=1))
    for name, (key, rows) in list(out.items()):  # one vector a photo: its rows summed (no multi-vector items)
        if rows.shape[1] > 1:
            out[f"{name}:sum"] = (key, unit(rows).sum(axis=1, keepdims=True))
    return out


def measure_set(model: Maps, images, groups, sizes: list[int], query_sizes: list[int], with_crops: bool,
                ambiguous: dict[str, dict[str, np.ndarray]] | None = None, save: Path | None = None) -> dict:
    edits = query_edits()
    db = {size: model.pooled(images, size, windows=True) for size in sizes}
    crops = None
    if with_crops:
        grid = model.pooled([crop_xy(im, FRACTION, wx, wy) for im in images for wx, wy in GRID], 224)
        crops = {k: v.reshape(len(images), len(GRID), -1) for k, v in grid.items()}
    queries = {size: {name: model.pooled([fn(im) for im in images], size) for name, fn in edits.items()}
               for size in query_sizes}
    if save is not None:  # every vector, to measure other layouts without the network
        np.savez(save, **{f"db{size}/{k}": v for size, d in db.items() for k, v in d.items()},
                 **{f"crops/{k}": v for k, v in (crops or {}).items()},
                 **{f"q{size}/{e}/{k}": v for size, d in queries.items() for e, p in d.items() for k, v in p.items()})
    own = np.arange(len(images))
    result = {}
    for name, (key, rows) in layouts(db, crops, sizes).items():
        size = int(key.split("@")[1]) if "@" in key else 224
        pooling = key.split("@")[0]
        if size not in queries:
            continue
        recall = {}
        for edit, q in queries[size].items():
            scores = item_scores(q[pooling], rows)  # (n, n)
            hit = np.argmax(scores, axis=1) == own
            recall[edit] = float(np.mean(hit))
            if ambiguous and edit in ambiguous:  # leaving out the queries another view explains as well
                for kind, flags in ambiguous[edit].items():
                    recall[f"{edit}|not-{kind}"] = float(np.mean(hit[~flags])) if (~flags).any() else float("nan")
        standard = [recall[e] for e in list(edits)[:8]]
        recall["all"] = float(np.mean(standard))
        self_scores = item_scores(db[size][pooling], rows)
        np.fill_diagonal(self_scores, -np.inf)
        top = np.argsort(-self_scores, axis=1, kind="stable")[:, :10]
        recall["_same_subject_p10"] = float(np.mean(groups[top] == groups[:, None]))
        recall["_rows"] = int(rows.shape[1])
        result[name] = recall
    return result


def view_geometry(count: int) -> list[tuple]:
    """``(scene, x, y, w, h, mirrored)`` of each view in its source photo (``_photos.make_photo``'s draws)."""
    import _photos

    out = []
    for i in range(count):
        rng = np.random.default_rng([i, 2014])
        w, h = _photos._sources()[i % len(_photos.PHOTOS)].size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out.append((i % len(_photos.PHOTOS), x, y, cw, ch, bool(rng.random() < 0.5)))
    return out


def view_ambiguity(count: int) -> dict[str, dict[str, np.ndarray]]:
    """Per crop edit, two ``(count,)`` bool masks over the views: ``inside``: the crop's
    region lies inside another view of the same scene, mirrored alike, so the crop is a crop
    of that view too; ``tighter``: inside one where it covers a larger share of the view
    than of its own original (that view is a closer "original" than the original)."""
    geometry = view_geometry(count)
    out = {}
    for edit, (fraction, wx, wy) in CROPS.items():
        inside, tighter = [], []
        for i, (scene, x, y, cw, ch, mirrored) in enumerate(geometry):
            wx_source = 1 - wx if mirrored else wx  # the view is the mirrored crop: left is right
            left = x + (1 - fraction) * cw * wx_source
            top = y + (1 - fraction) * ch * wy
            right, bottom = left + fraction * cw, top + fraction * ch
            shares = [fraction * cw * fraction * ch / (w2 * h2) for j, (s2, x2, y2, w2, h2, m2) in enumerate(geometry)
                      if j != i and s2 == scene and m2 == mirrored and x2 <= left and y2 <= top
                      and x2 + w2 >= right and y2 + h2 >= bottom]
            inside.append(bool(shares))
            tighter.append(any(share > fraction ** 2 for share in shares))
        out[edit] = {"inside": np.array(inside), "tighter": np.array(tighter)}
    return out


def duplicates(model: Maps, with_crops: bool) -> dict:
    """Best pair recall at pair precision >= 0.95 per layout on the generated set (robustness edits)."""
    import tempfile

    from similar_images.duplicates import calibration
    from similar_images.duplicates.threshold import score_curve
    from similar_images.images import load_image

    with tempfile.TemporaryDirectory() as tmp:
        names = calibration.write_generated_set(tmp, edit_set="robustness", show_progress=False)
        images = [load_image(Path(tmp) / n) for n in names]
    labels = calibration.truth(names)
    db = {224: model.pooled(images, 224, windows=True)}
    crops = None
    if with_crops:
        grid = model.pooled([crop_xy(im, FRACTION, wx, wy) for im in images for wx, wy in GRID], 224)
        crops = {k: v.reshape(len(images), len(GRID), -1) for k, v in grid.items()}
    a, b = np.triu_indices(len(images), 1)
    out = {}
    for name, (key, rows) in layouts(db, crops, [224]).items():
        s = item_scores(db[224][key], rows)
        pair = np.maximum(s, s.T)[a, b]  # an item pair: either whole vector against the other's best row
        curve = score_curve(pair, labels[a] == labels[b], calibration.THRESHOLDS)
        ok = [p for p in curve if p.precision >= 0.95]
        best = max(ok, key=lambda p: p.recall, default=None)
        out[name] = {"best_recall_at_p95": best.recall if best else 0.0,
                     "threshold": best.threshold if best else None}
    return out


def speed(model: Maps, rounds: int) -> dict[str, float]:
    """Seconds per image of each layout's extraction, timed in turns (medians), as ratios to ``avg``."""
    images = photo_set()[0][:16]
    crops = [crop_xy(im, FRACTION, wx, wy) for im in images for wx, wy in FIVE]
    jobs = {"avg": lambda: model.pooled(images, 224), "avg+map5": lambda: model.pooled(images, 224, True),
            "avg@320": lambda: model.pooled(images, 320), "avg@320+map5": lambda: model.pooled(images, 320, True),
            "avg+crops5": lambda: (model.pooled(images, 224), model.pooled(crops, 224))}
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for job in jobs.values():
        job()
    for _ in range(rounds):
        for label, job in jobs.items():
            t0 = time.perf_counter()
            job()
            times[label].append(time.perf_counter() - t0)
    base = statistics.median(times["avg"])
    return {label: round(statistics.median(t) / base, 2) for label, t in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--views", type=int, default=100)
    parser.add_argument("--sets", default="photos,views,tiles")
    parser.add_argument("--sizes", default="224,320", help="input sizes of the database's passes")
    parser.add_argument("--query-sizes", default="224", help="input sizes of the queries (a layout whose "
                        "whole vector is at another size is measured only with queries at that size)")
    parser.add_argument("--no-crops", action="store_true", help="skip the re-embedded crops (9 more passes)")
    parser.add_argument("--duplicates", action="store_true")
    parser.add_argument("--speed-rounds", type=int, default=0, help="only time the layouts, interleaved")
    parser.add_argument("--out", default="evaluation/crop_regions.json")
    args = parser.parse_args(argv)
    model = Maps()
    print(f"# {machine_line()}", flush=True)
    if args.speed_rounds:
        print(json.dumps({"time_vs_avg": speed(model, args.speed_rounds)}), f"# {machine_line()}")
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    query_sizes = [int(s) for s in args.query_sizes.split(",")]
    report = {"machine": machine_info(), "sets": {}}
    makers = {"photos": photo_set, "views": lambda: view_set(args.views), "tiles": tile_set}
    ambiguous = view_ambiguity(args.views) if "views" in args.sets else {}
    report["views_ambiguous"] = {edit: {kind: int(f.sum()) for kind, f in masks.items()}
                                 for edit, masks in ambiguous.items()}
    print(f"views: crop queries inside another view of their scene (of {args.views}): "
          f"{report['views_ambiguous']}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.sets.split(","):
        started = time.perf_counter()
        images, groups = makers[name]()
        report["sets"][name] = measure_set(model, images, groups, sizes, query_sizes, not args.no_crops,
                                             ambiguous if name == "views" else None,
                                             save=out.with_name(f"{out.stem}-{name}.npz"))
        print(f"## {name}: {len(images)} images, {time.perf_counter() - started:.0f} s; {machine_line()}", flush=True)
        for layout, r in report["sets"][name].items():
            print(f"{name:7s} {layout:18s} " + " ".join(f"{k}={v:.2f}" for k, v in r.items()), flush=True)
        out.write_text(json.dumps(report, indent=1))
    if args.duplicates:
        report["duplicates"] = duplicates(model, not args.no_crops)
        print(json.dumps(report["duplicates"]), flush=True)
        out.write_text(json.dumps(report, indent=1))
    print(f"# done; {machine_line()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
