"""Add vectors to, or remove rows from, a database on disk: one atomic change each.

Both rewrite the vectors file (streamed in chunks, hashed while written), its
manifest, and, when there is one, the index (new vectors are encoded with the trained
index: no retraining, no rebuild) and the index manifest, all staged and committed
together by :func:`similar_images.db.journal.change`. A kill -9 at any moment leaves the
database as before or fully updated.

Names follow the database's *name rule* (``manifest["name_rule"]``): ``"path"`` for
images (``a//b.jpg``, ``./a/b.jpg`` and the absolute path are one file) and ``"text"``
for texts (only the exact string is the same text). The core does not care which.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from similar_images.db import index as ix
from similar_images.db import journal
from similar_images.db.database import Database, index_manifest_for, now_iso, require_vectors
from similar_images.db.vectors import resolve_image_dir, write_vectors_file
from similar_images.errors import DatabaseError
from similar_images.fileio.files import manifest_path, sha256_lines, write_json_to

log = logging.getLogger(__name__)

CHUNK = 8192
NAME_RULES = ("path", "text")


class AddResult(NamedTuple):
    """What :func:`add_rows` did: names added, and names skipped as already present."""

    added: list[str]
    already_present: list[str]


def name_key(name: str, image_dir: str | os.PathLike | None) -> str:
    """A comparable form of a path name: the absolute, normalised path it stands for."""
    base = os.fspath(image_dir) if image_dir else "."
    return os.path.normcase(os.path.abspath(os.path.join(base, os.fspath(name))))


def name_rule(manifest: dict[str, Any]) -> str:
    """The database's name rule: recorded, else ``"text"`` for a text model's vectors, else ``"path"``."""
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    rule = manifest.get("name_rule") or ("text" if model.get("kind") == "text" else "path")
    if rule not in NAME_RULES:
        raise DatabaseError(f"unknown name_rule {rule!r} in a vectors manifest; expected one of {', '.join(NAME_RULES)}")
    return rule


def keys_for(rule: str, image_dir: str | os.PathLike | None) -> Callable[[str], set[str]]:
    """``name -> the keys it may match``: exact strings for texts; for paths, the name as in the
    manifest (relative to ``image_dir``) or as a path relative to the current folder."""
    if rule == "text":
        return lambda name: {name}
    return lambda name: {name_key(name, image_dir), name_key(name, None)}


def add_rows(
    vectors_path: str | os.PathLike,
    index_path: str | os.PathLike | None,
    vectors,
    names: list[str],
    *,
    image_dir: str | os.PathLike | None = None,
) -> AddResult:
    """Append ``vectors`` ``(m, d)`` (raw) named ``names`` to the database, atomically.

    Names already in the database (the same name under its name rule) and repeats within
    ``names`` are skipped, not duplicated. ``image_dir`` (default: the manifest's) is
    what relative path names are relative to.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(names):
        raise ValueError(f"vectors {vectors.shape} and {len(names)} names do not match")
    base = Path(vectors_path)
    require_vectors(base)
    with journal.change(base, also=(index_path,)) as stage:
        db = Database.open(base, index_path, fresh=True)  # never re-sign damaged content
        if vectors.shape[1] != db.dimension:
            raise ValueError(f"new vectors have dimension {vectors.shape[1]}, the database {db.dimension}")
        key = _stored_key(db, image_dir)
        seen = {key(n) for n in db.names}
        keep, present = [], []
        for i, name in enumerate(names):
            if key(name) in seen:
                present.append(name)
            else:
                seen.add(key(name))
                keep.append(i)
        if not keep:
            return AddResult([], present)
        new = vectors[keep]  # (m, d)
        added = [names[i] for i in keep]
        n, d = db.vectors.shape
        blocks = itertools.chain(_blocks(db.vectors), [new])
        change = {"op": "add", "count": len(added), "at": now_iso()}
        _stage_rewrite(stage, db, (n + len(added), d), blocks, db.names + added, change,
                       lambda index, _staged: ix.add_vectors(index, new))
    log.info("added %d item(s) (%d already present)", len(added), len(present))
    return AddResult(added, present)


def remove_rows(
    vectors_path: str | os.PathLike,
    index_path: str | os.PathLike | None,
    names: Iterable[str],
    *,
    image_dir: str | os.PathLike | None = None,
    missing_ok: bool = False,
) -> list[str]:
    """Delete the rows named ``names`` (matched under the database's name rule), atomically.

    Returns:
        The names removed, as written in the database.

    Raises:
        ValueError: a name is not in the database (unless ``missing_ok``), or the
            removal would leave the database empty; nothing is changed then.
    """
    base = Path(vectors_path)
    names = [os.fspath(n) for n in ([names] if isinstance(names, (str, os.PathLike)) else names)]
    require_vectors(base)
    with journal.change(base, also=(index_path,)) as stage:
        db = Database.open(base, index_path, fresh=True)  # never re-sign damaged content
        rule = name_rule(db.manifest)
        wanted = {n: keys_for(rule, _image_dir(db, image_dir))(n) for n in names}
        stored = _stored_key(db, image_dir)
        keys = set().union(*wanted.values()) if wanted else set()
        rows = [i for i, n in enumerate(db.names) if stored(n) in keys]
        found = {stored(db.names[i]) for i in rows}
        missing = [n for n, ks in wanted.items() if not ks & found]
        if missing and not missing_ok:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ValueError(f"not in the database: {missing[0]}{more}; nothing was removed")
        if not rows:
            return []
        if len(rows) == len(db):
            raise ValueError("that would remove every item; delete the database files instead")
        keep = np.setdiff1d(np.arange(len(db)), rows)  # (n - r,) sorted
        removed = [db.names[i] for i in rows]
        change = {"op": "remove", "count": len(rows), "at": now_iso()}

        def edit_index(index, staged_vectors: Path) -> None:
            remove_ids(index, rows, kept_vectors=np.load(staged_vectors, mmap_mode="r"))

        _stage_rewrite(stage, db, (len(keep), db.dimension), _blocks(db.vectors, keep),
                       [db.names[i] for i in keep], change, edit_index)
    log.info("removed %d item(s)", len(removed))
    return removed


def _image_dir(db: Database, image_dir):
    """The folder path names are relative to: given, else the manifest's, found as searches find it."""
    return image_dir or resolve_image_dir(db.manifest.get("image_dir"), db.vectors_path)


def _stored_key(db: Database, image_dir) -> Callable[[str], str]:
    """The key of a name as stored in the database (one key per stored name)."""
    if name_rule(db.manifest) == "text":
        return lambda name: name
    folder = _image_dir(db, image_dir)
    return lambda name: name_key(name, folder)


def _blocks(vectors, rows: np.ndarray | None = None):
    """Row blocks of ``vectors`` (all rows, or the sorted ``rows``), ``CHUNK`` at a time."""
    total = len(vectors) if rows is None else len(rows)
    for start in range(0, total, CHUNK):
        if rows is None:
            yield np.asarray(vectors[start:start + CHUNK])
        else:
            yield np.asarray(vectors[rows[start:start + CHUNK]])


def _stage_rewrite(stage: journal.Stage, db: Database, shape, blocks, names: list[str],
                   change: dict[str, Any], edit_index) -> None:
    """Stage the new vectors, manifest, index and index manifest of ``db`` in ``stage``.

    ``edit_index(index, staged_vectors_path)`` changes the index to match the new rows.
    """
    staged_vectors = stage.file(db.vectors_path)
    sha = write_vectors_file(staged_vectors, shape, blocks)
    stage.known_sha(staged_vectors, sha)
    vm = dict(db.manifest)
    vm.update(names=names, count=int(shape[0]), dimension=int(shape[1]),
              vectors_sha256=sha, names_sha256=sha256_lines(names),
              history=list(db.manifest.get("history", [])) + [change])
    write_json_to(stage.file(manifest_path(db.vectors_path)), vm)
    if db.index is not None:
        edit_index(db.index, staged_vectors)  # edits the in-memory copy read by this writer
        staged_index = stage.file(db.index_path)
        ix.write_index_to(db.index, staged_index)
        im = index_manifest_for(db.index_path, staged_index, vm, db.index_manifest)
        stage.known_sha(staged_index, im["index_sha256"])
        write_json_to(stage.file(manifest_path(db.index_path)), im)


# --- removing rows from a trained index ---------------------------------------------


def remove_ids(index, rows, *, kept_vectors=None) -> None:
    """Delete ids ``rows`` and renumber the rest so ids stay equal to row numbers.

    After the call, the vector that had id ``j`` has id ``j - (number of removed ids
    below j)``, matching a vectors file with those rows deleted. IVF indexes are edited
    in place; flat indexes compact themselves; HNSW cannot delete, so it is emptied and
    ``kept_vectors`` (the remaining rows, in order) are added again, without training.
    """
    import faiss

    removed = np.unique(np.asarray(rows, dtype=np.int64))  # sorted
    if len(removed) == 0:
        return
    if _is_ivf(index):
        index.remove_ids(faiss.IDSelectorBatch(removed))
        _renumber_ivf(faiss.extract_index_ivf(index), removed)
    elif isinstance(faiss.downcast_index(index), faiss.IndexFlat):
        index.remove_ids(faiss.IDSelectorBatch(removed))
    else:
        if kept_vectors is None:
            raise ValueError("this index cannot delete in place; pass kept_vectors")
        log.info("%s cannot delete in place: re-adding %d vectors", type(index).__name__, len(kept_vectors))
        index.reset()
        ix.add_vectors(index, kept_vectors)


def _is_ivf(index) -> bool:
    import faiss

    try:
        faiss.extract_index_ivf(index)
    except RuntimeError:
        return False
    return True


def _renumber_ivf(ivf, removed: np.ndarray) -> None:
    import faiss

    invlists = ivf.invlists
    for lst in range(ivf.nlist):
        size = invlists.list_size(lst)
        if size == 0:
            continue
        ids = faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy()  # (size,) int64
        codes = faiss.rev_swig_ptr(invlists.get_codes(lst), size * invlists.code_size).copy()
        new_ids = ids - np.searchsorted(removed, ids)  # (size,) holds the arrays alive
        invlists.update_entries(lst, 0, size, faiss.swig_ptr(new_ids), faiss.swig_ptr(codes))
