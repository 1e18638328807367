"""A database that follows a folder: ``similar-images sync``, ``watch`` and ``serve --watch``.

* ``walk.py``: the folder's image files with their size and mtime (one stat each);
* ``plan.py``: the comparison with the catalog (added, changed, renamed, removed, unchanged);
* ``apply.py``: the plan carried out in committed batches (crash-safe, resumable);
* ``folder.py``: :func:`sync_folder`, which wires them and creates the database on first use;
* ``watcher.py``: :class:`FolderWatcher`, events (watchdog) or periodic scans, debounced.
"""

from similar_images.sync.folder import SyncReport, default_vectors, sync_folder
from similar_images.sync.watcher import FolderWatcher

__all__ = ["FolderWatcher", "SyncReport", "default_vectors", "sync_folder"]
