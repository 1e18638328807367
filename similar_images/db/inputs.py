"""One set of input rules for the names a user gives (``extract``'s file list, ``add``'s files).

:func:`check_names` keeps the names that may be read and skips the others, each with a
reason (``{"path", "reason", "message"}``, as unreadable images are skipped):

* ``"duplicate"``: the same file as an earlier name (compared by resolved path, so
  ``a.jpg``, ``./a.jpg``, ``../imgs/a.jpg`` and its absolute path are one file);
* ``"outside image folder"``: a relative name that resolves outside the image folder
  (``../../etc/passwd``); absolute names are the user's own choice and are kept;
* ``"refused url"``: an ``http(s)://`` line, unless ``allow_urls`` (``--allow-urls``);
* ``"not utf-8"``: a file name that is not valid UTF-8 (it could not be stored in the
  manifest); the rest are kept.
"""

from __future__ import annotations

import os
from typing import NamedTuple

INPUT_SKIP_REASONS = ("duplicate", "outside image folder", "refused url", "not utf-8")


class CheckedNames(NamedTuple):
    """The names kept, in order, and ``{"path", "reason", "message"}`` for each skipped one."""

    names: list[str]
    skipped: list[dict[str, str]]


def check_names(names, image_dir: str | os.PathLike | None, *, allow_urls: bool = False,
                known: set[str] | None = None) -> CheckedNames:
    """Apply the input rules to ``names`` (relative to ``image_dir``, or absolute).

    Args:
        names: the names, as given.
        image_dir: the folder relative names are read from (None: the current folder).
        allow_urls: keep ``http(s)://`` names (fetched when read) instead of skipping them.
        known: resolved paths already taken (for example by the database): skipped as duplicates.
    """
    root = os.path.realpath(os.fspath(image_dir) if image_dir else ".")
    seen: dict[str, str] = {}
    taken = known or set()
    kept, skipped = [], []
    for name in names:
        name = os.fspath(name)
        reason, message = _rule(name, root, allow_urls, seen, taken)
        if reason:
            skipped.append({"path": _printable(name), "reason": reason, "message": message})
        else:
            kept.append(name)
    return CheckedNames(kept, skipped)


def _rule(name: str, root: str, allow_urls: bool, seen: dict[str, str], taken: set[str]) -> tuple[str, str]:
    if not _is_utf8(name):
        return "not utf-8", f"{_printable(name)}: the file name is not UTF-8; rename it to add it"
    if "://" in name:
        if allow_urls:
            return "", ""
        return "refused url", f"{name}: a URL in a file list (use --allow-urls to fetch URLs)"
    resolved = os.path.realpath(os.path.join(root, name))
    if not os.path.isabs(name) and os.path.commonpath([resolved, root]) != root:
        return "outside image folder", f"{name}: resolves to {resolved}, outside the image folder {root}"
    if resolved in seen or resolved in taken:
        first = seen.get(resolved, "the database")
        return "duplicate", f"{name}: the same file as {first}"
    seen[resolved] = name
    return "", ""


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # surrogate escapes: bytes that were not UTF-8
        return False
    return True


def _printable(name: str) -> str:
    return os.fsencode(name).decode("utf-8", "backslashreplace") if not _is_utf8(name) else name
