#!/usr/bin/env python3
"""What a score means: the score distributions behind the verdict bands of each model.

The photos are the duplicates calibration set (``similar_images.duplicates.calibration``:
the demo's 17 photos, each with the robustness edits, and 13 unrelated images shipped by
scikit-image and matplotlib), written to a temporary folder and embedded as extraction
embeds them. Two populations of pairs:

* same photo: a photo and one of its edited copies, or two copies of it;
* different photos: any two images of two different photos (every photo of the set is a
  different scene or object; a few share a kind, e.g. the textures brick, grass, gravel).

and, what a user sees first, the best score of each photo's images against every image of
the other photos ("a photo that is not in the collection, searched in it").

It prints their quantiles, the bands they give (``similar_images/models/score_bands.py``
holds the recorded ones) and saves a histogram PNG and the numbers as JSON.

Usage::

    .venv/bin/python benchmarks/score_bands.py --out evaluation/score_bands [--models efficientnet-lite0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine_line

MODELS = {"efficientnet-lite0": {}, "vgg16": {"weights": "none"}}
QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999, 1.0)


def measure(model: str, folder: Path) -> dict:
    from similar_images.duplicates import calibration
    from similar_images.features import get_extractor

    extractor = get_extractor(model, **MODELS[model])
    names = calibration.write_generated_set(folder, show_progress=False)
    labels = calibration.truth(names)
    vectors = calibration.embed_files(folder, names, extractor)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    scores = unit @ unit.T  # (n, n) cosines
    a, b = np.triu_indices(len(names), 1)
    same = labels[a] == labels[b]
    pair_scores = scores[a, b]
    best_other = []  # per image: its best score among the images of other photos
    for i in range(len(names)):
        best_other.append(float(scores[i][labels != labels[i]].max()))
    return {"model": extractor.describe(), "images": len(names), "photos": int(labels.max() + 1),
            "same_photo": _stats(pair_scores[same]), "different_photos": _stats(pair_scores[~same]),
            "best_of_other_photos": _stats(np.array(best_other)),
            "_raw": {"same": pair_scores[same], "different": pair_scores[~same], "best": np.array(best_other)}}


def _stats(values: np.ndarray) -> dict:
    return {"pairs": len(values), "min": round(float(values.min()), 4), "mean": round(float(values.mean()), 4),
            **{f"q{q:g}": round(float(np.quantile(values, q)), 4) for q in QUANTILES}}


def plot(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5 * len(results), 4.2), layout="constrained")
    panels = np.atleast_1d(figure.subplots(1, len(results)))
    for axes, (model, result) in zip(panels, results.items()):
        bins = np.linspace(-0.1, 1.0, 111)
        raw = result["_raw"]
        axes.hist(raw["different"], bins=bins, alpha=0.6, density=True, label="different photos")
        axes.hist(raw["same"], bins=bins, alpha=0.6, density=True, label="same photo (edited copies)")
        axes.hist(raw["best"], bins=bins, histtype="step", density=True, color="black",
                  label="best score among other photos")
        axes.set(title=f"{model} ({result['images']} images)", xlabel="cosine score", ylabel="density")
        axes.legend(fontsize=8)
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="efficientnet-lite0")
    parser.add_argument("--out", default="evaluation/score_bands")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = {}
    for model in args.models.split(","):
        with tempfile.TemporaryDirectory() as folder:
            results[model] = measure(model, Path(folder))
        r = results[model]
        print(f"{model}: {r['images']} images of {r['photos']} photos")
        for population in ("same_photo", "different_photos", "best_of_other_photos"):
            print(f"  {population:>22}: " + ", ".join(f"{k} {v}" for k, v in r[population].items()))
    plot(out / "score_bands.png", results)
    (out / "score_bands.json").write_text(json.dumps(
        {m: {k: v for k, v in r.items() if k != "_raw"} for m, r in results.items()}, indent=1))
    print(f"\nsaved {out}/score_bands.png and .json in {time.perf_counter() - started:.0f} s; {machine_line()}")


if __name__ == "__main__":
    main()
