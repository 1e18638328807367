"""Full writes of a growing database: compaction and migration, each a new generation.

*Compaction* folds the segments added since the last full write and drops the deleted
rows: it writes a new vectors file of the live rows, the index with the added rows
encoded (``add`` on the trained index, no retraining) and the deleted ids removed, and
the catalog rows of a new generation whose ids are ``0..n-1`` again; all committed
together by the journal. Readers that opened the old generation keep its files (memory
maps and the catalog rows of their generation) until they close.

It runs on request (``similar-images compact``) and at the end of an add or remove that
takes the added rows past ``ADDED_SHARE`` of the base rows (at least ``ADDED_MIN``), the
deleted rows past ``DELETED_SHARE`` of all rows, or the segments past ``MAX_SEGMENTS``:
readers load the added rows into memory and encode them into the index on every open,
so these bound what an open costs beyond the base.

*Migration* converts a format-1 database (names in the manifest) to the catalog: it
writes the catalog rows and a new manifest, and leaves the vectors and index files as
they are (their checksums and the index's binding do not change).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from similar_images.db import catalog, file_stats, journal
from similar_images.db.database import Database, index_manifest_for, now_iso
from similar_images.db.vectors import (
    DEFAULT_STORE,
    VECTORS_FORMAT,
    finish_generation,
    load_vectors_manifest,
    rule_of,
    store_dtype,
    write_generation,
    write_vectors_file,
)
from similar_images.fileio.files import manifest_path, refine_codes_path, sha256_lines, write_json_to

log = logging.getLogger(__name__)

ADDED_SHARE, ADDED_MIN = 0.10, 1_000
DELETED_SHARE = 0.20
MAX_SEGMENTS = 200
CHUNK = 8192


def needs_compaction(db: Database) -> str | None:
    """Why ``db`` should be compacted now, or None."""
    gen = db.generation
    if gen is None:
        return None
    added = db.id_count - len(db.base_rows)
    if added > max(ADDED_MIN, ADDED_SHARE * len(db.base_rows)):
        return f"{added} added rows (over {ADDED_SHARE:.0%} of the {len(db.base_rows)} base rows)"
    if len(db.deleted) > DELETED_SHARE * db.id_count:
        return f"{len(db.deleted)} deleted rows (over {DELETED_SHARE:.0%} of {db.id_count})"
    if len(gen.segments) > MAX_SEGMENTS:
        return f"{len(gen.segments)} segments (over {MAX_SEGMENTS})"
    return None


def maybe_compact(vectors_path, index_path) -> bool:
    """Compact when :func:`needs_compaction` says so; returns whether it did."""
    why = needs_compaction(Database.open(vectors_path, None, trust=True))
    if why:
        log.warning("%s: compacting (%s)", vectors_path, why)
        compact(vectors_path, index_path)
    return why is not None


def compact(vectors_path, index_path=None, *, store: str | None = None) -> dict:
    """Write the live rows as a new generation (vectors, catalog, index); returns the new manifest.

    Everything re-signed is re-checked first (no stamps), so damaged content is refused,
    never re-signed. ``store``: write the rows as ``"float16"`` or ``"float32"`` from now on
    (None: the database's store); the index is kept (it holds its own codes).
    """
    base = Path(vectors_path)
    if store is not None:
        store_dtype({"store": store})  # an unknown store is refused before anything is written
    index_path = Path(index_path) if index_path is not None and Path(index_path).exists() else None
    migrate(base)  # a no-op for a database in the catalog format
    with journal.change(base, also=(index_path,)) as stage:
        db = Database.open(base, index_path, fresh=True)
        live = db.live_ids()  # (n,) ascending
        staged_vectors = stage.file(base)
        kept = {k: v for k, v in db.manifest.items() if k != "store"}
        stored = {"store": store or db.manifest.get("store", DEFAULT_STORE)}
        stored = {} if stored["store"] == DEFAULT_STORE else stored  # absent means float32
        sha = write_vectors_file(staged_vectors, (len(live), db.dimension), _live_blocks(db.vectors, live),
                                 dtype=store_dtype(stored))
        stage.known_sha(staged_vectors, sha)
        names = db.names.take(live) if len(live) else []
        # the files' size, mtime and hash (a followed folder's) stay with their items
        stats = file_stats.stats_by_id(db.generation.con, db.generation.gen, live) \
            if len(live) and file_stats.has_stats(db.generation.con, db.generation.gen) else None
        vm = {**kept, **stored, "format": VECTORS_FORMAT, "count": len(live), "vectors_sha256": sha,
              "names_sha256": sha256_lines(list(names)),
              "history": list(db.manifest.get("history", [])) + [
                  {"op": "compact", "count": len(live), "dropped": len(db.deleted), "at": now_iso()}]}
        vm["generation"] = write_generation(base, staged_vectors, sha, names, rule_of(vm), stats)
        write_json_to(stage.file(manifest_path(base)), vm)
        if db.index is not None:  # the open encoded the added rows already
            _remove_deleted(db.index, db.deleted, db.vectors, live)
            _stage_index(stage, db, vm, live)
        stage.after_commit(lambda: finish_generation(base, vm["generation"], vm["names_sha256"], db.generation.gen))
    log.info("compacted %s: %d rows, %d deleted rows dropped", base, len(live), len(db.deleted))
    return vm


def migrate(vectors_path) -> bool:
    """Convert a format-1 database to the catalog format; returns False if it already was."""
    base = Path(vectors_path)
    with journal.change(base) as stage:
        manifest = load_vectors_manifest(base)  # checks the names against their checksum
        if "generation" in manifest:
            return False
        names = manifest.pop("names")
        manifest["format"] = VECTORS_FORMAT
        manifest["generation"] = write_generation(base, base, manifest["vectors_sha256"], names, rule_of(manifest))
        manifest["history"] = list(manifest.get("history", [])) + [{"op": "migrate", "at": now_iso()}]
        write_json_to(stage.file(manifest_path(base)), manifest)
        stage.after_commit(lambda: finish_generation(base, manifest["generation"], manifest["names_sha256"]))
    log.info("migrated %s to the catalog format (%d names in %s)", base, len(names), catalog.catalog_path(base).name)
    return True


def _live_blocks(rows, live: np.ndarray):
    for start in range(0, len(live), CHUNK):
        yield np.asarray(rows[live[start:start + CHUNK]], dtype=np.float32)


def _remove_deleted(index, deleted: np.ndarray, rows, live: np.ndarray) -> None:
    from similar_images.db.index_edits import remove_ids

    if len(deleted):
        remove_ids(index, deleted, kept_vectors=lambda: np.asarray(rows[live], dtype=np.float32))


def _stage_index(stage: journal.Stage, db: Database, vm: dict, live: np.ndarray) -> None:
    from similar_images.db import index as ix

    staged_index = stage.file(db.index_path)
    ix.write_index_to(db.index, staged_index)
    base = dict(db.index_manifest)
    if db.refine is not None:  # the codes follow the ids: the live rows' codes, the added rows encoded
        base["refine"] = _stage_refine_codes(stage, db, live)
    im = index_manifest_for(db.index_path, staged_index, vm, base)
    stage.known_sha(staged_index, im["index_sha256"])
    write_json_to(stage.file(manifest_path(db.index_path)), im)


def _stage_refine_codes(stage: journal.Stage, db: Database, live: np.ndarray) -> dict:
    """The refine codes of the new generation (ids ``0..len(live)-1``): the kept rows' codes
    copied, the rows added since the index was written encoded with the same quantizer."""
    from similar_images.db import refine

    codes_stage = db.refine
    staged = stage.file(refine_codes_path(db.index_path))

    def blocks():
        for start in range(0, len(live), CHUNK):
            ids = live[start:start + CHUNK]  # ascending: the coded ids first
            coded = ids[ids < codes_stage.rows]
            if len(coded):
                yield np.asarray(codes_stage.codes[coded])  # (c, d) uint8
            if len(coded) < len(ids):
                yield np.asarray(db.vectors[ids[len(coded):]], dtype=np.float32)  # encoded by write_codes

    sha = refine.write_codes(staged, codes_stage.sq, blocks(), (len(live), db.dimension))
    stage.known_sha(staged, sha)
    return refine.record(staged, codes_stage.sq, len(live), sha, codes_stage.exact_factor)

