"""Folders of pattern images for the sync tests, the tiny model counting what it embeds, and
the state of a database (names, vectors, file stats) to compare runs with."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
from _index_data import TinyExtractor, pattern_image

from similar_images.db import file_stats
from similar_images.db.database import Database


class CountingTiny(TinyExtractor):
    """The tiny model, counting the images it embeds (``images``)."""

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.images = 0

    def embed(self, batch):
        self.images += len(batch)
        return super().embed(batch)


def write_pattern(folder: Path, name: str, i: int) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pattern_image(i).save(path)
    return path


def make_folder(folder: Path, ids) -> list[str]:
    """``img<i>.png`` for each ``i`` (a distinct picture each); the names."""
    return [write_pattern(folder, f"img{i:03d}.png", i).name for i in ids]


def folder_hashes(folder: Path) -> dict[str, str]:
    """``relative name -> sha256`` of the image files under ``folder`` (hidden ones left out)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and not any(p.startswith(".") for p in relative.split("/")):
            out[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def db_state(vectors: Path) -> dict[str, tuple]:
    """``name -> (vector bytes, size, mtime_ns, sha256)`` of the live items (ids left out:
    they depend on the order of the writes, not on what the database holds)."""
    db = Database.open(vectors, None, trust=True)
    out = {}
    for r in file_stats.live_records(db.generation.con, db.generation.gen):
        out[r.name] = (np.asarray(db.vectors[r.id], dtype=np.float32).tobytes(), r.size, r.mtime_ns, r.sha256)
    return out


def catalog_hashes(vectors: Path) -> dict[str, str]:
    return {name: state[3] for name, state in db_state(vectors).items()}


def copy_tree(source: Path, target: Path) -> None:
    """A copy keeping mtimes (``copy2``), so stats recorded for one hold for the other."""
    shutil.copytree(source, target, copy_function=shutil.copy2)


def touch_later(path: Path, seconds: int = 5) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds * 10**9))
