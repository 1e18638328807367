"""A database from any folder of images, for the robustness report (``--images DIR``).

Each model extracts the folder once into ``<out>/robustness/<model>/`` (an interrupted
extraction resumes; the vectors are reused while the folder's image list, the model and
the folder stay the same), then the database is opened with an index of the requested
type (exact search by default) and with the model just used, so queries load it once.
"""

from __future__ import annotations

import logging
from pathlib import Path

from similar_images.db.index import INDEX_TYPES
from similar_images.db.vectors import load_vectors_manifest
from similar_images.errors import SimilarImagesError
from similar_images.evaluation.systems import SystemSpec, open_spec
from similar_images.fileio.files import (
    manifest_path,
    read_file_list,
    sha256_lines,
    write_bytes_atomic,
)

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def list_images(folder: Path) -> list[str]:
    """Image files under ``folder`` (recursive), as sorted paths relative to it."""
    if not folder.is_dir():
        raise SimilarImagesError(f"{folder}: image folder not found")
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise SimilarImagesError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return names


def folder_vectors(folder: Path, extractor, workdir: Path, *, show_progress: bool) -> Path:
    """Extract (or reuse) the vectors of every image in ``folder``; an interrupted run resumes."""
    from similar_images.extract import run_extraction

    names = list_images(folder)
    job = workdir / "robustness" / extractor.name.replace("/", "_")
    file_list, output = job / "file_list.txt", job / "vectors.npy"
    if output.exists() and manifest_path(output).exists():
        manifest = load_vectors_manifest(output)
        if (manifest.get("file_list_sha256") == sha256_lines(names)
                and manifest.get("model") == extractor.describe()
                and Path(manifest.get("image_dir", "")).resolve() == folder.resolve()):
            logger.info("reusing %s", output)
            return output
    resume = Path(str(output) + ".partial").exists()
    if not (resume and file_list.exists() and read_file_list(file_list) == names):
        write_bytes_atomic(file_list, "".join(n + "\n" for n in names).encode())
        resume = False
    run_extraction(file_list, folder, output, extractor, resume=resume, force=True, show_progress=show_progress)
    return output


def parse_folder_models(models: list[str] | None) -> list[tuple[str, str]]:
    """``--models`` items for a folder: ``MODEL[:INDEX_TYPE]`` -> ``[(model, index type)]`` (default exact)."""
    from similar_images.features import DEFAULT_MODEL, MODELS

    kinds = tuple(INDEX_TYPES) + ("exact",)
    parsed = []
    for item in models or [DEFAULT_MODEL]:
        model, _, kind = item.partition(":")
        kind = kind or "exact"
        if model not in MODELS:
            raise ValueError(f"--models {item!r}: unknown model {model!r}; choose from: {', '.join(MODELS)}")
        if kind not in kinds:
            raise ValueError(f"--models {item!r}: unknown index type {kind!r}; choose from: {', '.join(kinds)}")
        parsed.append((model, kind))
    return parsed


def folder_systems(folder: Path, models: list[str] | None, workdir: Path, *,
                   show_progress: bool) -> dict[str, object]:
    """label -> database built from ``folder``; ``models`` items are ``MODEL[:INDEX_TYPE]``."""
    from similar_images.features import get_extractor

    parsed = parse_folder_models(models)
    list_images(folder)  # a bad folder fails before any model loads
    systems, extractors = {}, {}
    for model, kind in parsed:
        extractor = extractors.setdefault(model, get_extractor(model))
        vectors = folder_vectors(folder, extractor, workdir, show_progress=show_progress)
        spec = SystemSpec(f"{model}/{kind}", vectors, kind)
        systems[spec.label] = open_spec(spec, workdir, show_progress=show_progress, image_dir=folder,
                                        extractor=extractor)  # the model just used, loaded once
    return systems
