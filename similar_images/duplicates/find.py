"""Find the near-duplicates of a whole collection, or of one image.

Example::

    from similar_images.search import SimilarImages
    from similar_images.duplicates import find_duplicates

    db = SimilarImages.open("photos.txt.saved_predictions.npy")
    found = find_duplicates(db, threshold="auto", k=10)
    for group in found.groups:
        print(group.keeper.path, [m.path for m in group.removable])

Nothing here deletes or moves a file: the results only suggest which to keep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from similar_images.duplicates import groups as grouping
from similar_images.duplicates.pairs import DEFAULT_POOL_FACTOR, identical_files, near_pairs
from similar_images.duplicates.threshold import AUTO, resolve_threshold

log = logging.getLogger(__name__)

DEFAULT_K = 10


@dataclass(frozen=True)
class Member:
    """One image of a duplicate group.

    Attributes:
        id: row id in the database.
        name: the name in the manifest.
        path: where the file is (``image_dir / name``).
        score: exact cosine to the group's keeper (1.0 for the keeper).
        keep: the suggestion: True for the keeper only.
        identical: the file has the same bytes as another member of the group.
        width, height, bytes: what the keeper rule compared (0 if unreadable).
    """

    id: int
    name: str
    path: str
    score: float
    keep: bool
    identical: bool
    width: int
    height: int
    bytes: int


@dataclass(frozen=True)
class Group:
    """A group of duplicates: the keeper first, then the others by score, best first."""

    number: int
    members: tuple[Member, ...]

    @property
    def keeper(self) -> Member:
        return self.members[0]

    @property
    def removable(self) -> tuple[Member, ...]:
        return self.members[1:]


@dataclass(frozen=True)
class Duplicates:
    """What :func:`find_duplicates` found, and with which settings."""

    groups: tuple[Group, ...]
    threshold: float
    rule: str
    k: int
    images: int
    pairs: int
    identical_sets: int
    model: dict = field(default_factory=dict)

    def remove_paths(self) -> list[str]:
        """The paths a user may delete: every member but the keeper, group by group."""
        return [m.path for g in self.groups for m in g.removable]


def find_duplicates(db, *, threshold: float | str = AUTO, k: int = DEFAULT_K, rule: str = grouping.DEFAULT_RULE,
                    hash_files: bool = True, batch_size: int = 1024, pool_factor: int = DEFAULT_POOL_FACTOR,
                    show_progress: bool = True) -> Duplicates:
    """Group the near-duplicate and byte-identical images of ``db``.

    Args:
        db: an open :class:`~similar_images.search.SimilarImages`.
        threshold: the lowest cosine of a near-duplicate, or ``"auto"``: the model's
            calibrated default (:mod:`similar_images.duplicates.threshold`).
        k: neighbours examined per image.
        rule: ``"centre"`` (default) or ``"components"`` (see :mod:`.groups`).
        hash_files: also group byte-identical files (SHA-256), whatever their scores.
        batch_size: images searched at a time (bounds memory).
        pool_factor: with an index, ``pool_factor * (k + 1)`` candidates per image are
            re-scored exactly.
        show_progress: progress bars with the rate and ETA.

    Raises:
        ThresholdError: ``"auto"`` for a model without a calibrated threshold.
        ValueError: a bad ``k`` or ``rule``.
    """
    grouping.check_rule(rule)
    cosine = resolve_threshold(threshold, db.model)
    n = db.database.id_count  # ids of removed items (until compaction) are in no pair and no group
    live = db.database.live_ids()
    paths = [str(Path(db.image_dir) / name) for name in db.names]
    identical = [[int(live[p]) for p in same] for same in identical_files([paths[i] for i in live],
                                                                          show_progress=show_progress)] if hash_files else []
    pairs = near_pairs(db, threshold=cosine, k=k, batch_size=batch_size, pool_factor=pool_factor,
                       show_progress=show_progress)
    vectors = db.database.vectors
    ids = grouping.group_ids(n, pairs, identical, vectors=vectors, threshold=cosine, rule=rule)
    same_bytes = {i: frozenset(s) for s in identical for i in s}
    groups = tuple(_group(number, members, db.names, paths, vectors, same_bytes)
                   for number, members in enumerate(ids, 1))
    log.info("%d images: %d pairs >= %.3f, %d identical sets, %d groups", len(live), len(pairs), cosine,
             len(identical), len(groups))
    return Duplicates(groups, cosine, rule, k, len(live), len(pairs), len(identical), dict(db.model))


def _group(number: int, members: np.ndarray, names, paths, vectors, same_bytes) -> Group:
    facts = [grouping.file_facts(paths[i], names[i]) for i in members]
    order = grouping.keeper_order(facts)
    keeper = int(members[order[0]])
    scores = grouping.cosines_to(vectors, keeper, members)  # (m,) cosines to the keeper
    scores[order[0]] = 1.0
    rest = sorted(order[1:], key=lambda p: (-scores[p], int(members[p])))
    in_group = frozenset(int(i) for i in members)
    out = []
    for p in [order[0], *rest]:
        i = int(members[p])
        out.append(Member(i, names[i], paths[i], round(float(scores[p]), 6), p == order[0],
                          len(same_bytes.get(i, frozenset()) & in_group) > 1, facts[p].width, facts[p].height,
                          facts[p].bytes))
    return Group(number, tuple(out))


def duplicates_of(db, image_id: int, *, threshold: float | str = AUTO, k: int = DEFAULT_K) -> list:
    """The near-duplicates of database image ``image_id``: its neighbours scoring at least
    the threshold (exact cosines), best first, the image itself left out.

    A plain function for the notebook and for an HTTP service
    (``GET /api/images/{id}/duplicates``).

    Args:
        db: an open :class:`~similar_images.search.SimilarImages`.
        image_id: row id of the image.
        threshold: a cosine, or ``"auto"`` (the model's calibrated default).
        k: neighbours examined.

    Returns:
        ``list[SearchResult]``.

    Raises:
        ThresholdError: ``"auto"`` for a model without a calibrated threshold.
        ValueError: a bad id or ``k``.
    """
    cosine = resolve_threshold(threshold, db.model)
    hits = db.search(int(image_id), k=k + 1)
    return [hit for hit in hits if hit.id != image_id and hit.score >= cosine][:k]
