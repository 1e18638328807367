"""Carry out a :class:`~similar_images.sync.plan.Plan` in batches, each one committed.

First the changes that need no model (removes, renames, copies, new stats), in batches
of :data:`QUICK_BATCH`; then the files to embed, in batches of ``commit_every`` names: each
batch is embedded, then committed with the removal of the rows it replaces in one
transaction (:func:`similar_images.db.changes.commit_batch`). A kill -9 loses at most the
batch in flight: the next sync sees what was committed as unchanged and does the rest.
Nothing is duplicated, since a name already present is never added again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from similar_images.db.changes import commit_batch
from similar_images.jobs import drop_non_finite
from similar_images.pipeline import default_workers, embed_chunks, progress_bar
from similar_images.sync.plan import Plan

log = logging.getLogger(__name__)

QUICK_BATCH = 5000  # name-only changes per transaction
COMMIT_EVERY = 256  # embedded files per transaction


@dataclass
class Applied:
    """What was committed."""

    added: int = 0
    changed: int = 0
    renamed: int = 0
    copied: int = 0
    removed: int = 0
    embedded: int = 0  # images the model ran on
    skipped: list[dict[str, str]] = field(default_factory=list)
    batches: int = 0


def apply_plan(plan: Plan, folder: Path, vectors: Path, index: Path | None, extractor: Callable[[], object], *,
               batch_size: int = 32, commit_every: int = COMMIT_EVERY, workers: int | None = None,
               show_progress: bool = True) -> Applied:
    """Commit ``plan`` to the database ``vectors`` (+ ``index``); ``extractor()`` builds the
    database's model, called only if there is something to embed."""
    done = Applied()
    _quick(plan, vectors, index, done)
    names = plan.to_embed
    if not names:
        return done
    model = extractor()
    changed = set(plan.change)
    chunks = [names[i:i + commit_every] for i in range(0, len(names), commit_every)]
    with progress_bar(total=len(names), show=show_progress, desc="sync") as bar:
        results = embed_chunks(chunks, image_root=folder, extractor=model, batch_size=batch_size,
                               workers=workers or default_workers(), progress=bar)
        for chunk, result in zip(chunks, results):
            vectors_, kept, skipped = drop_non_finite(result.vectors, result.names, result.skipped)
            replaced = [n for n in chunk if n in changed]  # a changed file that cannot be read loses its old row too
            committed = commit_batch(vectors, index, vectors=vectors_, names=kept,
                                     stats=[plan.stats[n] for n in kept], removes=replaced, image_dir=folder)
            done.batches += 1
            done.embedded += len(result.names)
            done.changed += sum(1 for n in committed.added if n in changed)
            done.added += sum(1 for n in committed.added if n not in changed)
            done.skipped += skipped
    return done


def _quick(plan: Plan, vectors: Path, index: Path | None, done: Applied) -> None:
    """Removes, renames, copies and new stats: no model, one transaction per QUICK_BATCH."""
    ops = ([("rename", a, b) for a, b in plan.rename] + [("copy", a, b) for a, b in plan.copy]
           + [("remove", n, None) for n in plan.remove] + [("restamp", n, None) for n in plan.restamp])
    for start in range(0, len(ops), QUICK_BATCH):
        part = ops[start:start + QUICK_BATCH]
        copies = [(a, b, plan.stats[b]) for op, a, b in part if op in ("rename", "copy")]
        removes = [a for op, a, _ in part if op in ("rename", "remove")]
        restamps = [(a, plan.stats[a]) for op, a, _ in part if op == "restamp"]
        result = commit_batch(vectors, index, copies=copies, removes=removes, restamps=restamps)
        done.batches += 1
        renamed = {b for op, _, b in part if op == "rename"}
        done.renamed += sum(1 for n in result.added if n in renamed)
        done.copied += sum(1 for n in result.added if n not in renamed)
        done.removed += sum(1 for op, a, _ in part if op == "remove")
        if result.lost:  # the source went away meanwhile: the next sync embeds these
            log.warning("%d moved or copied file(s) lost their source during the sync; the next sync adds them",
                        len(result.lost))
