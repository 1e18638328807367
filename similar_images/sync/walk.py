"""Walk a folder: the image files in it, with their size and modification time, and nothing read.

Which files count: regular files (symbolic links are not followed, neither to files nor
to folders) whose extension is one of :data:`IMAGE_SUFFIXES`, in any letter case, in the
folder and its sub-folders; names starting with ``.`` (hidden files and folders, and the
temporary files editors and ``rsync`` write before renaming them) are skipped. The
extension decides, not the content: sniffing would read every file on every sync, and a
sync of an unchanged folder reads none. A file with an image extension that is not an
image is skipped when it is decoded, with the reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from similar_images.collection import IMAGE_SUFFIXES


@dataclass
class Walk:
    """What :func:`walk_folder` found.

    Attributes:
        files: ``name -> (size, mtime_ns)``; names are relative to the folder, with ``/``.
        unreadable: folders that could not be listed (relative names); the catalog's items
            under them are left alone, not taken for deleted.
        skipped: files that cannot be stored (a name that is not UTF-8), as
            ``{"path", "reason", "message"}``.
    """

    files: dict[str, tuple[int, int]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def covers(self, name: str) -> bool:
        """Whether the walk saw the place of ``name`` (False under a folder it could not list)."""
        return not any(name == d or name.startswith(d + "/") for d in self.unreadable)


_EXTENSIONS = frozenset(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES)


def is_image_name(name: str) -> bool:
    """Whether a file name counts as an image (by extension; hidden names never)."""
    base = name.rpartition("/")[2]
    stem, dot, extension = base.rpartition(".")
    return bool(dot and stem) and not base.startswith(".") and extension.lower() in _EXTENSIONS


def is_hidden(relative: str) -> bool:
    """Whether any part of a relative path starts with ``.`` (skipped by the walk)."""
    return any(part.startswith(".") for part in Path(relative).parts if part not in (".", ".."))


def walk_folder(folder: str | os.PathLike) -> Walk:
    """Every image file under ``folder`` with ``(size, mtime_ns)``: one ``stat`` each, no read."""
    root = os.fspath(folder)
    walk, pending = Walk(), [""]
    while pending:
        relative = pending.pop()
        try:
            with os.scandir(os.path.join(root, relative) if relative else root) as entries:
                entries = list(entries)
        except FileNotFoundError:
            continue  # removed while we walked: its files are gone too
        except OSError as exc:
            if not relative:
                raise
            walk.unreadable.append(relative)
            walk.skipped.append({"path": relative, "reason": "unreadable",
                                 "message": f"{relative}: folder not readable ({exc.strerror or exc})"})
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            name = f"{relative}/{entry.name}" if relative else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(name)
                elif entry.is_file(follow_symlinks=False) and is_image_name(entry.name):
                    stat = entry.stat(follow_symlinks=False)
                    _add(walk, name, stat.st_size, stat.st_mtime_ns)
            except FileNotFoundError:
                continue
    return walk


def _add(walk: Walk, name: str, size: int, mtime_ns: int) -> None:
    try:
        name.isascii() or name.encode("utf-8")  # a name os.fsdecode could not decode holds surrogates
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        walk.skipped.append({"path": shown, "reason": "non-UTF-8 name",
                             "message": f"{shown}: the file name is not UTF-8; rename it to add it"})
        return
    walk.files[name] = (size, mtime_ns)
