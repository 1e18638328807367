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
import errno
import logging
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

from similar_images.db.catalog import check_bare_name
from similar_images.db.integrity import write_stamp
from similar_images.db.locks import holds_lock, lock_path, reader_lock, writer_lock
from similar_images.errors import DatabaseError
from similar_images.fileio.files import fsync_dir, read_json, sha256_file, write_json_atomic

log = logging.getLogger(__name__)

JOURNAL_SUFFIX = ".journal.json"
JOURNAL_FORMAT = 2
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


def fingerprint(path: Path) -> dict[str, int] | None:
    """What a final file is before a change: ``{"size", "mtime_ns"}``, or None when absent."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def commit(journal: str | os.PathLike, renames: list[tuple[Path, Path]],
           shas: dict[Path, str] | None = None) -> None:
    """Atomically replace each ``final`` with its fully written ``staged`` file.

    The journal records, for each rename, the staged file's sha256 and the final file's
    fingerprint before the change, so :func:`roll_forward` installs only the files this
    change staged, over the files it meant to replace.

    Args:
        journal: the journal file to write (see :func:`journal_path`).
        renames: ``(staged, final)`` pairs, applied in this order.
        shas: sha256 of staged files already known (hashed while written); others are hashed here.
    """
    journal = Path(journal)
    shas = shas or {}
    for staged, _ in renames:
        fsync_path(staged)
    entries = [{"staged": _rel(staged, journal), "final": _rel(final, journal),
                "sha256": shas.get(staged) or sha256_file(staged), "before": fingerprint(final)}
               for staged, final in renames]
    write_json_atomic(journal, {"format": JOURNAL_FORMAT, "renames": entries})  # the commit point
    roll_forward(journal, [final for _, final in renames])


def read_journal(journal: Path, allowed=()) -> list[dict]:
    """The journal's entries, each checked; a malformed journal is refused naming the field.

    An entry names files by bare names in the journal's folder, or else exactly one of the
    ``allowed`` paths (an index the caller keeps in another folder): a planted entry cannot
    make a reader rename anything else."""
    data = read_json(journal)
    if not isinstance(data, dict) or data.get("format") != JOURNAL_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise DatabaseError(f"{journal}: not a commit journal of this version (field 'format' is {found!r}); "
                            "nothing was changed; move it away to open the database as it is")
    entries = data.get("renames")
    if not isinstance(entries, list):
        raise DatabaseError(f"{journal}: field 'renames' must be a list; nothing was changed")
    for i, entry in enumerate(entries):
        ok = (isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("staged", "final", "sha256"))
              and (entry.get("before") is None or isinstance(entry.get("before"), dict)))
        if not ok:
            raise DatabaseError(f"{journal}: malformed entry {i} in field 'renames'; nothing was changed")
        named = os.path.abspath(journal.parent / entry["final"])
        elsewhere_ok = named in {os.path.abspath(a) for a in allowed} and os.path.basename(entry["final"]) != entry["final"]
        for key in ("staged", "final"):  # bare names, or the caller's own index in another folder
            if not elsewhere_ok:
                check_bare_name(entry[key], f"{journal}: entry {i} field {key!r}")
        staged, final = Path(entry["staged"]), Path(entry["final"])
        if not (staged.parent == final.parent and staged.name.startswith(f".{final.name}.")
                and staged.name.endswith(STAGED_SUFFIX)):
            raise DatabaseError(f"{journal}: entry {i} stages {entry['staged']!r}, not a staged copy of "
                                f"{entry['final']!r}; refused, nothing was changed")
    return entries


def roll_forward(journal: str | os.PathLike, allowed=()) -> bool:
    """Finish a committed change whose renames were interrupted.

    Every staged file still present must match the checksum the journal recorded, and
    the file it replaces must still be the one the change saw (size and mtime): a stale,
    foreign or tampered journal is refused, naming the file, before anything is renamed.

    Returns:
        True if a journal was found (and is now applied).
    """
    journal = Path(journal)
    if not journal.exists():
        return False
    entries = read_journal(journal, allowed)
    pending = []
    for entry in entries:
        staged, final = journal.parent / entry["staged"], journal.parent / entry["final"]
        if not staged.exists():
            continue  # applied before the interruption
        if sha256_file(staged) != entry["sha256"]:
            raise DatabaseError(f"{journal}: refused: staged file {staged} does not match the checksum the "
                                f"journal recorded; nothing was changed (remove the journal to keep {final} as it is)")
        if fingerprint(final) != entry["before"]:
            raise DatabaseError(f"{journal}: refused: a stale or foreign journal ({final} changed since it was "
                                "written); nothing was changed (remove the journal to keep the files as they are)")
        pending.append((staged, final))
    folders = set()
    for staged, final in pending:
        try:
            os.replace(staged, final)
            log.info("rolled forward %s", final)
        except FileNotFoundError:
            pass  # applied by a concurrent roll-forward
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
            # only ``final``'s own (one token between the dots), not a longer name's: the index
            # ``I``'s leftovers are not ``I.refine.npy``'s, which this change may have staged already
            if not re.fullmatch(r"[0-9a-f]+", leftover.name[len(final.name) + 2:-len(STAGED_SUFFIX)]):
                continue
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
                removed += 1
    if removed:
        log.info("removed %d staged file(s) of an interrupted change", removed)
    return removed


def clean_leftovers(finals: list[Path]) -> int:
    """Delete the staged and temporary files of dead writers for ``finals`` and the journal.

    Call only while holding :func:`writer_lock` and after :func:`roll_forward`.
    """
    removed = discard_staged(finals)
    for final in finals:
        for leftover in final.parent.glob(f".{final.name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
                removed += 1
    return removed


def _rel(path: Path, journal: Path) -> str:
    return os.path.relpath(path, journal.parent)


class Stage:
    """The files of one change, staged beside their final names (see :func:`change`)."""

    def __init__(self) -> None:
        self.renames: list[tuple[Path, Path]] = []
        self.shas: dict[Path, str] = {}
        self.finishers: list = []

    def file(self, final: str | os.PathLike) -> Path:
        """A fresh staged path for ``final``; leftovers of dead writers for it are deleted first."""
        final = Path(final)
        discard_staged([final])
        staged = staged_path(final)
        self.renames.append((staged, final))
        return staged

    def after_commit(self, finish) -> None:
        """Run ``finish()`` once the change is committed, still under the writers' lock
        (clean-up that must not race another writer)."""
        self.finishers.append(finish)

    def known_sha(self, staged: Path, sha: str) -> None:
        """Record the sha256 of a staged file hashed while written (spares the journal a re-read)."""
        self.shas[staged] = sha

    def discard(self) -> None:
        for staged, _ in self.renames:
            staged.unlink(missing_ok=True)


def database_files(base: Path, others: tuple[str | os.PathLike, ...] = ()) -> list[Path]:
    """The files one change of database ``base`` may touch (for the clean-up of leftovers)."""
    from similar_images.fileio.files import manifest_path, refine_codes_path

    finals = [base, manifest_path(base), journal_path(base)]
    for other in others:  # an index: its file, its manifest and its refine stage's codes
        finals += [Path(other), manifest_path(other), refine_codes_path(other)]
    return finals


@contextlib.contextmanager
def change(base: str | os.PathLike, *, also: tuple[str | os.PathLike | None, ...] = ()) -> Iterator[Stage]:
    """One atomic change of the files of the database whose vectors file is ``base``.

    Holds the writers' lock, finishes an interrupted change first, removes the staged and
    temporary files of dead writers (for ``base``, its manifest, its journal and the files
    in ``also``, such as the index), and yields a :class:`Stage`: the caller writes each
    new file completely to ``stage.file(final)``. On success they are committed together
    (the journal); on any error the staged files are deleted and nothing changed.

    Raises:
        DatabaseError: the disk is full (or another write error): it names the file
            being written and says that nothing changed.
    """
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(base):
        others = tuple(a for a in also if a is not None)
        roll_forward(journal_path(base), database_files(base, others))
        clean_leftovers(database_files(base, others))
        stage = Stage()
        try:
            yield stage
        except OSError as exc:
            stage.discard()
            raise _write_failed(exc, stage.renames[-1][1] if stage.renames else base, base) from None
        except BaseException:
            stage.discard()
            raise
        if stage.renames:
            _commit_or_discard(stage, base)
            for finish in stage.finishers:
                finish()


def _commit_or_discard(stage: Stage, base: Path) -> None:
    journal = journal_path(base)
    try:
        commit(journal, stage.renames, stage.shas)
        for staged, final in stage.renames:
            if staged in stage.shas:  # hashed while written: the new file is verified as it is
                write_stamp(final, stage.shas[staged])
    except BaseException as exc:
        if journal.exists():  # past the commit point: the next open finishes the renames
            if isinstance(exc, OSError):
                raise DatabaseError(f"{journal}: the change is committed but its renames were interrupted "
                                    f"({exc.strerror}); the next open finishes it") from None
            raise
        stage.discard()
        if isinstance(exc, OSError):
            raise _write_failed(exc, journal, base) from None
        raise


def _write_failed(exc: OSError, target: Path, base: Path) -> DatabaseError:
    if isinstance(exc, DatabaseError):
        return exc
    what = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    name = exc.filename or target
    return DatabaseError(f"{name}: {what} while writing a change of {base.name}; nothing was changed")


__all__ = ["change", "commit", "holds_lock", "journal_path", "lock_path", "reader_lock", "roll_forward",
           "writer_lock"]
