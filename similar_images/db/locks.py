"""The writers' lock and the readers' shared lock on ``<vectors>.lock``.

Writers take ``LOCK_EX`` (``fcntl.flock``) for their whole change: staging, the commit
point and the renames. Readers take ``LOCK_SH`` while they open (manifest, header,
memory map, index), so an open sees all-old or all-new files. We lock rather than retry
on a detected mix because a mix is not always detectable (an index and vectors of the
same count but different rows), while a lock makes it impossible; the cost is a reader
waiting for a change to finish (about 0.1 s for a small database).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from similar_images.errors import DatabaseError

# Lock files this process holds exclusively (a reader inside a writer must not wait on itself:
# flock locks belong to open files, so a second LOCK_SH on the same lock would deadlock).
# Keyed by thread too: another thread of this process (a service answering searches during
# an add) must wait for the lock like any other reader.
_HELD: set[tuple[str, int]] = set()
_HELD_GUARD = threading.Lock()


def holds_lock(base: str | os.PathLike) -> bool:
    """Whether this process holds the writers' lock of ``base`` (a reader inside a writer)."""
    return (os.path.abspath(lock_path(base)), threading.get_ident()) in _HELD


def lock_path(base: str | os.PathLike) -> Path:
    return Path(str(base) + ".lock")


@contextlib.contextmanager
def writer_lock(base: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``<base>.lock`` (waits for other writers and for readers opening).

    Re-entrant within a thread: a change that starts another (an add that migrates or
    compacts first) keeps the lock it holds."""
    if holds_lock(base):
        yield
        return
    lock = lock_path(base)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DatabaseError(f"{lock}: cannot create the lock file ({exc.strerror})") from None
    key = (os.path.abspath(lock), threading.get_ident())
    try:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, single writer assumed
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        with _HELD_GUARD:
            _HELD.add(key)
        try:
            yield
        finally:
            with _HELD_GUARD:
                _HELD.discard(key)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def reader_lock(base: str | os.PathLike) -> Iterator[None]:
    """Hold a shared lock on ``<base>.lock`` while a database is opened.

    Writers hold the exclusive lock for their whole change (stage, commit, renames), so
    a reader holding this one sees all-old or all-new files, never a mix. Where the lock
    file cannot be made (a read-only folder that no writer ever used), no writer can
    change the files either, and the open goes ahead without it.
    """
    lock = lock_path(base)
    if holds_lock(base):  # this thread is the writer: it already excludes others
        yield
        return
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            yield
            return
    try:
        try:
            import fcntl
        except ImportError:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
