"""``sync_folder``: make a database follow a folder (walk, plan, apply), creating it on first use.

The database goes beside the folder (``photos/`` -> ``photos.saved_predictions.npy``) unless
a vectors path is given; it records the folder as its image folder (relative to itself
when it can), so a search finds the files. A sync of an unchanged folder stats its files,
reads the catalog and stops: no model is loaded and no file is read.

Files that cannot be decoded are skipped with their reason and retried on the next sync.
So that a folder holding one broken file does not load the model on every sync, the
skipped files are remembered beside the database (``V.sync-skipped.json``, with their
size and mtime) and, while unchanged, retried by decoding them alone (no model) first.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from similar_images.db import file_stats
from similar_images.db.database import VECTORS_SUFFIX, Database, find_default_index
from similar_images.db.vectors import load_vectors_manifest, resolve_image_dir, rule_of, save_vectors
from similar_images.errors import DatabaseError, ImageError
from similar_images.fileio.files import read_json, write_json_atomic
from similar_images.jobs import recorded_image_dir
from similar_images.pipeline import progress_bar
from similar_images.sync.apply import COMMIT_EVERY, Applied, apply_plan
from similar_images.sync.plan import Plan, make_plan
from similar_images.sync.walk import walk_folder

log = logging.getLogger(__name__)

DEFAULT_MODEL = "efficientnet-lite0"
SKIPPED_SUFFIX = ".sync-skipped.json"


def default_vectors(folder: str | os.PathLike) -> Path:
    """The database beside ``folder``: ``photos/`` -> ``photos.saved_predictions.npy``."""
    path = Path(os.path.abspath(folder))
    return path.parent / f"{path.name}{VECTORS_SUFFIX}"


@dataclass
class SyncReport:
    """What a sync found and did (``plan`` is what it found; counts are what it committed)."""

    folder: Path
    vectors: Path
    plan: Plan
    applied: Applied = field(default_factory=Applied)
    created: bool = False
    dry_run: bool = False
    model_loaded: bool = False
    count: int | None = None  # items in the database after the sync
    extractor: object = None  # the model it ran, if it built or was given one (a watcher keeps it)

    @property
    def skipped(self) -> list[dict[str, str]]:
        return self.plan.skipped + self.applied.skipped

    def summary(self) -> str:
        """One line: added, removed, changed, renamed, skipped, unchanged (and what the model ran on)."""
        if self.dry_run:
            p = self.plan
            return (f"dry run: would add {len(p.add) + len(p.copy)}, remove {len(p.remove)}, change {len(p.change)}, "
                    f"rename {len(p.rename)}; {len(p.skipped)} skipped, {p.unchanged} unchanged; nothing was written")
        a = self.applied
        copies = f" ({a.copied} copies of known files)" if a.copied else ""
        return (f"synced {self.folder}: {a.added + a.copied} added{copies}, {a.removed} removed, {a.changed} changed, "
                f"{a.renamed} renamed, {len(self.skipped)} skipped, {self.plan.unchanged} unchanged; "
                f"the model ran on {a.embedded} image(s); the database holds {self.count}")


def sync_folder(folder: str | os.PathLike, vectors: str | os.PathLike | None = None, *, model: str = DEFAULT_MODEL,
                extractor=None, device: str = "auto", batch_size: int = 32, commit_every: int = COMMIT_EVERY,
                dry_run: bool = False, show_progress: bool = True) -> SyncReport:
    """Make the database ``vectors`` (default: beside ``folder``) hold exactly ``folder``'s images.

    Args:
        model: the model of a database created now (an existing one keeps its own).
        extractor: the model to embed with (default: built when first needed from the
            database's manifest, or ``model``); it must be the database's.
        device: where a model built here runs.
        commit_every: files embedded per committed batch.
        dry_run: find what would change (files that differ are hashed), write nothing.

    Raises:
        DatabaseError: the folder is missing, or the database follows another folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatabaseError(f"{folder}: no such folder")
    vectors = Path(vectors) if vectors is not None else default_vectors(folder)
    db = _open_following(vectors, folder)
    if db is not None and not dry_run:
        db.generation.con.execute(file_stats.SHA_INDEX)  # a catalog made before the hash index gets it
    walk = walk_folder(folder)
    records = list(file_stats.live_records(db.generation.con, db.generation.gen)) if db else []
    bar = (lambda total: progress_bar(total=total, desc="hash", unit="file")) if show_progress else None
    plan = make_plan(folder, walk, records, _live_by_sha(db), progress=bar)
    report = SyncReport(folder, vectors, plan, dry_run=dry_run)
    if dry_run:
        return report
    holder = _ModelHolder(extractor, db.model if db else None, model, device, vectors)
    if db is None:
        if not plan.to_embed:
            raise DatabaseError(f"{folder}: no image files to index (images are files ending in "
                                f"{', '.join(sorted(set(s.lstrip('.') for s in _suffixes())))})")
        _create(vectors, folder, holder())
        report.created = True
    _retry_known_bad(plan, folder, vectors, holder)
    report.applied = apply_plan(plan, folder, vectors, find_default_index(vectors), holder, batch_size=batch_size,
                                commit_every=commit_every, show_progress=show_progress)
    _remember_skipped(vectors, folder, report.skipped)
    report.model_loaded, report.extractor = holder.loaded, holder.built
    report.count = len(Database.open(vectors, None, trust=True))
    return report


def _open_following(vectors: Path, folder: Path) -> Database | None:
    """The database at ``vectors`` if it exists, checked to follow ``folder``; None if it does not exist."""
    if not vectors.exists():
        return None
    manifest = load_vectors_manifest(vectors)
    if rule_of(manifest) != "path":
        raise DatabaseError(f"{vectors} is a text database; sync makes image databases follow folders")
    recorded = resolve_image_dir(manifest.get("image_dir"), vectors)
    if not (recorded.is_dir() and os.path.samefile(recorded, folder)):
        raise DatabaseError(f"{vectors} holds the images of {recorded}, not {folder}; give another --vectors "
                            "for this folder")
    db = Database.open(vectors, None, trust=True)
    if db.generation is None:  # a format-1 database: converted by its first write
        from similar_images.db.compaction import migrate

        migrate(vectors)
        db = Database.open(vectors, None, trust=True)
    return db


def _live_by_sha(db: Database | None):
    def lookup(hashes: list[str]) -> dict[str, list[str]]:
        if db is None:
            return {}
        found = file_stats.ids_for_sha256(db.generation.con, db.generation.gen, hashes)
        out = {}
        for sha, ids in found.items():
            live = sorted(i for i in ids if db.is_live(i))
            if live:
                out[sha] = db.names.take(live)
        return out
    return lookup


def _suffixes():
    from similar_images.collection import IMAGE_SUFFIXES

    return IMAGE_SUFFIXES


class _ModelHolder:
    """The model, built on the first call (an unchanged folder never calls it)."""

    def __init__(self, extractor, recorded: dict | None, model: str, device: str, vectors: Path):
        self._extractor, self._recorded, self._model = extractor, recorded, model
        self._device, self._vectors = device, vectors
        self.loaded = extractor is not None

    @property
    def built(self):
        return self._extractor

    def __call__(self):
        if self._extractor is None:
            from similar_images.features import extractor_for, get_extractor

            if self._recorded is not None:
                manifest = load_vectors_manifest(self._vectors)
                folder = self._vectors.parent / manifest["model_files"] if manifest.get("model_files") else None
                self._extractor = extractor_for(self._recorded, model_folder=folder, device=self._device,
                                                database_folder=self._vectors.parent)
            else:
                self._extractor = get_extractor(self._model, **({} if self._device == "auto" else
                                                               {"device": self._device}))
            self.loaded = True
        return self._extractor


def _create(vectors: Path, folder: Path, extractor) -> None:
    """An empty database for ``folder`` with ``extractor``'s model: the batches fill it."""
    vectors.parent.mkdir(parents=True, exist_ok=True)
    save_vectors(vectors, np.zeros((0, int(extractor.dim)), dtype=np.float32), {
        "model": extractor.describe(), "names": [], "name_rule": "path",
        "image_dir": recorded_image_dir(folder, vectors), "created_by": "sync"})
    log.info("created %s for %s (%s)", vectors, folder, extractor.describe().get("name"))


def _skipped_path(vectors: Path) -> Path:
    return Path(str(vectors) + SKIPPED_SUFFIX)


def _retry_known_bad(plan: Plan, folder: Path, vectors: Path, holder: _ModelHolder) -> None:
    """Files skipped last time and unchanged since: decoded alone first; those that still fail
    are skipped again without the model (those that decode now go to the model)."""
    try:
        known = read_json(_skipped_path(vectors)) if _skipped_path(vectors).exists() else {}
    except DatabaseError:
        known = {}
    again = [n for n in plan.add if isinstance(known.get(n), dict) and plan.stats.get(n)
             and [plan.stats[n].size, plan.stats[n].mtime_ns] == known[n].get("seen")]
    if not again:
        return
    from similar_images.images import load_for_model

    for name in again:
        try:
            load_for_model(folder / name, (32, 32))
        except ImageError as exc:
            plan.add.remove(name)
            plan.skipped.append({"path": name, "reason": exc.reason, "message": str(exc)})
        except Exception as exc:  # noqa: BLE001  one bad file must not stop a sync
            plan.add.remove(name)
            plan.skipped.append({"path": name, "reason": "corrupt", "message": f"{name}: {exc}"})


def _remember_skipped(vectors: Path, folder: Path, skipped: list[dict[str, str]]) -> None:
    record = {}
    for item in skipped:
        try:
            stat = (folder / item["path"]).stat()
        except OSError:
            continue
        record[item["path"]] = {"seen": [stat.st_size, stat.st_mtime_ns], "reason": item.get("reason")}
    path = _skipped_path(vectors)
    if record or path.exists():
        write_json_atomic(path, record)
