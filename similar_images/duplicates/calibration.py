"""The generated set duplicate thresholds are measured on, and its curves.

The set: every photo shipped for the demo (:mod:`similar_images.demo.sample_photos`),
each with edited copies, plus unrelated photos (other images shipped with
scikit-image and matplotlib) as negatives. Truth: a photo and its copies are one group;
each unrelated photo is alone. Two edit sets:

* ``"robustness"``: :data:`similar_images.edits.EDITS` (crop, resize, JPEG, flip,
  rotation, brightness and contrast, grayscale, a caption); the thresholds are chosen
  on this set;
* ``"sample"``: the demo collection's own edits (a different crop, flip, shrink, JPEG,
  rotation and tone): a second set to check a chosen threshold on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from similar_images.demo import sample_photos
from similar_images.duplicates import groups as grouping
from similar_images.duplicates.pairs import Pairs
from similar_images.duplicates.threshold import CurvePoint, choose_threshold, pair_counts, precision_recall, score_curve

log = logging.getLogger(__name__)

EDIT_SETS = ("robustness", "sample")
UNRELATED_PREFIX = "other_"
THRESHOLDS = np.round(np.arange(0.30, 1.0001, 0.01), 2)


# Images that ship offline and are none of the demo photos nor a copy of one.
UNRELATED: dict[str, Callable[[], np.ndarray]] = {
    **{name: sample_photos.skimage_loader(name)
       for name in ("cell", "clock", "colorwheel", "page", "text", "checkerboard", "horse",
                    "binary_blobs", "microaneurysms", "shepp_logan_phantom", "logo")},
    "present": sample_photos.matplotlib_loader("Minduka_Present_Blue_Pack.png"),
    "logo2": sample_photos.matplotlib_loader("logo2.png"),
}


def load_unrelated(name: str):
    """The unrelated image ``name`` (one of :data:`UNRELATED`) as an RGB PIL image."""
    from PIL import Image

    array = np.asarray(UNRELATED[name]())
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        low, span = float(array.min()), float(np.ptp(array)) or 1.0
        array = ((array - low) / span * 255).astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def _edits(edit_set: str) -> dict:
    from similar_images import edits

    if edit_set == "robustness":
        return dict(edits.EDITS)
    if edit_set == "sample":
        return dict(sample_photos.EDITS)
    raise ValueError(f"unknown edit set {edit_set!r}; choose one of: {', '.join(EDIT_SETS)}")


def write_generated_set(folder: str | os.PathLike, *, edit_set: str = "robustness", photos=None,
                        unrelated=None, show_progress: bool = True) -> list[str]:
    """Write the photos, their edited copies and the unrelated photos into ``folder``.

    Returns:
        The file names written, sorted; :func:`truth` gives their groups.
    """
    from tqdm.auto import tqdm

    chosen = _edits(edit_set)
    folder = Path(folder)
    names = []
    for photo in tqdm(list(photos or sample_photos.PHOTOS), desc="generated set", unit="photo",
                      disable=not show_progress):
        original = sample_photos.load_photo(photo)
        for edit, image in [(None, original)] + [(e, fn(original)) for e, fn in chosen.items()]:
            name = sample_photos.sample_name(photo, edit)
            sample_photos.save_jpeg(image, folder / name)
            names.append(name)
    for other in unrelated or UNRELATED:
        name = f"{UNRELATED_PREFIX}{other}.jpg"
        sample_photos.save_jpeg(load_unrelated(other), folder / name)
        names.append(name)
    return sorted(names)


def truth(names: list[str]) -> np.ndarray:
    """``(n,)`` group number of each name: a photo with its copies, an unrelated photo alone."""
    keys: dict[str, int] = {}
    return np.array([keys.setdefault(sample_photos.group_of(n), len(keys)) for n in names], dtype=np.int64)


def embed_files(folder: str | os.PathLike, names: list[str], extractor, *, batch_size: int = 32) -> np.ndarray:
    """``(n, d)`` float32 vectors of the files, decoded as the extraction decodes them."""
    from similar_images.images import fit_of, load_for_model

    size = fit_of(extractor)
    parts = []
    for start in range(0, len(names), batch_size):
        batch = [load_for_model(Path(folder) / n, size) for n in names[start:start + batch_size]]
        parts.append(np.asarray(extractor.embed(np.stack(batch)), dtype=np.float32))
    return np.concatenate(parts)


@dataclass(frozen=True)
class Calibration:
    """Curves of one model on one generated set.

    Attributes:
        scores: precision/recall of the raw pair scores per threshold.
        grouped: pair precision/recall of the groups (``rule``) per threshold.
        ari: adjusted Rand index of the groups per threshold.
        chosen: the threshold :func:`choose_threshold` picks (None if none reaches the target).
    """

    images: int
    rule: str
    scores: list[CurvePoint]
    grouped: list[CurvePoint]
    ari: list[float]
    chosen: float | None

    def at(self, threshold: float) -> dict[str, float]:
        """The measures at (the curve's threshold nearest to) ``threshold``."""
        i = int(np.argmin([abs(p.threshold - threshold) for p in self.scores]))
        return {"threshold": self.scores[i].threshold, "precision": self.scores[i].precision,
                "recall": self.scores[i].recall, "group_precision": self.grouped[i].precision,
                "group_recall": self.grouped[i].recall, "ari": self.ari[i]}


def curves(vectors: np.ndarray, labels: np.ndarray, *, rule: str = grouping.DEFAULT_RULE,
           thresholds=THRESHOLDS, target: float | None = None) -> Calibration:
    """All-pairs curves of a small set (``n x n`` is fine here: a few hundred images)."""
    from sklearn.metrics import adjusted_rand_score

    from similar_images.duplicates.threshold import TARGET_PRECISION

    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    n = len(unit)
    a, b = np.triu_indices(n, 1)
    scores = np.einsum("ij,ij->i", unit[a], unit[b])  # (n(n-1)/2,)
    positive = labels[a] == labels[b]
    raw = score_curve(scores, positive, thresholds)
    grouped, ari = [], []
    for t in thresholds:
        keep = scores >= t
        ids = grouping.group_ids(n, Pairs(a[keep], b[keep], scores[keep]), [], vectors=unit, threshold=float(t),
                                 rule=rule)
        predicted = np.arange(n)
        for number, members in enumerate(ids):
            predicted[members] = n + number
        grouped.append(CurvePoint(float(t), *precision_recall(*pair_counts(predicted, labels))))
        ari.append(float(adjusted_rand_score(labels, predicted)))
    chosen = choose_threshold(raw, grouped, target=TARGET_PRECISION if target is None else target)
    return Calibration(n, rule, raw, grouped, ari, chosen)


def plot_curves(path: str | os.PathLike, results: dict[str, Calibration], *, title: str = "") -> Path:
    """A PNG of precision and recall against the threshold, one panel per result label
    (two panels a row); a grey line marks each result's ``chosen`` threshold."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from similar_images.fileio.files import atomic_path

    columns = min(2, len(results))
    rows = -(-len(results) // columns)
    figure = Figure(figsize=(6.5 * columns, 4.4 * rows), layout="constrained")
    panels = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes in panels[len(results):]:
        axes.set_visible(False)
    for axes, (label, cal) in zip(panels, results.items()):
        t = [p.threshold for p in cal.scores]
        axes.plot(t, [p.precision for p in cal.scores], label="pair precision (scores)")
        axes.plot(t, [p.recall for p in cal.scores], label="pair recall (scores)")
        axes.plot(t, [p.precision for p in cal.grouped], "--", label=f"pair precision ({cal.rule} groups)")
        axes.plot(t, [p.recall for p in cal.grouped], "--", label=f"pair recall ({cal.rule} groups)")
        axes.plot(t, cal.ari, ":", label="adjusted Rand index")
        if cal.chosen is not None:
            axes.axvline(cal.chosen, color="grey", lw=1)
            axes.text(cal.chosen, 0.02, f" {cal.chosen:.2f}", color="grey")
        axes.set(title=f"{label} ({cal.images} images)", xlabel="cosine threshold", ylim=(0, 1.02))
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc="lower left")
    if title:
        figure.suptitle(title)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    return Path(path)
