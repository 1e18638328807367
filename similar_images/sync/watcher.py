"""Follow a folder as it changes: file-system events (watchdog, inotify on Linux), debounced
and batched into syncs, with periodic scans where events are not available.

Each event that may concern an image (an image file name, or a folder: a moved or deleted
folder carries its images along) marks the folder dirty. Once no event came for
``quiet_s`` seconds, or ``max_delay_s`` after the first one, one sync runs
(:func:`similar_images.sync.folder.sync_folder`). The sync compares the whole folder with
the catalog (a stat per file, no read of unchanged ones), so the events only say *when*:
an editor that writes ``.photo.jpg.tmp`` and renames it to ``photo.jpg``, a half-copied file
that grows, or a burst of a thousand files all end in one sync of the final state.

Where events are not available (network filesystems, a watchdog that cannot start, or
``poll_s`` given), the folder is scanned every ``poll_s`` seconds instead.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from similar_images.sync.walk import is_hidden, is_image_name

log = logging.getLogger(__name__)

QUIET_S = 1.0  # no event for this long: sync
MAX_DELAY_S = 5.0  # a steady stream of events still syncs this long after the first
DEFAULT_POLL_S = 10.0  # the scan period when events are not available


class FolderWatcher:
    """Run ``sync()`` when ``folder`` changes, in a thread of its own.

    Args:
        folder: the folder to follow.
        sync: what to run (a full sync of the folder); its exceptions are logged, and the
            next change retries.
        poll_s: scan every ``poll_s`` seconds instead of listening to events.
        on_synced: called with each ``sync()``'s result.
    """

    def __init__(self, folder, sync: Callable[[], object], *, quiet_s: float = QUIET_S,
                 max_delay_s: float = MAX_DELAY_S, poll_s: float | None = None,
                 on_synced: Callable[[object], None] | None = None):
        self.folder = Path(os.path.abspath(folder))  # event paths come absolute from it
        self._sync, self._on_synced = sync, on_synced
        self.quiet_s, self.max_delay_s, self.poll_s = quiet_s, max_delay_s, poll_s
        self._wake = threading.Condition()
        self._first = self._last = None  # monotonic times of the first and last event not yet synced
        self._stop = False
        self._observer = None
        self._thread = threading.Thread(target=self._run, name="folder-watcher", daemon=True)
        self.syncs = 0
        self.mode = "events"

    # --- life ------------------------------------------------------------------------

    def start(self) -> FolderWatcher:
        if self.poll_s is None:
            self._observer = _start_observer(self.folder, self.notice)
        if self._observer is None:
            self.mode = "poll"
            self.poll_s = self.poll_s or DEFAULT_POLL_S
        log.info("watching %s (%s)", self.folder, "events" if self.mode == "events" else f"a scan every {self.poll_s} s")
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 30) -> None:
        """Stop listening; a sync in progress finishes (its batches are committed) first."""
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        self._thread.join(timeout)

    def __enter__(self) -> FolderWatcher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- events ----------------------------------------------------------------------

    def notice(self, path: str | None = None, *, is_directory: bool = False) -> None:
        """An event about ``path`` (None: something changed): syncs after the quiet time."""
        if path is not None and not _concerns_images(self.folder, path, is_directory):
            return
        with self._wake:
            now = time.monotonic()
            self._first = self._first if self._first is not None else now
            self._last = now
            self._wake.notify_all()

    def _run(self) -> None:
        next_scan = time.monotonic() + (self.poll_s or 0)
        while True:
            with self._wake:
                while not self._stop and not self._due(next_scan):
                    self._wake.wait(timeout=self._wait_s(next_scan))
                if self._stop:
                    return
                self._first = self._last = None
            next_scan = time.monotonic() + (self.poll_s or 0)
            self._run_sync()

    def _due(self, next_scan: float) -> bool:
        now = time.monotonic()
        if self._first is not None and (now - self._last >= self.quiet_s or now - self._first >= self.max_delay_s):
            return True
        return self.mode == "poll" and now >= next_scan

    def _wait_s(self, next_scan: float) -> float:
        now, waits = time.monotonic(), [60.0]
        if self._first is not None:
            waits += [self._last + self.quiet_s - now, self._first + self.max_delay_s - now]
        if self.mode == "poll":
            waits.append(next_scan - now)
        return max(0.01, min(waits))

    def _run_sync(self) -> None:
        try:
            result = self._sync()
        except Exception:  # noqa: BLE001  a failed sync must not end the watch: the next change retries
            log.exception("sync of %s failed; retrying at the next change", self.folder)
            return
        self.syncs += 1
        if self._on_synced is not None:
            self._on_synced(result)


def _concerns_images(folder: Path, path: str, is_directory: bool = False) -> bool:
    """Whether an event path may change the folder's images: an image name, or a folder
    (created, moved or deleted with its images), not hidden."""
    try:
        relative = Path(path).relative_to(folder).as_posix()
    except ValueError:
        relative = Path(path).name
    return (is_directory or is_image_name(relative)) and not is_hidden(relative)


def _start_observer(folder: Path, notice: Callable) -> object | None:
    """A running watchdog observer reporting to ``notice``, or None (with the reason logged)."""
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:
        log.warning("watchdog is not installed (pip install 'similar-images[watch]'): scanning the folder instead")
        return None

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event):
            if event.event_type in ("opened", "closed_no_write"):
                return  # reads change nothing (the sync's own hashing opens files)
            if event.is_directory and event.event_type == "modified":
                return  # a folder's listing changed: the files' own events say whether images did
            for path in (event.src_path, getattr(event, "dest_path", "") or None):
                if path:
                    notice(path if isinstance(path, str) else path.decode(errors="replace"),
                           is_directory=event.is_directory)

    observer = Observer()
    try:
        observer.schedule(Handler(), str(folder), recursive=True)
        observer.start()
    except OSError as exc:  # inotify limits, a filesystem without events
        log.warning("cannot watch %s for events (%s): scanning it instead", folder, exc)
        return None
    return observer
