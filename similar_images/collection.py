"""What goes into a collection: the image files a user gives, embedded and added.

Folders are expanded to their image files, names are made relative to the database's
image folder when the files are inside it, and the images are embedded by the same
pipeline as extraction before :func:`similar_images.db.changes.add_rows` commits them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from similar_images.db.changes import add_rows, find_present
from similar_images.db.inputs import check_names
from similar_images.extract import extract_vectors

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def image_files(paths) -> list[Path]:
    """Expand ``paths`` (files and folders; a single path or folder is fine too) to image files.

    Folders are searched recursively for :data:`IMAGE_SUFFIXES`, sorted; files are kept
    as given (a file that does not exist is reported when it is loaded).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    for given in paths:
        if "://" in str(given):
            raise ValueError(f"add takes image files or folders, not URLs: {given} (download it first)")
        path = Path(given)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            out.append(path)
    return out


def name_for(path: str | os.PathLike, image_dir: str | os.PathLike | None) -> str:
    """The name an added file gets: relative to ``image_dir`` when inside it, else absolute."""
    absolute = os.path.abspath(path)
    if image_dir:
        root = os.path.abspath(image_dir)
        if os.path.commonpath([absolute, root]) == root:
            return Path(os.path.relpath(absolute, root)).as_posix()
    return absolute


class AddReport(NamedTuple):
    """What :func:`add_images` did; ``skipped`` holds ``{"path", "reason", "message"}``."""

    added: list[str]
    already_present: list[str]
    skipped: list[dict[str, str]]


def add_images(database, extractor, paths, *, image_dir, batch_size: int = 32,
               show_progress: bool = True) -> AddReport:
    """Embed image files with the database's model and add them (see :func:`add_rows`).

    Args:
        database: the open :class:`~similar_images.db.database.Database` to add to.
        extractor: the database's feature model (checked against its manifest by the caller).
        paths: image files and/or folders.
        image_dir: the database's image folder: names are relative to it when inside it.
    """
    files = image_files(paths)
    if not files:
        raise ValueError("no image files to add (folders are searched for " + ", ".join(IMAGE_SUFFIXES) + ")")
    # the input rules extraction applies: repeats (by resolved path) and non-UTF-8 names are
    # skipped with their reason; the paths are the user's own, so absolute ones are fine
    checked = check_names([os.path.abspath(f) for f in files], None)
    candidates = [name_for(path, image_dir) for path in checked.names]
    present = find_present(database, candidates, image_dir)  # through the catalog's index, not every name
    names, already = [], []
    for name in candidates:
        (already if name in present else names).append(name)
    if not names:
        return AddReport([], already, checked.skipped)
    vectors, done, skipped = extract_vectors(names, image_dir, extractor, batch_size=batch_size,
                                             show_progress=show_progress)
    skipped = checked.skipped + skipped
    if not done:
        return AddReport([], already, skipped)
    result = add_rows(database.vectors_path, database.index_path, vectors, done, image_dir=image_dir)
    return AddReport(result.added, already + result.already_present, skipped)
