"""A full check of a database, one verdict per file, and the repairs that are possible.

:func:`verify_database` re-reads everything (no verification stamps): the journal, the
vectors manifest, the vectors (checksum and finite values), the index manifest and the
index (checksum, and that it belongs to the vectors). :func:`repair` rebuilds a damaged
or missing index from vectors that verified; damaged vectors cannot be repaired here
(re-extract them), and neither can a refused journal (it is named; remove it by hand).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from similar_images.db import catalog, journal
from similar_images.db import index as ix
from similar_images.db.build import build_index_files
from similar_images.db.database import (
    Database,
    check_index_checksum,
    check_index_manifest,
    check_index_object,
    finish_interrupted_change,
    read_index_manifest,
    require_vectors,
)
from similar_images.db.index_manifest import edits_since_build
from similar_images.db.integrity import check_content
from similar_images.db.refine import check_refine_codes
from similar_images.db.vectors import load_vectors_manifest, open_vectors
from similar_images.errors import DatabaseError
from similar_images.fileio.files import manifest_path, refine_codes_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """The result of checking one file.

    Attributes:
        path: the file.
        ok: whether it passed.
        message: what was found ("ok: ..." details, or the fault).
        repairable: :func:`repair` can fix it.
    """

    path: Path
    ok: bool
    message: str
    repairable: bool = False

    def line(self) -> str:
        return f"{'ok' if self.ok else 'BAD'}  {self.path}: {self.message}"


def verify_database(vectors: str | os.PathLike, index: str | os.PathLike | None = None) -> list[Verdict]:
    """Check every file of a database fully; never raises for a damaged file.

    Args:
        vectors: the vectors file.
        index: the index file, or None to check the vectors only.
    """
    vectors_path = Path(vectors)
    verdicts = [_check_journal(vectors_path, index)] if journal.journal_path(vectors_path).exists() else []
    with journal.reader_lock(vectors_path):
        manifest = _attempt(verdicts, manifest_path(vectors_path), lambda: _vectors_manifest(vectors_path))
        vectors_ok = manifest is not None and _attempt(
            verdicts, vectors_path, lambda: _vectors_content(vectors_path, manifest)) is not None
        if index is not None:
            _check_index(verdicts, Path(index), manifest if vectors_ok else None)
    if vectors_ok and "generation" in manifest:  # an open of its own: outside the shared lock held above
        _attempt(verdicts, catalog.catalog_path(vectors_path), lambda: _catalog(vectors_path))
    if all(v.ok for v in verdicts):  # the very checks of an open, so verify never passes what open refuses
        _attempt(verdicts, vectors_path, lambda: (Database.open(vectors_path, index, fresh=True),
                                                  "opens as a search opens it"))
    return verdicts


def repair(vectors: str | os.PathLike, index: str | os.PathLike, verdicts: list[Verdict]) -> list[str]:
    """Fix what :func:`verify_database` found repairable; return one line per repair."""
    index = Path(index)
    if not any(v.repairable for v in verdicts):
        return []
    index_type = _recorded_index_type(index)
    build_index_files(vectors, index, index_type=index_type, force=True, show_progress=False,
                      refine="yes" if _recorded(index, "refine") is not None else "auto")
    return [f"repaired  {index}: rebuilt the {index_type} index from the verified vectors"]


# --- the checks --------------------------------------------------------------------------


def _attempt(verdicts: list[Verdict], path: Path, check, repairable: bool = False):
    """Run ``check`` (returns ``(value, message)``); record its verdict; the value or None."""
    try:
        value, message = check()
    except (DatabaseError, OSError, ValueError) as exc:
        verdicts.append(Verdict(path, False, _strip(str(exc), path), repairable))
        return None
    verdicts.append(Verdict(path, True, message))
    return value


def _strip(message: str, path: Path) -> str:
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _check_journal(vectors_path: Path, index) -> Verdict:
    """The journal checked and finished by the very call an open makes first, so a stale,
    foreign or tampered journal is refused here as there, and the checks that follow see
    the files an open would see, not a change half applied."""
    path = journal.journal_path(vectors_path)
    try:
        entries = journal.read_journal(path, journal.database_files(vectors_path, (index,) if index is not None else ()))
        finish_interrupted_change(vectors_path, index)
    except DatabaseError as exc:
        return Verdict(path, False, _strip(str(exc), path))
    return Verdict(path, True, f"an interrupted change of {len(entries)} file(s): its staged files match their "
                               "checksums; finished, as the next open would have")


def _vectors_manifest(vectors_path: Path):
    require_vectors(vectors_path)
    manifest = load_vectors_manifest(vectors_path)
    if "generation" in manifest:
        return manifest, f"{manifest['count']} base rows of generation {manifest['generation']}, required fields ok"
    return manifest, f"{manifest['count']} names, required fields and names checksum ok"


def _catalog(vectors_path: Path):
    db = Database.open(vectors_path, None, fresh=True)  # segments re-hashed, base names against their checksum
    segments = len(db.generation.segments)
    return db, (f"{db.id_count} items in {segments} segment(s), {len(db.deleted)} removed since the last "
                "compaction; segments and names match their checksums")


def _vectors_content(vectors_path: Path, manifest):
    array = open_vectors(vectors_path, manifest)
    check_content(vectors_path, manifest["vectors_sha256"], int(getattr(array, "offset", 0)), fresh=True)
    return array, f"{array.shape[0]} x {array.shape[1]} {array.dtype}, checksum matches, all values finite"


def _check_index(verdicts: list[Verdict], index: Path, vm) -> None:
    if vm is None:
        verdicts.append(Verdict(index, False, "not checked: the vectors did not verify"))
        return
    # names or model edited since the index was built from these vectors: a rebuild would re-sign them
    repairable = not edits_since_build(index, vm)
    im = _attempt(verdicts, manifest_path(index), lambda: (_index_manifest(index, vm), "fields ok, built from "
                                                           "these vectors and names"), repairable=repairable)
    if im is None:
        return

    def content():
        check_index_checksum(index, im, deep=True, fresh=True)
        loaded = ix.read_index(index)
        check_index_object(index, loaded, vm)
        ix.set_search_params(loaded, im.get("search_params", {}), manifest_path(index))  # as an open does
        return loaded, f"{loaded.ntotal} vectors, {im['index_bytes']} bytes, checksum matches"

    if _attempt(verdicts, index, content, repairable=True) is not None and "refine" in im:
        _attempt(verdicts, refine_codes_path(index), lambda: _refine_codes(index, im), repairable=True)


def _refine_codes(index: Path, im):
    check_refine_codes(index, im, deep=True, fresh=True)
    spec = im["refine"]
    return spec, f"{spec['rows']} rows of 8-bit codes, {spec['bytes']} bytes, checksum matches"


def _index_manifest(index: Path, vm):
    im = read_index_manifest(index)
    check_index_manifest(index, im, vm)
    return im


def _recorded_index_type(index: Path) -> str:
    """The type the damaged index was built as, when its manifest still says so."""
    recorded = _recorded(index, "index_type")
    return recorded if recorded in ix.INDEX_TYPES else ix.DEFAULT_INDEX_TYPE


def _recorded(index: Path, field: str):
    """A field of the (possibly damaged) index manifest, or None when it cannot be read."""
    try:
        return json.loads(manifest_path(index).read_text(encoding="utf-8")).get(field)
    except (OSError, ValueError, AttributeError):
        return None
