"""Add vectors to, or remove rows from, a database on disk: one atomic change each.

Both rewrite the vectors file (streamed in chunks, hashed while written), its
manifest, and, when there is one, the index (new vectors are encoded with the trained
index: no retraining, no rebuild) and the index manifest, all under staged names, then
commit them together with the roll-forward journal of ``journal.py``. A kill -9 at any
moment leaves the database as before or fully updated.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from similar_images.db import index as ix
from similar_images.db import journal
from similar_images.db.database import (
    Database,
    index_manifest_for,
    now_iso,
    require_vectors,
)
from similar_images.db.files import manifest_path, sha256_lines, write_json_to
from similar_images.db.vectors import write_vectors_file

log = logging.getLogger(__name__)

CHUNK = 8192


class AddResult(NamedTuple):
    """What :func:`add_rows` did: names added, and names skipped as already present."""

    added: list[str]
    already_present: list[str]


def name_key(name: str, image_dir: str | os.PathLike | None) -> str:
    """A comparable form of a name: the absolute, normalised path it stands for."""
    base = os.fspath(image_dir) if image_dir else "."
    return os.path.normcase(os.path.abspath(os.path.join(base, os.fspath(name))))


def add_rows(
    vectors_path: str | os.PathLike,
    index_path: str | os.PathLike | None,
    vectors,
    names: list[str],
    *,
    image_dir: str | os.PathLike | None = None,
) -> AddResult:
    """Append ``vectors`` ``(m, d)`` (raw) named ``names`` to the database, atomically.

    Names already in the database (the same file, however written) and repeats within
    ``names`` are skipped, not duplicated. ``image_dir`` (default: the manifest's) is
    what relative names are relative to.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(names):
        raise ValueError(f"vectors {vectors.shape} and {len(names)} names do not match")
    base = Path(vectors_path)
    require_vectors(base)
    with journal.writer_lock(base):
        db = _open_for_writing(base, index_path)
        if vectors.shape[1] != db.dimension:
            raise ValueError(f"new vectors have dimension {vectors.shape[1]}, the database {db.dimension}")
        image_dir = image_dir or db.manifest.get("image_dir")
        seen = {name_key(n, image_dir) for n in db.names}
        keep, present = [], []
        for i, name in enumerate(names):
            key = name_key(name, image_dir)
            if key in seen:
                present.append(name)
            else:
                seen.add(key)
                keep.append(i)
        if not keep:
            return AddResult([], present)
        new = vectors[keep]  # (m, d)
        added = [names[i] for i in keep]
        n, d = db.vectors.shape
        blocks = itertools.chain(_blocks(db.vectors), [new])
        change = {"op": "add", "count": len(added), "at": now_iso()}
        _write_and_commit(db, (n + len(added), d), blocks, db.names + added, change,
                          lambda index, _staged: ix.add_vectors(index, new))
        log.info("added %d image(s) (%d already present)", len(added), len(present))
        return AddResult(added, present)


def remove_rows(
    vectors_path: str | os.PathLike,
    index_path: str | os.PathLike | None,
    names: Iterable[str],
    *,
    image_dir: str | os.PathLike | None = None,
    missing_ok: bool = False,
) -> list[str]:
    """Delete the rows named ``names`` (matched like :func:`name_key`), atomically.

    Returns:
        The names removed, as written in the database.

    Raises:
        ValueError: a name is not in the database (unless ``missing_ok``), or the
            removal would leave the database empty; nothing is changed then.
    """
    base = Path(vectors_path)
    names = [os.fspath(n) for n in ([names] if isinstance(names, (str, os.PathLike)) else names)]
    require_vectors(base)
    with journal.writer_lock(base):
        db = _open_for_writing(base, index_path)
        image_dir = image_dir or db.manifest.get("image_dir")
        # A name as in the manifest (relative to image_dir) or a path (relative to here).
        wanted = {n: {name_key(n, image_dir), name_key(n, None)} for n in names}
        keys = set().union(*wanted.values()) if wanted else set()
        rows = [i for i, n in enumerate(db.names) if name_key(n, image_dir) in keys]
        found = {name_key(db.names[i], image_dir) for i in rows}
        missing = [n for n, ks in wanted.items() if not ks & found]
        if missing and not missing_ok:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ValueError(f"not in the database: {missing[0]}{more}; nothing was removed")
        if not rows:
            return []
        if len(rows) == len(db):
            raise ValueError("that would remove every image; delete the database files instead")
        keep = np.setdiff1d(np.arange(len(db)), rows)  # (n - r,) sorted
        removed = [db.names[i] for i in rows]
        d = db.dimension
        change = {"op": "remove", "count": len(rows), "at": now_iso()}

        def edit_index(index, staged_vectors: Path) -> None:
            ix.remove_rows(index, rows, kept_vectors=np.load(staged_vectors, mmap_mode="r"))

        _write_and_commit(db, (len(keep), d), _blocks(db.vectors, keep), [db.names[i] for i in keep],
                          change, edit_index)
        log.info("removed %d image(s)", len(removed))
        return removed


def _open_for_writing(base: Path, index_path) -> Database:
    """Finish or discard interrupted changes, then open the current, verified state."""
    journal.roll_forward(journal.journal_path(base))
    finals = [base, manifest_path(base)]
    if index_path is not None:
        finals += [Path(index_path), manifest_path(index_path)]
    journal.discard_staged(finals)
    return Database.open(base, index_path)


def _blocks(vectors, rows: np.ndarray | None = None):
    """Row blocks of ``vectors`` (all rows, or the sorted ``rows``), ``CHUNK`` at a time."""
    total = len(vectors) if rows is None else len(rows)
    for start in range(0, total, CHUNK):
        if rows is None:
            yield np.asarray(vectors[start:start + CHUNK])
        else:
            yield np.asarray(vectors[rows[start:start + CHUNK]])


def _write_and_commit(db: Database, shape, blocks, names: list[str], change: dict[str, Any], edit_index) -> None:
    """Stage the new vectors, manifest, index and index manifest; commit them together.

    ``edit_index(index, staged_vectors_path)`` changes the index to match the new rows.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        sv = journal.staged_path(db.vectors_path)
        staged.append((sv, db.vectors_path))
        sha = write_vectors_file(sv, shape, blocks)
        vm = dict(db.manifest)
        vm.update(names=names, count=int(shape[0]), dimension=int(shape[1]),
                  vectors_sha256=sha, names_sha256=sha256_lines(names),
                  history=list(db.manifest.get("history", [])) + [change])
        svm = journal.staged_path(manifest_path(db.vectors_path))
        staged.append((svm, manifest_path(db.vectors_path)))
        write_json_to(svm, vm)
        if db.index is not None:
            edit_index(db.index, sv)  # edits the in-memory copy read by this writer
            si = journal.staged_path(db.index_path)
            staged.append((si, db.index_path))
            ix.write_index_to(db.index, si)
            im = index_manifest_for(db.index_path, si, vm, db.index_manifest)
            sim = journal.staged_path(manifest_path(db.index_path))
            staged.append((sim, manifest_path(db.index_path)))
            write_json_to(sim, im)
    except BaseException:
        for path, _ in staged:
            path.unlink(missing_ok=True)
        raise
    journal.commit(journal.journal_path(db.vectors_path), staged)
