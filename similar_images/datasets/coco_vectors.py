"""Put downloaded, precomputed COCO vectors in place (used by ``get_ms_coco_vectors.sh``).

A downloaded vectors file is a bare ``.npy`` array (the original project's format) and
maybe a ``.manifest.json`` beside it. Before anything is written this module checks
that the array matches the file list (one row per listed image, the model's dimension,
finite values); then it writes the vectors and a manifest atomically through
:func:`similar_images.db.vectors.save_vectors`, so the database opens like one built with
``similar-images extract``.

Run as ``python -m similar_images.datasets.coco_vectors DOWNLOADED_NPY [options]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from similar_images.db.database import COCO_FILE_LIST
from similar_images.db.vectors import load_vectors_manifest, save_vectors
from similar_images.errors import DatabaseError, SimilarImagesError
from similar_images.fileio.files import (
    manifest_path,
    read_file_list,
    read_json,
    sha256_lines,
)

log = logging.getLogger(__name__)

# dimension -> model that makes it, to guess the model of a bare .npy
MODEL_BY_DIM = {4096: "vgg16", 1280: "efficientnet-lite0"}
CHUNK_ROWS = 4096  # rows checked at a time, bounding memory


def model_description(model: str, weights: str | None = None, seed: int = 0) -> dict[str, Any]:
    """What ``get_extractor(model, weights=weights).describe()`` returns (native fp32),
    without loading the model: precomputed vectors come without one.

    Args:
        model: ``"vgg16"`` (default weights ``"imagenet"``) or ``"efficientnet-lite0"``
            (default weights ``"pretrained"``).
        weights: the model's ``weights`` option.
        seed: the model's ``seed`` option (random weights only).
    """
    native = {"runtime": "native", "precision": "fp32"}
    if model == "vgg16":
        from similar_images.models import vgg16

        return {**vgg16._describe_base(weights or "imagenet", seed), **native}
    if model == "efficientnet-lite0":
        from similar_images.models import efficientnet

        weights_id = efficientnet._weights_id(weights or "pretrained", seed)
        return {**efficientnet.describe_base(weights_id), **native}
    raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(sorted(MODEL_BY_DIM.values()))}")


def _load_array(path: Path) -> np.ndarray:
    try:
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DatabaseError(f"{path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise DatabaseError(f"{path}: not a .npy array ({exc})") from None
    if vectors.ndim != 2 or vectors.dtype.kind != "f":
        raise DatabaseError(f"{path}: expected a 2-d float array, got {vectors.dtype} {vectors.shape}")
    return vectors


def check_downloaded_vectors(vectors: np.ndarray, names: list[str], dimension: int | None, label: str) -> None:
    """Raise :class:`DatabaseError` unless ``vectors`` has one finite row per name and
    ``dimension`` columns (``None``: any)."""
    if len(vectors) != len(names):
        raise DatabaseError(
            f"{label} has {len(vectors)} vectors but the file list names {len(names)} images; "
            "they belong to another file list"
        )
    if dimension is not None and vectors.shape[1] != dimension:
        raise DatabaseError(f"{label} has {vectors.shape[1]}-d vectors, the model makes {dimension}-d")
    for start in range(0, len(vectors), CHUNK_ROWS):
        if not np.isfinite(vectors[start : start + CHUNK_ROWS]).all():
            raise DatabaseError(f"{label}: rows from {start} hold NaN or infinite values")


def install_vectors(
    source: str | os.PathLike,
    *,
    file_list: str | os.PathLike = COCO_FILE_LIST,
    image_dir: str | os.PathLike = "ms_coco/val2014",
    output: str | os.PathLike | None = None,
    model: str | None = None,
    source_manifest: str | os.PathLike | None = None,
    origin: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Check downloaded vectors against ``file_list`` and write them with a manifest.

    Args:
        source: the downloaded ``.npy`` file (left untouched).
        file_list: the image list the vectors were computed from, in row order.
        image_dir: the folder the listed names are relative to (recorded in the manifest).
        output: where the vectors go (default ``<file_list>.saved_predictions.npy``).
        model: the model that made them (default: from ``source_manifest``, else from
            the dimension: 4096 is ``vgg16``, 1280 is ``efficientnet-lite0``).
        source_manifest: a manifest downloaded with the vectors, if any; its names must
            equal the file list.
        origin: recorded in the manifest (for example the URL and sha256).
        force: replace an existing ``output``.

    Returns:
        The manifest written.

    Raises:
        DatabaseError: the vectors do not match the file list or the model.
        FileExistsError: ``output`` exists and ``force`` is false.
    """
    source, file_list = Path(source), Path(file_list)
    output = Path(output) if output else Path(f"{file_list}.saved_predictions.npy")
    if output.exists() and not force:
        raise FileExistsError(f"{output} already exists; remove it or pass --force")
    try:
        names = read_file_list(file_list)
    except FileNotFoundError:
        raise DatabaseError(f"{file_list}: file list not found; run ./get_ms_coco_dataset.sh first") from None
    vectors = _load_array(source)  # (n, d), memory-mapped
    description = _model_for(vectors, names, model, source_manifest)
    check_downloaded_vectors(vectors, names, description["dim"], str(source))
    manifest = {
        "model": description,
        "names": names,
        "image_dir": str(image_dir),
        "file_list": str(file_list),
        "file_list_sha256": sha256_lines(names),
        "skipped": [],
        "timings": {},
        "source": origin or {"file": source.name},
    }
    written = save_vectors(output, vectors, manifest)
    log.info("installed %d x %d vectors in %s", written["count"], written["dimension"], output)
    return written


def _model_for(vectors, names, model, source_manifest) -> dict[str, Any]:
    if source_manifest is not None:
        other = read_json(source_manifest)
        if "model" not in other or "names" not in other:
            raise DatabaseError(f"{source_manifest}: not a vectors manifest (no 'model' or 'names')")
        if list(other["names"]) != names:
            raise DatabaseError(f"{source_manifest}: its image names differ from the file list")
        if model is None or model == other["model"].get("name"):
            return dict(other["model"])
        raise DatabaseError(f"{source_manifest} says model {other['model'].get('name')!r}, not {model!r}")
    if model is None:
        model = MODEL_BY_DIM.get(int(vectors.shape[1]))
        if model is None:
            raise DatabaseError(
                f"{vectors.shape[1]}-d vectors match no known model "
                f"({', '.join(f'{m}: {d}' for d, m in MODEL_BY_DIM.items())})"
            )
    return model_description(model)


def is_installed(output: str | os.PathLike, file_list: str | os.PathLike) -> bool:
    """True when ``output`` and its manifest exist and match ``file_list``."""
    if not Path(output).exists() or not manifest_path(output).exists():
        return False
    try:
        manifest = load_vectors_manifest(output, with_names=True)
        return manifest.get("file_list_sha256") == sha256_lines(read_file_list(file_list))
    except (SimilarImagesError, OSError):
        return False


def main(argv: list[str] | None = None) -> int:
    """Command line: returns the exit status; errors are one line on stderr."""
    parser = argparse.ArgumentParser(prog="python -m similar_images.datasets.coco_vectors", description=__doc__.split("\n")[0])
    parser.add_argument("source", nargs="?", help="the downloaded .npy vectors")
    parser.add_argument("--file-list", default=COCO_FILE_LIST)
    parser.add_argument("--image-dir", default="ms_coco/val2014")
    parser.add_argument("--output", default=None, help="default: <file list>.saved_predictions.npy")
    parser.add_argument("--model", default=None, choices=sorted(MODEL_BY_DIM.values()))
    parser.add_argument("--source-manifest", default=None)
    parser.add_argument("--url", default=None, help="recorded in the manifest")
    parser.add_argument("--sha256", default=None, help="recorded in the manifest")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--check-installed", action="store_true",
                        help="only report (exit 0) whether the output is in place and matches the list")
    args = parser.parse_args(argv)
    output = args.output or f"{args.file_list}.saved_predictions.npy"
    if args.check_installed:
        return 0 if is_installed(output, args.file_list) else 1
    if args.source is None:
        parser.error("the downloaded .npy vectors file is required")
    origin = {"url": args.url, "sha256": args.sha256} if args.url else None
    try:
        manifest = install_vectors(
            args.source, file_list=args.file_list, image_dir=args.image_dir, output=output,
            model=args.model, source_manifest=args.source_manifest, origin=origin, force=args.force,
        )
    except (SimilarImagesError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{output}: {manifest['count']} x {manifest['dimension']} vectors ({manifest['model']['name']}), "
          "checked against the file list", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
