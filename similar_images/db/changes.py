"""Add vectors to, or remove items from, a database on disk: each one SQLite transaction.

An add writes one new immutable segment file with the new rows and commits its rows and
names to the catalog (``catalog.py``); a remove commits tombstones. Neither touches the
vectors file, the index or any other segment, so each costs what it changes. A kill -9 at
any moment leaves the database as before or fully updated: the segment file is written
and synced before the transaction that names it, and an unnamed one is deleted by the
next writer. When added rows or tombstones pass a share of the collection, the write
ends with a compaction (``compaction.py``), which folds them into a new generation.

Names follow the database's *name rule* (``manifest["name_rule"]``): ``"path"`` for
images (``a//b.jpg``, ``./a/b.jpg`` and the absolute path are one file) and ``"text"``
for texts (only the exact string is the same text). The core does not care which.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from similar_images.db import catalog, file_stats, journal
from similar_images.db.compaction import maybe_compact, migrate
from similar_images.db.database import Database, require_vectors
from similar_images.db.integrity import write_stamp
from similar_images.db.vectors import resolve_image_dir, rule_of, store_dtype, write_vectors_file
from similar_images.errors import DatabaseError
from similar_images.fileio.files import fsync_dir

log = logging.getLogger(__name__)


class AddResult(NamedTuple):
    """What :func:`add_rows` did: names added, and names skipped as already present."""

    added: list[str]
    already_present: list[str]


def lookup_keys(rule: str, name: str, image_dir) -> set[str]:
    """The stored keys a user's ``name`` may stand for: for texts the string itself; for
    paths the name as written in the database (relative to ``image_dir``), or a path from
    the current folder (relative or absolute) to the same file."""
    if rule == "text":
        return {name}
    name = os.fspath(name)
    keys = {catalog.item_key(rule, name), catalog.item_key(rule, os.path.abspath(name))}
    if image_dir:
        keys.add(catalog.item_key(rule, os.path.relpath(os.path.abspath(name), os.path.abspath(image_dir))))
    return keys


def find_present(db: Database, names: Iterable[str], image_dir=None) -> dict[str, int]:
    """``name -> id`` for those of ``names`` that the database holds (deleted items do not count).

    Looks names up through the catalog's index: O(len(names)), whatever the collection's size.
    """
    names = [os.fspath(n) for n in names]
    rule, folder = rule_of(db.manifest), _image_dir(db, image_dir)
    wanted = {n: lookup_keys(rule, n, folder) for n in names}
    if db.generation is None:  # format 1 (read-only until migrated): the names are in the manifest
        stored = {catalog.item_key(rule, n): i for i, n in enumerate(db.names)}
        found = {k: [i] for k, i in stored.items()}
    else:
        found = catalog.ids_for_keys(db.generation.con, db.generation.gen, set().union(*wanted.values()) or ())
    out = {}
    for name, keys in wanted.items():
        ids = [i for k in keys for i in found.get(k, ()) if db.is_live(i)]
        if ids:
            out[name] = min(ids)
    return out


def add_rows(vectors_path, index_path, vectors, names: list[str], *, image_dir=None,
             auto_compact: bool = True) -> AddResult:
    """Append ``vectors`` ``(m, d)`` (raw) named ``names`` to the database, atomically.

    Names already in the database (the same name under its name rule) and repeats within
    ``names`` are skipped, not duplicated. ``image_dir`` (default: the manifest's) is
    what relative path names are relative to. The new rows take the next ids.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(names):
        raise ValueError(f"vectors {vectors.shape} and {len(names)} names do not match")
    base = Path(vectors_path)
    require_vectors(base)
    with journal.writer_lock(base):
        db = _open_for_change(base, index_path)
        if vectors.shape[1] != db.dimension:
            raise ValueError(f"new vectors have dimension {vectors.shape[1]}, the database {db.dimension}")
        rule = rule_of(db.manifest)
        present = set(find_present(db, names, image_dir))
        keep, already, seen = [], [], set()
        for i, name in enumerate(names):
            key = catalog.item_key(rule, name)
            if name in present or key in seen:
                already.append(name)
            else:
                seen.add(key)
                keep.append(i)
        if keep:
            _commit_segment(db, vectors[keep], [names[i] for i in keep], rule)
    added = [names[i] for i in keep]
    log.info("added %d item(s) (%d already present)", len(added), len(already))
    if added and auto_compact:
        maybe_compact(base, index_path)
    return AddResult(added, already)


def _commit_segment(db: Database, new: np.ndarray, names: list[str], rule: str, stats=None, also=None) -> None:
    """Write ``new`` ``(m, d)`` as a segment file, then name it and its items in one transaction
    (with ``also(con)``, the caller's other changes, in the same transaction)."""
    gen, where = db.generation, catalog.catalog_path(db.vectors_path)
    path = catalog.new_segment_path(db.vectors_path)
    try:
        sha = write_vectors_file(path, new.shape, [new], first_row=db.id_count,  # flushed and synced
                                 dtype=store_dtype(db.manifest))
        fsync_dir(path.parent)
        segment = catalog.Segment(gen.segments[-1].seq + 1, path.name, db.id_count, len(new), path.stat().st_size, sha)
        with catalog.transaction(gen.con, where):
            catalog.insert_segment(gen.con, gen.gen, segment)
            catalog.insert_items(gen.con, gen.gen, db.id_count, names, (catalog.item_key(rule, n) for n in names),
                                 stats)
            if also is not None:
                also(gen.con)
    except BaseException:
        path.unlink(missing_ok=True)  # never named: a leftover either way
        raise
    write_stamp(path, sha)


def remove_rows(vectors_path, index_path, names: Iterable[str], *, image_dir=None,
                missing_ok: bool = False, auto_compact: bool = True) -> list[str]:
    """Delete the items named ``names`` (matched under the database's name rule), atomically.

    The ids of the other items do not change (a tombstone hides the removed ones until
    the next compaction).

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
        db = _open_for_change(base, index_path)
        found = find_present(db, names, image_dir)
        missing = [n for n in names if n not in found]
        if missing and not missing_ok:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ValueError(f"not in the database: {missing[0]}{more}; nothing was removed")
        ids = sorted(set(found.values()))
        if not ids:
            return []
        if len(ids) == len(db):
            raise ValueError("that would remove every item; delete the database files instead")
        gen = db.generation
        with catalog.transaction(gen.con, catalog.catalog_path(base)):
            catalog.insert_tombstones(gen.con, gen.gen, ids)
        removed = gen.names.take(ids)
    log.info("removed %d item(s)", len(removed))
    if auto_compact:
        maybe_compact(base, index_path)
    return removed


class BatchResult(NamedTuple):
    """What :func:`commit_batch` did, by name."""

    added: list[str]  # new rows: embedded ones and copies
    removed: list[str]  # names whose row was deleted (replaced ones included)
    restamped: list[str]  # items whose file stats were updated, their vector kept
    lost: list[str]  # copies whose source item was gone: nothing was added for them


def commit_batch(vectors_path, index_path, *, vectors=None, names=(), stats=None, copies=(), removes=(),
                 restamps=(), image_dir=None, auto_compact: bool = True) -> BatchResult:
    """Commit one batch of a folder's changes in one SQLite transaction (and at most one segment).

    Args:
        vectors: ``(m, d)`` raw vectors of new rows named ``names`` (embedded by the caller).
        stats: the new rows' file stats (``file_stats.FileStat``) aligned with ``names``, or None.
        copies: ``(source, name, stat)``: a new row ``name`` holding the vector of the live
            item ``source``, not re-embedded (with ``source`` in ``removes``: a moved file).
        removes: names whose rows are deleted; absent ones are ignored. A name both removed
            and added is replaced (a changed file: the old row goes, the new one comes).
        restamps: ``(name, stat)``: new file stats for a live item whose content is unchanged.

    A name added that is live and not removed is left as it is (not duplicated). Unlike
    :func:`remove_rows`, the database may end up empty (a followed folder may be emptied).
    A kill -9 leaves the database before or after the whole batch.
    """
    base, names = Path(vectors_path), list(names)
    stats = list(stats) if stats is not None else [None] * len(names)
    vectors = np.asarray(vectors if vectors is not None else np.zeros((0, 0)), dtype=np.float32)
    if len(names) != len(stats) or (names and (vectors.ndim != 2 or len(vectors) != len(names))):
        raise ValueError(f"vectors {vectors.shape}, {len(names)} names and {len(stats)} stats do not match")
    require_vectors(base)
    with journal.writer_lock(base):
        db = _open_for_change(base, index_path)
        rule, gen = rule_of(db.manifest), db.generation
        sources = [c[0] for c in copies]
        found = find_present(db, list(removes) + sources + [r[0] for r in restamps] + names +
                             [c[1] for c in copies], image_dir)
        dropped = {found[n] for n in removes if n in found}
        rows, new_names, new_stats, lost, seen = [], [], [], [], set()
        wanted = [(vectors[i], n, stats[i]) for i, n in enumerate(names)]
        for source, name, stat in copies:
            if source in found:
                wanted.append((db.vectors[found[source]], name, stat))
            else:
                lost.append(name)
        for row, name, stat in wanted:
            key = catalog.item_key(rule, name)
            if key in seen or (name in found and found[name] not in dropped):
                continue  # already there (or twice in this batch): never duplicated
            seen.add(key)
            rows.append(row)
            new_names.append(name)
            new_stats.append(stat)
        if rows and len(rows[0]) != db.dimension:
            raise ValueError(f"new vectors have dimension {len(rows[0])}, the database {db.dimension}")
        kept = [(n, stat) for n, stat in restamps if n in found and found[n] not in dropped]
        restamped = [(found[n], stat) for n, stat in kept]

        def also(con):
            catalog.insert_tombstones(con, gen.gen, sorted(dropped))
            file_stats.set_stats(con, gen.gen, restamped)

        if rows:
            _commit_segment(db, np.stack(rows).astype(np.float32), new_names, rule, new_stats, also)
        elif dropped or restamped:
            with catalog.transaction(gen.con, catalog.catalog_path(base)):
                also(gen.con)
        removed = gen.names.take(sorted(dropped)) if dropped else []
    if (rows or dropped) and auto_compact:
        maybe_compact(base, index_path)
    return BatchResult(new_names, removed, [n for n, _ in kept], lost)


def _open_for_change(base: Path, index_path) -> Database:
    """The database as a writer of segments and tombstones sees it (a format-1 one migrated first).

    Trusted: an add or a remove re-signs nothing it did not write itself (the base file,
    the index and earlier segments keep their own checksums, checked by readers)."""
    others = (index_path,) if index_path else ()
    journal.roll_forward(journal.journal_path(base), journal.database_files(base, others))  # finished, or refused
    db = Database.open(base, None, trust=True)
    if db.generation is None:
        log.warning("%s: converting to the growing format (names in %s) before the first change",
                    base, catalog.catalog_path(base).name)
        migrate(base)
        db = Database.open(base, None, trust=True)
    if db.generation is None:
        raise DatabaseError(f"{base}: the database could not be converted; run `similar-images migrate`")
    # what dead writers left: staged files of a full write, segments no transaction named
    journal.clean_leftovers(journal.database_files(base, others))
    catalog.remove_unnamed_segments(base, db.generation.con, db.generation.gen)
    return db


def _image_dir(db: Database, image_dir):
    """The folder path names are relative to: given, else the manifest's, found as searches find it."""
    return image_dir or resolve_image_dir(db.manifest.get("image_dir"), db.vectors_path)
