"""The duplicate finder on a database that grew in place: added segments take part, removed
items (tombstones, until a compaction) are in no pair and no group, and the groups are the
ones a database written afresh from the same live items gives."""

from __future__ import annotations

import numpy as np
import pytest
from _duplicates_db import make_collection, open_collection
from PIL import Image

from similar_images.db.build import build_index_files
from similar_images.db.changes import add_rows, remove_rows
from similar_images.db.vectors import save_vectors
from similar_images.duplicates import find_duplicates

REMOVED = ["beach_1.jpg", "copy_of_single.jpg", "single_03.jpg"]


def _groups(found) -> list[list[tuple[str, float]]]:
    return sorted(sorted((m.name, round(m.score, 4)) for m in g.members) for g in found.groups)


@pytest.mark.parametrize("index_type", ["flat", None])
def test_duplicates_after_adds_and_removes_equal_those_of_a_fresh_database(tmp_path, index_type):
    files = make_collection(tmp_path / "images", index_type=index_type)
    folder, names = files["folder"], list(files["names"])
    before = np.asarray(open_collection(files).database.vectors)
    # a new near-copy of tree_0 (its own pixels, so only its vector can group it) and an unrelated image
    Image.new("RGB", (310, 210), (10, 200, 30)).save(folder / "tree_new.jpg")
    Image.new("RGB", (50, 50), (200, 10, 30)).save(folder / "lonely_new.jpg")
    rng = np.random.default_rng(7)
    new = np.stack([before[names.index("tree_0.jpg")] + 0.02 * rng.standard_normal(before.shape[1]),
                    rng.standard_normal(before.shape[1])]).astype(np.float32)
    add_rows(files["vectors"], files["index"], new, ["tree_new.jpg", "lonely_new.jpg"], auto_compact=False)
    remove_rows(files["vectors"], files["index"], REMOVED, auto_compact=False)

    grown = open_collection(files)
    assert len(grown.database.deleted) == len(REMOVED)  # tombstones, not yet compacted
    found = find_duplicates(grown, threshold=0.9, k=5, show_progress=False)
    members = {m.name for g in found.groups for m in g.members}
    assert not members & set(REMOVED)
    tree = next({m.name for m in g.members} for g in found.groups if "tree_0.jpg" in {m.name for m in g.members})
    assert "tree_new.jpg" in tree and "lonely_new.jpg" not in members
    assert found.images == len(names) + 2 - len(REMOVED)
    assert all(grown.database.is_live(m.id) and grown.names[m.id] == m.name for g in found.groups for m in g.members)

    # the same live items written as a new database
    live = [i for i in range(len(names)) if names[i] not in REMOVED]
    fresh_path = folder / "fresh.txt.saved_predictions.npy"
    save_vectors(fresh_path, np.concatenate([before[live], new]),
                 {"model": {"name": "synthetic", "dim": before.shape[1]},
                  "names": [names[i] for i in live] + ["tree_new.jpg", "lonely_new.jpg"], "image_dir": str(folder)})
    fresh_index = None
    if index_type:
        fresh_index = folder / "fresh.faiss.index"
        build_index_files(fresh_path, fresh_index, index_type=index_type, show_progress=False)
    fresh = open_collection({"vectors": fresh_path, "index": fresh_index})
    assert _groups(found) == _groups(find_duplicates(fresh, threshold=0.9, k=5, show_progress=False))
