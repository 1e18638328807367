"""The index manifest (``I.manifest.json``): what an index file was built from, checked on open.

It records the index type, Faiss spec, search parameters, and what the index was built
from (``count``, ``dimension``, ``model``, and the ``vectors_sha256`` / ``names_sha256``
of the vectors manifest), plus the index file's own ``index_sha256`` and size. An index
that does not belong to its vectors is refused with one line naming the field.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from similar_images.db import index as ix
from similar_images.db.integrity import check_file_sha, require_fields
from similar_images.errors import DatabaseError
from similar_images.fileio.files import manifest_path, read_json, sha256_file

INDEX_FORMAT = 1


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# Fields every index manifest must hold, with their JSON types (a missing one is an error).
INDEX_FIELDS = {"count": (int,), "dimension": (int,), "model": (dict,), "index_bytes": (int,),
                "index_sha256": (str,), "vectors_sha256": (str,), "names_sha256": (str,)}
OPTIONAL_INDEX_FIELDS = {"pool_factor": (int,), "search_params": (dict,)}


def read_index_manifest(index_path: Path) -> dict[str, Any]:
    path = manifest_path(index_path)
    if not path.exists():
        if index_path.exists():
            raise DatabaseError(
                f"{path}: index manifest not found; rebuild the index with `similar-images build --force`"
            )
        raise DatabaseError(f"{index_path}: index file not found (build it with `similar-images build`)")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("kind") != "index":
        kind = manifest.get("kind") if isinstance(manifest, dict) else None
        raise DatabaseError(f"{path}: not an index manifest (field 'kind' is {kind!r})")
    require_fields(path, manifest, INDEX_FIELDS)
    require_fields(path, {k: v for k, v in manifest.items() if k in OPTIONAL_INDEX_FIELDS},
                   {k: t for k, t in OPTIONAL_INDEX_FIELDS.items() if k in manifest})
    if manifest.get("pool_factor", 1) < 1:
        raise DatabaseError(f"{path}: field 'pool_factor' must be at least 1, got {manifest['pool_factor']}")
    ix.check_search_params(manifest.get("search_params", {}), path)
    return manifest


def check_index_manifest(index_path: Path, im: dict[str, Any], vm: dict[str, Any]) -> None:
    """Refuse an index that was built from other vectors, names or model."""
    where = f"{index_path} does not belong to these vectors"
    if int(im.get("dimension", -1)) != int(vm["dimension"]):
        raise DatabaseError(
            f"{where}: index dimension {im.get('dimension')} != vectors dimension {vm['dimension']}"
        )
    if im.get("model") != vm["model"]:
        raise DatabaseError(f"{where}: {describe_model_difference(im.get('model'), vm['model'])}")
    if int(im.get("count", -1)) != int(vm["count"]):
        raise DatabaseError(f"{where}: index holds {im.get('count')} vectors, the vectors file {vm['count']}")
    for key, what in (("names_sha256", "names"), ("vectors_sha256", "vectors")):
        if im.get(key) != vm.get(key):
            raise DatabaseError(f"{where}: the {what} changed since the index was built (checksum differs)")


def edits_since_build(index_path: Path, vm: dict[str, Any]) -> list[str]:
    """What of vectors manifest ``vm`` was edited since the index was built from the very
    same vectors: ``"names"`` and/or ``"model description"``, or nothing.

    The index manifest's copies of ``names_sha256`` and ``model`` are the last evidence
    of such an edit (the vectors manifest vouches for neither on its own), so a rebuild
    (``verify --repair``, ``build --force``) must not replace them. Other vectors (their
    checksum differs: a new extraction, a compaction) make the old copies irrelevant, and
    an unreadable index manifest holds no evidence: both may be rebuilt.
    """
    try:
        recorded = read_json(manifest_path(index_path))
    except (DatabaseError, OSError):
        return []
    if not isinstance(recorded, dict) or recorded.get("vectors_sha256") != vm.get("vectors_sha256"):
        return []
    edited = []
    if isinstance(recorded.get("names_sha256"), str) and recorded["names_sha256"] != vm.get("names_sha256"):
        edited.append("names")
    if isinstance(recorded.get("model"), dict) and recorded["model"] != vm.get("model"):
        edited.append("model description")
    return edited


def refuse_edits_since_build(index_path: Path, vectors_path: Path, vm: dict[str, Any]) -> None:
    """Refuse to rebuild (and re-sign) over the edits :func:`edits_since_build` finds."""
    edited = edits_since_build(index_path, vm)
    if edited:
        raise DatabaseError(
            f"{manifest_path(vectors_path)}: the {' and the '.join(edited)} changed since {index_path.name} was built "
            "from these same vectors (edited by hand?); refusing to rebuild the index over them, which would "
            f"re-sign them; nothing was changed. If the change is yours, delete {index_path.name} and its "
            "manifest, then build again; if not, restore what was edited or extract again")


def describe_model_difference(index_model: Any, vectors_model: Any) -> str:
    if not isinstance(index_model, dict) or not isinstance(vectors_model, dict):
        return f"index built for model {index_model!r}, vectors made by {vectors_model!r}"
    keys = sorted(set(index_model) | set(vectors_model))
    diffs = [
        f"{k} {index_model.get(k)!r} vs {vectors_model.get(k)!r}"
        for k in keys
        if index_model.get(k) != vectors_model.get(k)
    ]
    return "index built for another model (index vs vectors: " + "; ".join(diffs) + ")"


def check_index_checksum(index_path: Path, im: dict[str, Any], *, deep: bool, fresh: bool = False) -> None:
    """The index file's size always; its sha256 when ``deep`` (a matching stamp counts unless ``fresh``)."""
    if not index_path.exists():
        raise DatabaseError(f"{index_path}: index file not found (build it with `similar-images build`)")
    size = index_path.stat().st_size
    if size != im["index_bytes"]:
        raise DatabaseError(f"{index_path}: {size} bytes, its manifest says {im['index_bytes']}; "
                            "run `similar-images verify --repair`")
    if deep:
        check_file_sha(index_path, im["index_sha256"], fresh=fresh, what="index")


def check_index_object(index_path: Path, index, vm: dict[str, Any]) -> None:
    if ix.index_dimension(index) != int(vm["dimension"]) or index.ntotal != int(vm["count"]):
        raise DatabaseError(
            f"{index_path}: index of {index.ntotal} x {ix.index_dimension(index)} vectors, "
            f"expected {vm['count']} x {vm['dimension']}"
        )


def index_manifest_for(index_path: Path, staged_index: Path, vm: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The index manifest of a freshly written index file, bound to vectors manifest ``vm``."""
    return {
        **base,
        "format": INDEX_FORMAT,
        "kind": "index",
        "count": int(vm["count"]),
        "dimension": int(vm["dimension"]),
        "model": vm["model"],
        "vectors_sha256": vm.get("vectors_sha256"),
        "names_sha256": vm.get("names_sha256"),
        "index_bytes": staged_index.stat().st_size,
        "index_sha256": sha256_file(staged_index),
        "updated": now_iso(),
    }


# An index is trained and tuned (lists, nprobe, pool) on the vectors it was built from; adds
# and compactions encode new rows without retraining. Past this many times those vectors,
# its recall is no longer the one measured, and `search` says so (once per database).
OUTGROWN_FACTOR = 2.0
_said_outgrown: set[tuple[str, int]] = set()


def outgrown(im: dict[str, Any], items: int) -> str | None:
    """Why an index built on ``im["trained_for"]`` vectors no longer fits ``items``, or None
    (also for indexes built before the field was recorded)."""
    built = im.get("trained_for")
    if not isinstance(built, int) or isinstance(built, bool) or built <= 0 or items <= OUTGROWN_FACTOR * built:
        return None
    return (f"the index was trained and tuned on {built:,} vectors and the database now holds {items:,} "
            f"(over {OUTGROWN_FACTOR:g} x): its lists and recall were chosen for the smaller collection; "
            "rebuild it with `similar-images build --force` or `similar-images compact --retrain`")


def say_outgrown(index_path: Path, im: dict[str, Any], items: int, log) -> None:
    """Log :func:`outgrown`'s warning once per index file and size."""
    why = outgrown(im, items)
    key = (str(index_path), int(im.get("trained_for") or 0))
    if why and key not in _said_outgrown:
        _said_outgrown.add(key)
        log.warning("%s: %s", index_path, why)
