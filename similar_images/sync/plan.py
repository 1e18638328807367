"""Compare a folder with the catalog: what to add, change, rename, remove, and what is unchanged.

The comparison is rclip's and Immich's: ``(name, size, mtime_ns)`` first, and a file whose
three agree is unchanged without being read. Only the files that differ are hashed
(SHA-256 of their bytes):

* a new name whose hash is the hash of an item whose file is gone is a **rename**
  (the vector moves to the new name, the model does not run);
* a new name whose hash is that of an item still present is a **copy** (its vector is
  reused);
* a known name whose size or mtime differ is **changed** only if its hash differs too;
  otherwise its new size and mtime are recorded (**restamped**) and nothing is embedded;
* an item without recorded stats (made by ``extract`` or ``add``) is hashed once and
  adopted the same way;
* other new names are **added** (embedded), known names that are gone are **removed**.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from similar_images.db.catalog import item_key
from similar_images.db.file_stats import FileRecord, FileStat
from similar_images.sync.walk import Walk

log = logging.getLogger(__name__)

HASH_CHUNK = 1 << 20


@dataclass
class Plan:
    """What a sync will do; names are relative to the folder.

    Attributes:
        add: new files to embed.
        change: files whose content changed: re-embedded, replacing their row.
        rename: ``(old, new)``: moved files, their vector kept.
        copy: ``(source, new)``: new files with the content of a present item.
        remove: items whose file is gone.
        restamp: items whose file was touched (same content) or not yet recorded.
        stats: the :class:`FileStat` of every file in ``add``, ``change``, ``rename``,
            ``copy`` and ``restamp``.
        skipped: files that could not be read, ``{"path", "reason", "message"}``.
        unchanged: files whose size and mtime agree with the catalog (not read).
    """

    add: list[str] = field(default_factory=list)
    change: list[str] = field(default_factory=list)
    rename: list[tuple[str, str]] = field(default_factory=list)
    copy: list[tuple[str, str]] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    restamp: list[str] = field(default_factory=list)
    stats: dict[str, FileStat] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    unchanged: int = 0

    @property
    def to_embed(self) -> list[str]:
        return self.add + self.change

    @property
    def empty(self) -> bool:
        """Nothing to write (skipped files aside)."""
        return not (self.add or self.change or self.rename or self.copy or self.remove or self.restamp)

    def lines(self) -> list[str]:
        """What it would do, one line a file (``--dry-run``)."""
        return ([f"add     {n}" for n in self.add] + [f"change  {n}" for n in self.change]
                + [f"rename  {a} -> {b}" for a, b in self.rename] + [f"copy    {a} -> {b}" for a, b in self.copy]
                + [f"remove  {n}" for n in self.remove])


def file_stat(folder: Path, name: str, seen: tuple[int, int]) -> FileStat:
    """Hash a file; its size and mtime as the walk saw them (a later change shows at the next sync)."""
    digest = hashlib.sha256()
    with open(folder / name, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return FileStat(seen[0], seen[1], digest.hexdigest())


def path_key(name: str) -> str:
    """:func:`~similar_images.db.catalog.item_key` of a path, without its cost for a name that is
    already normal (a walk's names, a sync's own names): 40,504 of them are compared per sync."""
    if os.name != "nt" and "//" not in name and "./" not in name and not name.startswith("/") \
            and not name.endswith(("/", "/.")) and name != ".":
        return name
    return item_key("path", name)


def make_plan(folder: Path, walk: Walk, records: list[FileRecord],
              live_by_sha: Callable[[list[str]], dict[str, list[str]]], *, progress=None) -> Plan:
    """Compare ``walk`` (the folder now) with ``records`` (the catalog's live items).

    Args:
        live_by_sha: ``hashes -> {sha256: [names of live items with that content]}``.
        progress: ``total -> a tqdm bar`` advanced per file hashed (a context manager), or None.
    """
    plan = Plan(skipped=list(walk.skipped))
    by_key = {path_key(r.name): r for r in records}
    seen_keys, new, suspect, adopt = set(), [], [], []
    for name, (size, mtime_ns) in walk.files.items():
        key = path_key(name)
        seen_keys.add(key)
        record = by_key.get(key)
        if record is None:
            new.append(name)
        elif record.sha256 is None or record.size is None or record.mtime_ns is None:
            adopt.append((name, record))
        elif (record.size, record.mtime_ns) == (size, mtime_ns):
            plan.unchanged += 1
        else:
            suspect.append((name, record))
    gone = [r for k, r in by_key.items() if k not in seen_keys and walk.covers(r.name)]
    to_hash = sorted(new) + sorted(n for n, _ in suspect + adopt)
    if progress is None or not to_hash:
        hashed = _hash_all(folder, walk, to_hash, plan, None)
    else:
        with progress(len(to_hash)) as bar:
            hashed = _hash_all(folder, walk, to_hash, plan, bar)
    for name, record in sorted(suspect, key=lambda x: x[0]):
        if name not in hashed:
            continue  # unreadable now: its row stays until it can be read (skipped, retried next time)
        same = hashed[name].sha256 == record.sha256  # touched only: its new size and mtime are recorded
        (plan.restamp if same else plan.change).append(record.name)
        plan.unchanged += same
        plan.stats[record.name] = hashed[name]
    for name, record in adopt:
        if name in hashed:
            plan.restamp.append(record.name)
            plan.stats[record.name] = hashed[name]
            plan.unchanged += 1
    _match_new(plan, sorted(n for n in new if n in hashed), hashed, gone, live_by_sha)
    return plan


def _hash_all(folder: Path, walk: Walk, names: list[str], plan: Plan, progress) -> dict[str, FileStat]:
    hashed = {}
    for name in names:
        try:
            hashed[name] = file_stat(folder, name, walk.files[name])
        except FileNotFoundError:
            pass  # deleted since the walk: the next sync removes it
        except OSError as exc:
            plan.skipped.append({"path": name, "reason": "unreadable",
                                 "message": f"{name}: cannot be read ({exc.strerror or exc})"})
        if progress is not None:
            progress.update(1)
    return hashed


def _match_new(plan: Plan, new: list[str], hashed: dict[str, FileStat], gone: list[FileRecord],
               live_by_sha: Callable[[list[str]], dict[str, list[str]]]) -> None:
    """Renames (the content of a file that is gone), copies (of a present item), or adds."""
    gone_by_sha: dict[str, list[str]] = {}
    for record in sorted(gone, key=lambda r: r.name):
        if record.sha256:
            gone_by_sha.setdefault(record.sha256, []).append(record.name)
    renamed = set()
    # a present item is a copy's source only if its row stays as it is during this sync
    moving = set(plan.change) | {r.name for r in gone}
    live = live_by_sha([hashed[n].sha256 for n in new]) if new else {}
    for name in new:
        stat = hashed[name]
        plan.stats[name] = stat
        if gone_by_sha.get(stat.sha256):
            old = gone_by_sha[stat.sha256].pop(0)
            plan.rename.append((old, name))
            renamed.add(old)
        elif sources := [s for s in live.get(stat.sha256, ()) if s not in moving]:
            plan.copy.append((sources[0], name))
        else:
            plan.add.append(name)
    plan.remove = [r.name for r in sorted(gone, key=lambda r: r.name) if r.name not in renamed]
