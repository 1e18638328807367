"""Which state of the database a process serves, and picking up writes within a bound.

A state is named by a small token: ``(generation, ids, deleted)`` for a database with a
catalog (the vectors manifest's generation token, the ids its segments hold, the number
of its tombstones). Within a generation an add only adds ids and a remove only adds
tombstones, so the token changes with every committed write, and a full write (compaction,
extraction) starts a new generation. A format-1 database (no catalog) is named by its
vectors checksum.

Each replica holds one opened state and swaps in a newly opened one whole (a search
captures its state once), so an answer never mixes two states. :class:`Freshness` keeps
the held state at most ``max_age_s`` behind the disk: before a request is answered, if the
last look at the disk began more than ``max_age_s`` ago, the replica looks again (one
manifest read and two indexed SQLite counts) and reopens what changed. So a request that
arrives ``max_age_s`` or more after a write committed is answered from a state that holds
it, on every replica; it may wait for that reopen (O(added) rows, docs/scale.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from similar_images.db import catalog
from similar_images.db.database import Database
from similar_images.db.vectors import load_vectors_manifest

log = logging.getLogger(__name__)

State = tuple  # (generation or vectors checksum, id count or None, deleted count)


def state_of(db: Database) -> State:
    """The token of an opened database's state."""
    gen = db.manifest.get("generation")
    if gen is None:  # format 1: read-only until migrated, which starts a generation
        return (db.manifest["vectors_sha256"], None, 0)
    return (gen, int(db.id_count), int(len(db.deleted)))


class DiskState:
    """Reads the token of the state committed on disk now (one connection kept open)."""

    def __init__(self, vectors_path: str | Path):
        self.vectors_path = Path(vectors_path)
        self._con = None

    def read(self) -> State:
        manifest = load_vectors_manifest(self.vectors_path)
        gen = manifest.get("generation")
        if gen is None:
            return (manifest["vectors_sha256"], None, 0)
        if self._con is None:
            self._con = catalog.connect(catalog.catalog_path(self.vectors_path))
        con = self._con
        con.execute("BEGIN")  # both counts from one committed state
        try:
            (ids,) = con.execute("SELECT COALESCE(SUM(rows), 0) FROM segments WHERE gen=?", (gen,)).fetchone()
            (deleted,) = con.execute("SELECT COUNT(*) FROM tombstones WHERE gen=?", (gen,)).fetchone()
        finally:
            con.execute("COMMIT")
        return (gen, int(ids), int(deleted))

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


class Freshness:
    """Keeps a process's state at most ``max_age_s`` behind the disk.

    Args:
        vectors_path: the database's vectors file.
        held: the token of the state the process holds now.
        reopen: opens the state on disk, swaps it in, and returns its token.
        max_age_s: the bound; 0 looks at the disk before every request.
    """

    def __init__(self, vectors_path: str | Path, held: State, reopen: Callable[[], State], max_age_s: float):
        self.disk = DiskState(vectors_path)
        self.held, self.reopen, self.max_age_s = held, reopen, max_age_s
        self.looked_at = time.monotonic()  # when the last look at the disk began (the state was opened after it)
        self.reopened = 0  # how many times a new state was swapped in
        self._lock = threading.Lock()

    def due(self) -> bool:
        """Whether the held state may be older than the bound (cheap: no disk access)."""
        return time.monotonic() - self.looked_at > self.max_age_s

    def check(self, *, force: bool = False) -> bool:
        """Look at the disk if due (or ``force``); reopen if it changed. True if a new state came in."""
        asked = time.monotonic()
        with self._lock:  # one look at a time; a request that waited here may find it done for it
            if not force and asked - self.looked_at <= self.max_age_s:
                return False
            began = time.monotonic()
            on_disk = self.disk.read()
            changed = on_disk != self.held
            if changed:
                self.held = self.reopen()
                self.reopened += 1
                log.info("picked up state %s (%.0f ms)", self.held, (time.monotonic() - began) * 1000)
            self.looked_at = began
            return changed


class FreshMiddleware:
    """ASGI middleware: before a request is answered, :meth:`Freshness.check` if it is due
    (in a worker thread: a reopen reads files)."""

    def __init__(self, app, freshness: Freshness):
        self.app, self.freshness = app, freshness

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.freshness.due():
            import anyio

            await anyio.to_thread.run_sync(self.freshness.check)
        await self.app(scope, receive, send)
