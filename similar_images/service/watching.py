"""``serve --watch FOLDER``: the folder's watcher inside the service, so the page finds a photo
seconds after it lands in the folder.

Each sync (:func:`similar_images.sync.sync_folder`, in the watcher's thread, with a model
instance of its own so queries never wait for it) commits its batches through the
crash-safe writes; the engine then swaps in the database as committed
(:meth:`Engine.refresh`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from similar_images.service.engine import Engine
from similar_images.sync import FolderWatcher, sync_folder

log = logging.getLogger(__name__)


def start_watching(engine: Engine, folder: str | Path, *, poll_s: float | None = None, quiet_s: float | None = None,
                   batch_size: int = 32) -> FolderWatcher:
    """Start following ``folder`` into ``engine``'s database; returns the running watcher (``stop()`` it)."""
    vectors = engine.db.database.vectors_path
    model: dict = {}

    def run():
        report = sync_folder(folder, vectors, extractor=model.get("extractor"), batch_size=batch_size,
                             show_progress=False)
        if report.extractor is not None:
            model["extractor"] = report.extractor  # built once
        if not report.plan.empty:
            engine.refresh()
            log.info("%s", report.summary())
        return report

    options = {} if quiet_s is None else {"quiet_s": quiet_s}
    watcher = FolderWatcher(folder, run, poll_s=poll_s, **options).start()
    watcher.notice()  # catch up with what changed before the watch began
    return watcher
