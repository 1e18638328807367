"""``text sync FILE.csv``: a text database that follows a CSV file (rows added, removed, changed).

A text is its own name (the ``"text"`` name rule), so the comparison is a set difference
between the column's cleaned texts and the database's live texts: texts not stored yet
are encoded and added, stored texts no longer in the file are removed. A changed row is
the removal of its old text and the addition of its new one (a CSV row has no identity of
its own that survives an edit: ids and order are not stable in most exports), and a row
moved within the file changes nothing. The first sync builds the database
(:func:`~similar_images.text.build.build_text_database`, with its index).

Like the folder sync, the writes are batches committed one by one
(:func:`~similar_images.db.changes.commit_batch`), so an interrupted sync loses at most
the batch in flight and the next one continues.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from similar_images.db import file_stats
from similar_images.db.changes import commit_batch
from similar_images.db.database import Database, find_default_index
from similar_images.db.vectors import rule_of
from similar_images.errors import DatabaseError
from similar_images.text.texts import read_texts

log = logging.getLogger(__name__)

COMMIT_EVERY = 1024  # texts encoded per committed batch


@dataclass
class TextSyncReport:
    vectors: Path
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped_rows: int = 0
    created: bool = False
    count: int = 0

    def summary(self) -> str:
        made = "built" if self.created else "synced"
        return (f"{made} {self.vectors}: {self.added} added, {self.removed} removed, {self.unchanged} unchanged, "
                f"{self.skipped_rows} rows skipped; the database holds {self.count} texts")


def sync_texts(csv_file: str | os.PathLike, *, column: str = "text", vectors: str | os.PathLike | None = None,
               encoder=None, batch_size: int = 64, device: str = "cpu", commit_every: int = COMMIT_EVERY,
               show_progress: bool = True) -> TextSyncReport:
    """Make the text database ``vectors`` (default ``CSV.saved_predictions.npy``) hold exactly the
    texts of ``column`` in ``csv_file``; build it if it does not exist.

    Args:
        encoder: the text model (default: the database's, loaded only if texts are new).

    Raises:
        DatabaseError: an unreadable CSV, a missing column, or an image database.
    """
    from similar_images.text.build import build_text_database, default_paths

    vectors = Path(vectors) if vectors is not None else default_paths(csv_file)[0]
    if not vectors.exists():
        result = build_text_database(csv_file, column=column, vectors=vectors, batch_size=batch_size, device=device,
                                     show_progress=show_progress)
        return TextSyncReport(vectors, added=result["count"], skipped_rows=result["skipped"], created=True,
                              count=result["count"])
    texts, skipped = read_texts(csv_file, column)
    db = Database.open(vectors, None, trust=True)
    if rule_of(db.manifest) != "text" or db.generation is None:
        raise DatabaseError(f"{vectors} is not a text database in the catalog format (image databases follow "
                            "folders: similar-images sync FOLDER; older text databases: similar-images migrate)")
    stored = {r.name for r in file_stats.live_records(db.generation.con, db.generation.gen)}
    wanted = set(texts)
    new = [t for t in texts if t not in stored]
    gone = sorted(stored - wanted)
    report = TextSyncReport(vectors, unchanged=len(wanted & stored), skipped_rows=len(skipped))
    index = find_default_index(vectors)
    if gone:
        report.removed = len(commit_batch(vectors, index, removes=gone).removed)
    if new:
        encoder = encoder or _encoder(db.model, device, batch_size)
        from similar_images.pipeline import progress_bar

        with progress_bar(total=len(new), show=show_progress, desc="text sync", unit="text") as bar:
            for start in range(0, len(new), commit_every):
                part = new[start:start + commit_every]
                report.added += len(commit_batch(vectors, index, vectors=encoder.encode(part), names=part).added)
                bar.update(len(part))
    report.count = len(Database.open(vectors, None, trust=True))
    return report


def _encoder(model: dict, device: str, batch_size: int):
    from similar_images.features import check_extractor
    from similar_images.models import minilm

    encoder = minilm.TextEncoder(model["name"], device=device, batch_size=batch_size)
    check_extractor(encoder, model)
    return encoder
