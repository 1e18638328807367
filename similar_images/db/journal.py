"""Commit several files at once, safely under kill -9: a roll-forward journal.

A change that touches several files (vectors, their manifest, the index, its manifest)
is committed in three steps:

1. every new file is written completely under a *staged* name beside its final name
   (``.<name>.<token>.staged``) and flushed to disk;
2. a small journal (``<base>.journal.json``) listing the ``staged -> final`` renames is
   written atomically: **this rename is the commit point**;
3. the renames are applied in order, then the journal is deleted.

A crash before step 2 leaves the old files untouched (the staged files are garbage,
removed by the next writer). A crash after it is finished by :func:`roll_forward`,
which every reader and writer calls first: a rename whose staged file is gone was
already applied. So the files are always either all old or all new once opened.

Writers also hold an exclusive lock (:func:`writer_lock`) so two changes never
interleave. :func:`change` wraps all of it, and is the one way every writer (extraction's
save, ``build``, add/remove, texts alike) commits files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from similar_images.db.files import fsync_dir, read_json, write_json_atomic
from similar_images.errors import DatabaseError

log = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".journal.json"
STAGED_SUFFIX = ".staged"


def journal_path(base: str | os.PathLike) -> Path:
    return Path(str(base) + JOURNAL_SUFFIX)


def staged_path(final: str | os.PathLike) -> Path:
    """A fresh staged name beside ``final`` (same folder, so the rename is atomic)."""
    final = Path(final)
    return final.parent / f".{final.name}.{secrets.token_hex(4)}{STAGED_SUFFIX}"


def fsync_path(path: str | os.PathLike) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def commit(journal: str | os.PathLike, renames: list[tuple[Path, Path]]) -> None:
    """Atomically replace each ``final`` with its fully written ``staged`` file.

    Args:
        journal: the journal file to write (see :func:`journal_path`).
        renames: ``(staged, final)`` pairs, applied in this order.
    """
    journal = Path(journal)
    for staged, _ in renames:
        fsync_path(staged)
    entries = [[_rel(staged, journal), _rel(final, journal)] for staged, final in renames]
    write_json_atomic(journal, {"format": 1, "renames": entries})  # the commit point
    roll_forward(journal)


def roll_forward(journal: str | os.PathLike) -> bool:
    """Finish a committed change whose renames were interrupted.

    Returns:
        True if a journal was found (and is now applied).
    """
    journal = Path(journal)
    if not journal.exists():
        return False
    try:
        entries = read_json(journal)["renames"]
    except (DatabaseError, KeyError, TypeError) as exc:
        # Written atomically, so this is not a crash artefact: refuse to guess.
        raise DatabaseError(f"{journal}: unreadable commit journal ({exc}); inspect it by hand") from None
    folders = set()
    for staged_rel, final_rel in entries:
        staged, final = journal.parent / staged_rel, journal.parent / final_rel
        try:
            os.replace(staged, final)
            log.info("rolled forward %s", final)
        except FileNotFoundError:
            pass  # applied before the interruption (or by a concurrent reader)
        except OSError as exc:
            raise DatabaseError(f"{journal}: an interrupted change must be finished but {final} "
                                f"cannot be written ({exc.strerror}); open it once with write access") from None
        folders.add(final.parent)
    for folder in folders:
        fsync_dir(folder)
    with contextlib.suppress(FileNotFoundError):
        journal.unlink()
    return True


def discard_staged(finals: list[Path]) -> int:
    """Delete staged files left by writers that died before their commit point.

    Call only while holding :func:`writer_lock` and after :func:`roll_forward`.
    """
    removed = 0
    for final in finals:
        for leftover in final.parent.glob(f".{final.name}.*{STAGED_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
                removed += 1
    if removed:
        log.info("removed %d staged file(s) of an interrupted change", removed)
    return removed


@contextlib.contextmanager
def writer_lock(base: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``<base>.lock`` (waits for another writer to finish)."""
    lock = Path(str(base) + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DatabaseError(f"{lock}: cannot create the lock file ({exc.strerror})") from None
    try:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, single writer assumed
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _rel(path: Path, journal: Path) -> str:
    return os.path.relpath(path, journal.parent)


class Stage:
    """The files of one change, staged beside their final names (see :func:`change`)."""

    def __init__(self) -> None:
        self.renames: list[tuple[Path, Path]] = []

    def file(self, final: str | os.PathLike) -> Path:
        """A fresh staged path for ``final``; leftovers of dead writers for it are deleted first."""
        final = Path(final)
        discard_staged([final])
        staged = staged_path(final)
        self.renames.append((staged, final))
        return staged

    def discard(self) -> None:
        for staged, _ in self.renames:
            staged.unlink(missing_ok=True)


@contextlib.contextmanager
def change(base: str | os.PathLike) -> Iterator[Stage]:
    """One atomic change of the files of the database whose vectors file is ``base``.

    Holds the writers' lock, finishes an interrupted change first, and yields a
    :class:`Stage`: the caller writes each new file completely to ``stage.file(final)``.
    On success they are committed together (the journal); on any error the staged files
    are deleted and nothing changed.
    """
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(base):
        roll_forward(journal_path(base))
        stage = Stage()
        try:
            yield stage
        except BaseException:
            stage.discard()
            raise
        if stage.renames:
            commit(journal_path(base), stage.renames)
