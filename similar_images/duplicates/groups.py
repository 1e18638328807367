"""Grouping rules and the keeper rule, on plain arrays.

Two rules turn scored pairs into groups (:data:`RULES`):

* ``"components"``: connected components of the pairs graph (single linkage). Cheap,
  but it chains: A ~ B and B ~ C put A and C together even when A and C are unlike.
* ``"centre"`` (the default): within each component, the member with the most
  neighbours (then the highest summed score, then the lowest id) is a centre; the
  members whose exact cosine to it is at least the threshold form its group; the rest
  are grouped again the same way. Every member of a group is then a near-duplicate of
  its centre, so a group cannot drift across a chain of near-misses.

Byte-identical files are joined after either rule, whatever their scores.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from similar_images.duplicates.pairs import Pairs

CHUNK = 8192
RULES = ("centre", "components")
DEFAULT_RULE = "centre"


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise ValueError(f"unknown grouping rule {rule!r}; choose one of: {', '.join(RULES)}")
    return rule


def components(n: int, a, b) -> np.ndarray:
    """``(n,)`` int64 component label of each of ``n`` nodes joined by edges ``a[i]-b[i]``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (np.asarray(a), np.asarray(b))), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def _members_by_label(labels: np.ndarray) -> list[np.ndarray]:
    """Node ids of each label used by two or more nodes, sorted."""
    order = np.argsort(labels, kind="stable")
    cuts = np.flatnonzero(np.diff(labels[order])) + 1
    return [part for part in np.split(order, cuts) if len(part) > 1]


def cosines_to(vectors, row: int, members: np.ndarray, *, chunk: int = CHUNK) -> np.ndarray:
    """``(m,)`` exact cosines of the rows ``members`` (sorted ids read the memory map in
    order) to row ``row``, read ``chunk`` rows at a time so a huge group stays cheap."""
    c = np.asarray(vectors[row], dtype=np.float32)
    c = c / max(float(np.linalg.norm(c)), 1e-12)
    out = np.empty(len(members), dtype=np.float32)
    for start in range(0, len(members), chunk):
        rows = np.asarray(vectors[members[start:start + chunk]], dtype=np.float32)  # (<=chunk, d)
        out[start:start + chunk] = rows @ c / np.maximum(np.linalg.norm(rows, axis=1), 1e-12)
    return out


def centre_split(members: np.ndarray, pairs: Pairs, vectors, threshold: float) -> list[np.ndarray]:
    """Split one component by the centre rule (see the module docstring).

    Args:
        members: the component's ids, sorted.
        pairs: the component's pairs (both ends in ``members``).
    """
    m = len(members)
    la, lb = np.searchsorted(members, pairs.a), np.searchsorted(members, pairs.b)  # local positions
    alive = np.ones(m, dtype=bool)
    groups = []
    while alive.sum() > 1:
        live = alive[la] & alive[lb]
        if not live.any():
            break
        ends = np.concatenate([la[live], lb[live]])
        degree = np.bincount(ends, minlength=m)
        summed = np.bincount(ends, weights=np.concatenate([pairs.score[live]] * 2), minlength=m)
        left = np.flatnonzero(alive)
        centre = int(left[np.lexsort((left, -summed[left], -degree[left]))[0]])
        joined = np.union1d(left[cosines_to(vectors, int(members[centre]), members[left]) >= threshold], [centre])
        if len(joined) > 1:
            groups.append(members[joined])
        alive[joined] = False
    return groups


def _pairs_by_component(labels: np.ndarray, pairs: Pairs) -> dict[int, Pairs]:
    """The pairs of each component (both ends share a label), in one sort."""
    of = labels[pairs.a]
    order = np.argsort(of, kind="stable")
    cuts = np.flatnonzero(np.diff(of[order])) + 1
    return {int(of[part[0]]): Pairs(pairs.a[part], pairs.b[part], pairs.score[part])
            for part in np.split(order, cuts) if len(part)}


def group_ids(n: int, pairs: Pairs, identical: list[list[int]], *, vectors, threshold: float,
              rule: str = DEFAULT_RULE) -> list[np.ndarray]:
    """Groups of two or more of the ``n`` images, as sorted id arrays, largest first.

    Args:
        n: the number of images.
        pairs: near-duplicate pairs (scores at least ``threshold``).
        identical: sets of byte-identical images (joined whatever the rule).
        vectors: ``(n, d)`` raw vectors (for the centre rule's exact scores).
        threshold: the lowest cosine of a near-duplicate.
        rule: one of :data:`RULES`.
    """
    check_rule(rule)
    labels = components(n, pairs.a, pairs.b)
    groups = _members_by_label(labels)
    if rule == "centre":
        by_component = _pairs_by_component(labels, pairs) if any(len(g) > 2 for g in groups) else {}
        groups = [part for g in groups for part in
                  (centre_split(g, by_component[int(labels[g[0]])], vectors, threshold) if len(g) > 2 else [g])]
    # Join byte-identical files: chain each group and each identical set, then re-join.
    sets = [np.asarray(g) for g in groups] + [np.asarray(same) for same in identical if len(same) > 1]
    if not sets:
        return []
    edge_a = np.concatenate([np.full(len(g) - 1, g[0]) for g in sets])
    edge_b = np.concatenate([g[1:] for g in sets])
    joined = _members_by_label(components(n, edge_a, edge_b))
    return sorted(joined, key=lambda g: (-len(g), int(g[0])))


class FileFacts(NamedTuple):
    """What the keeper rule looks at: pixels, bytes and the name."""

    width: int
    height: int
    bytes: int
    name: str


def file_facts(path: str | os.PathLike, name: str) -> FileFacts:
    """Size in pixels (from the header, no decoding) and in bytes; zeros if unreadable."""
    from PIL import Image

    try:
        size = os.stat(path).st_size
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return FileFacts(0, 0, size if "size" in locals() else 0, name)
    return FileFacts(width, height, size, name)


def keeper_order(facts: list[FileFacts]) -> list[int]:
    """Positions of ``facts`` best keeper first: highest resolution (pixels), then largest
    file, then shortest name (then the name, so the order is total)."""
    return sorted(range(len(facts)), key=lambda i: (-facts[i].width * facts[i].height, -facts[i].bytes,
                                                    len(facts[i].name), facts[i].name))
