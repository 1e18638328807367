"""db/changes.py: one core for images and texts, told apart only by the name rule."""

import numpy as np
import pytest

from similar_images.db.changes import add_rows, remove_rows
from similar_images.db.database import Database
from similar_images.db.vectors import rule_of as name_rule
from similar_images.db.vectors import save_vectors
from similar_images.errors import DatabaseError


def _db(tmp_path, names, rule=None, kind="image"):
    path = tmp_path / "v.npy"
    manifest = {"model": {"name": "m", "kind": kind}, "names": names}
    if rule:
        manifest["name_rule"] = rule
    rng = np.random.default_rng(0)
    save_vectors(path, rng.standard_normal((len(names), 4)).astype(np.float32), manifest)
    return path


def test_paths_match_as_paths_texts_match_exactly(tmp_path):
    images = _db(tmp_path / "i", ["a/b.jpg", "c.jpg"])
    assert add_rows(images, None, np.ones((1, 4)), ["a//b.jpg"]).already_present == ["a//b.jpg"]
    texts = _db(tmp_path / "t", ["a/b", "c"], rule="text")
    assert add_rows(texts, None, np.ones((2, 4)), ["a//b", "./c"]).added == ["a//b", "./c"]
    # removing one text never takes another that names the same path
    assert remove_rows(texts, None, ["a/b"]) == ["a/b"]
    assert Database.open(texts).names == ["c", "a//b", "./c"]
    with pytest.raises(ValueError, match="not in the database: a//b//"):
        remove_rows(texts, None, ["a//b//"])


def test_name_rule_recorded_or_derived(tmp_path):
    assert name_rule({"model": {"kind": "text"}}) == "text"
    assert name_rule({"model": {"name": "vgg16"}}) == "path"
    assert name_rule({"model": {}, "name_rule": "text"}) == "text"
    with pytest.raises(DatabaseError, match="unknown name_rule 'url'"):
        name_rule({"model": {}, "name_rule": "url"})
    legacy = _db(tmp_path, ["x", "x/"], kind="text")  # a text database written before name_rule
    assert remove_rows(legacy, None, ["x"]) == ["x"]
