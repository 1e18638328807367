"""The INT8 calibration sample: a deterministic choice of the collection's own images.

The files are ordered by the SHA-256 of their name (so the choice does not depend on the
order of the file list) and the first ``calibration_size + holdout_size`` are taken. Most
calibrate the model; the rest are held out for the fidelity report. The sample's identity
is the SHA-256 of the chosen files' bytes and the split, recorded in the database.

Order by name hash keeps a sample's members chosen while the list is re-ordered; when the
list grows, new names may sort before them, so a grown list's own sample differs, and
:func:`similar_images.models.int8_cache.reusable_folder` finds the earlier model instead
(its members are all still in the list).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)

MIN_HOLDOUT = 11  # top-10 agreement needs 10 neighbours besides the image itself


class Sample(NamedTuple):
    """The sampled image files, split, and the SHA-256 of their bytes and the split."""

    calibration: list[Path]
    holdout: list[Path]
    sha256: str
    file_sha256: list[str] = []  # SHA-256 of each file's bytes: calibration files, then held-out ones


def calibration_sample(paths: Sequence[str | os.PathLike], size: int, holdout_size: int) -> Sample:
    """Up to ``size + holdout_size`` files, first by SHA-256 of their name, split in two.

    Files that cannot be read are left out. The last ``holdout_size`` files are held out;
    with fewer files than asked for, the same share of them (at least 11).
    """
    ordered = sorted((Path(p) for p in paths), key=lambda p: (_name_hash(p.name), str(p)))
    chosen: list[tuple[Path, str]] = []  # (path, sha256 of its bytes)
    for path in ordered:
        if len(chosen) == size + holdout_size:
            break
        try:
            chosen.append((path, hashlib.sha256(path.read_bytes()).hexdigest()))
        except OSError as exc:
            log.info("calibration: skipping %s (%s)", path, exc.strerror or exc)
    share = round(len(chosen) * holdout_size / max(1, size + holdout_size))  # = holdout_size when enough files
    held = min(holdout_size, max(MIN_HOLDOUT, share), len(chosen))
    split = {"calibration": [h for _, h in chosen[: len(chosen) - held]],
             "holdout": [h for _, h in chosen[len(chosen) - held :]]}
    digest = hashlib.sha256(json.dumps(split).encode()).hexdigest()
    return Sample([p for p, _ in chosen[: len(chosen) - held]], [p for p, _ in chosen[len(chosen) - held :]], digest,
                  [h for _, h in chosen])


def _name_hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()
