"""The refine stage (db/refine.py): 8-bit codes beside the index cut the index's candidates
to the best 2 x k before the exact rows are read; built, searched, compacted, verified and
repaired like the index it belongs to."""

from __future__ import annotations

import os

import numpy as np
import pytest
from _index_data import copy_database, indexed_database
from test_verify_matches_open import flip_byte, run, search, where

from similar_images.db import ranking, refine
from similar_images.db.changes import add_rows, remove_rows
from similar_images.db.compaction import compact
from similar_images.db.database import Database
from similar_images.db.ranking import exact_search, normalize
from similar_images.db.recall import recall_of_ids
from similar_images.db.segments import Rows
from similar_images.errors import DatabaseError
from similar_images.fileio.files import manifest_path, refine_codes_path
from similar_images.search import SimilarImages

N, DIM, K = 3000, 64, 10


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return indexed_database(tmp_path_factory.mktemp("refine"), N, DIM, index_type="ivfpq", nlist=16, pq=8,
                            refine="yes")


@pytest.fixture
def db(tmp_path, template):
    folder, vectors = template
    vectors_path, index_path = copy_database(folder, tmp_path)
    return vectors_path, index_path, vectors


def test_auto_starts_at_its_size_and_an_unknown_choice_is_refused():
    assert not refine.refine_wanted("auto", refine.REFINE_FROM - 1) and refine.refine_wanted("auto", refine.REFINE_FROM)
    assert refine.refine_wanted("yes", 10) and not refine.refine_wanted("no", 10 * refine.REFINE_FROM)
    with pytest.raises(ValueError, match="unknown --refine 'maybe'"):
        refine.refine_wanted("maybe", 10)


def test_the_build_writes_codes_of_every_row_and_searches_go_through_them(db, monkeypatch):
    vectors_path, index_path, vectors = db
    im = Database.open(vectors_path, index_path).index_manifest
    spec = im["refine"]
    codes = np.load(refine_codes_path(index_path), mmap_mode="r")
    assert codes.shape == (N, DIM) and codes.dtype == np.uint8 and spec["rows"] == N
    sq = refine.quantizer_from(spec["ranges"], DIM)
    assert np.array_equal(codes[:50], sq.compute_codes(normalize(vectors[:50])))  # row i's codes at row i
    assert im["recall"]["recall_at_10"] >= 0.9  # measured through the stage, as a search goes

    narrowed = []
    real = refine.RefineStage.narrow
    monkeypatch.setattr(refine.RefineStage, "narrow",
                        lambda self, *a: narrowed.append(real(self, *a)) or narrowed[-1])
    opened = SimilarImages.open(vectors_path, index_path)
    queries = vectors[::150] + 0.01  # 20 queries near rows, not rows
    found = np.array([[h.id for h in row] for row in opened.search(queries, k=K)])
    assert narrowed and all(n.shape[1] <= spec["exact_factor"] * K for n in narrowed)
    _, exact = exact_search(vectors, queries, K)
    assert recall_of_ids(vectors, queries, found, exact, K).mean() >= 0.9
    (hit,) = opened.search(vectors[7], k=1)
    assert hit.id == 7 and hit.score == pytest.approx(1.0, abs=1e-5)  # exact scores, not the codes'


def test_narrow_keeps_the_best_by_codes_and_every_row_the_codes_do_not_cover():
    rng = np.random.default_rng(3)
    rows = normalize(rng.standard_normal((500, 32)))
    sq = refine.train_quantizer(rows)
    stage = refine.RefineStage(sq.compute_codes(rows), sq, exact_factor=2)
    query = rows[:1] + 0.05 * rng.standard_normal((1, 32)).astype(np.float32)
    pool = np.concatenate([rng.choice(500, 100, replace=False), [-1, 500, 503]])[None, :]  # 500, 503: added rows
    (kept,) = stage.narrow(query, pool, 5)
    coded = kept[(kept >= 0) & (kept < 500)]
    assert len(coded) == 10 and {500, 503} <= set(kept.tolist())
    candidates = pool[0][(pool[0] >= 0) & (pool[0] < 500)]
    best_exact = candidates[np.argsort(-(rows[candidates] @ normalize(query)[0]))[:5]]
    assert set(best_exact.tolist()) <= set(coded.tolist())  # 8-bit codes keep the true top 5 among their 10


def test_compaction_writes_the_codes_of_the_new_ids(db):
    vectors_path, index_path, vectors = db
    new = np.random.default_rng(5).random((30, DIM), dtype=np.float32)
    add_rows(vectors_path, index_path, new, [f"n{i}.jpg" for i in range(30)], auto_compact=False)
    remove_rows(vectors_path, index_path, ["v00000.jpg", "v00010.jpg", "n3.jpg"], auto_compact=False)
    added = SimilarImages.open(vectors_path, index_path)
    (hit,) = added.search(new[5], k=1)  # an added row: beyond the codes, re-ranked exactly
    assert hit.path == "n5.jpg" and hit.score == pytest.approx(1.0, abs=1e-5)
    compact(vectors_path, index_path)
    opened = Database.open(vectors_path, index_path, fresh=True)
    live = np.asarray(opened.vectors)  # ids 0..n-1 again
    assert opened.refine.rows == len(live) == N + 27
    sq = opened.refine.sq
    assert np.array_equal(np.asarray(opened.refine.codes), sq.compute_codes(normalize(live)))
    opened.verify(deep=True)
    (hit,) = SimilarImages.open(vectors_path, index_path).search(new[5], k=1)
    assert hit.path == "n5.jpg" and hit.score == pytest.approx(1.0, abs=1e-5)


def test_a_build_without_the_stage_removes_the_old_codes(db):
    vectors_path, index_path, _ = db
    assert run("build", "-i", vectors_path, "-o", index_path, "--force", "--refine", "no", "--no-progress",
               "--nlist", 16).exit_code == 0
    assert not refine_codes_path(index_path).exists() and "refine" not in Database.open(vectors_path,
                                                                                      index_path).index_manifest
    assert not list(index_path.parent.glob("*.refine.npy*"))  # nor its verification stamp
    built = run("build", "-i", vectors_path, "-o", index_path, "--force", "--refine", "yes", "--no-progress",
                "--nlist", 16)
    assert built.exit_code == 0 and f"refine stage: 8-bit codes of {N} rows" in built.output
    assert Database.open(vectors_path, index_path).refine.rows == N


def codes_byte(vectors, index):
    path = refine_codes_path(index)
    flip_byte(path, path.stat().st_size - 100)


def codes_field(**changes):
    def corrupt(vectors, index):
        import json

        im = json.loads(manifest_path(index).read_text())
        im["refine"] = {**im["refine"], **changes}
        manifest_path(index).write_text(json.dumps(im))
    return corrupt


DAMAGE = {
    "codes_byte_flipped": codes_byte,
    "codes_missing": lambda v, i: refine_codes_path(i).unlink(),
    "codes_truncated": lambda v, i: refine_codes_path(i).write_bytes(refine_codes_path(i).read_bytes()[:-DIM]),
    "codes_rows": codes_field(rows=N - 1),
    "codes_quantizer": codes_field(quantizer="4bit"),
    "codes_ranges": codes_field(ranges=[0.0]),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damaged_codes_are_refused_by_open_and_verify_and_repaired(db, name):
    vectors_path, index_path, _ = db
    DAMAGE[name](vectors_path, index_path)
    with pytest.raises(DatabaseError, match="refine"):
        Database.open(vectors_path, index_path, fresh=True)
    verified = run("verify", *where(vectors_path, index_path))
    opened = search(vectors_path, index_path)
    assert verified.exit_code == 1 and opened.exit_code == 1, f"{verified.output}\n{opened.output}"
    assert "\nBAD  " in f"\n{verified.output}" and opened.output.strip().splitlines()[-1].startswith("error: ")
    repaired = run("verify", *where(vectors_path, index_path), "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert Database.open(vectors_path, index_path, fresh=True).refine.rows == N  # rebuilt with its stage


def test_prefetch_asks_for_each_stored_candidate_row_once(tmp_path, monkeypatch):
    rows = np.arange(40 * 8, dtype=np.float32).reshape(40, 8)
    np.save(tmp_path / "v.npy", rows)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    asked = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, offset, length, advice: asked.append((offset, length, advice)))
    ranking.prefetch_rows(Rows(mapped, np.ones((3, 8), np.float32)), np.array([[5, 2, -1, 41], [5, 39, 0, 40]]))
    assert asked == [(mapped.offset + i * 32, 32, os.POSIX_FADV_WILLNEED) for i in (0, 2, 5, 39)]
    asked.clear()
    ranking.prefetch_rows(np.asarray(rows), np.array([[1, 2]]))  # rows in memory: nothing to ask
    assert asked == []


def test_warm_reads_the_codes_once_a_file_in_the_background(db, monkeypatch):
    vectors_path, index_path, _ = db
    read = []
    real = refine.read_through
    monkeypatch.setattr(refine, "read_through", lambda path: read.append(real(path)))
    opened = SimilarImages.open(vectors_path, index_path)
    opened.warm(model=False)
    opened.database.refine.warm(wait=True)
    SimilarImages.open(vectors_path, index_path).database.refine.warm(wait=True)  # another open: the same file
    assert read == [refine_codes_path(index_path).stat().st_size]
    remove_rows(vectors_path, index_path, ["v00002.jpg"], auto_compact=False)
    compact(vectors_path, index_path)  # new codes, a new file: read again
    Database.open(vectors_path, index_path).refine.warm(wait=True)
    assert read[1:] == [refine_codes_path(index_path).stat().st_size] and read[1] < read[0]
