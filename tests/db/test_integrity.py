"""integrity.py and verify.py: the corruption matrix. Every attack ends in a one-line refusal
naming the file (and the field), never in a silent wrong result."""

from __future__ import annotations

import os

import numpy as np
import pytest
from _corrupt import data_offset, edit_json, poke, set_catalog_names, swap_rows
from _index_data import copy_database, indexed_database

from similar_images.db import integrity
from similar_images.db.build import build_index_files
from similar_images.db.changes import add_rows, remove_rows
from similar_images.db.compaction import compact
from similar_images.db.database import Database
from similar_images.db.vectors import save_vectors
from similar_images.db.verify import repair, verify_database
from similar_images.errors import DatabaseError
from similar_images.fileio.files import manifest_path, sha256_file, sha256_lines

N, DIM = 200, 16


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return indexed_database(tmp_path_factory.mktemp("integrity"), N, DIM, index_type="flat")


@pytest.fixture
def db(tmp_path, template):
    """A fresh copy: (vectors path, index path, vectors)."""
    folder, vectors = template
    return (*copy_database(folder, tmp_path), vectors)


# --- content damage: found on the next open -------------------------------------------------


def test_rows_swapped_are_refused_not_searched(db):
    vectors_path, index_path, _ = db
    Database.open(vectors_path, index_path)  # verified once: a stamp is recorded
    swap_rows(vectors_path, 0, 30)
    with pytest.raises(DatabaseError, match=r"db\.npy: contents do not match the checksum"):
        Database.open(vectors_path, index_path)


def test_a_restored_mtime_does_not_fool_the_stamp(db):
    vectors_path, _, _ = db
    Database.open(vectors_path)
    before = vectors_path.stat()
    swap_rows(vectors_path, 1, 2)
    os.utime(vectors_path, ns=(before.st_atime_ns, before.st_mtime_ns))  # touch -d back: ctime still moves
    with pytest.raises(DatabaseError, match="contents do not match"):
        Database.open(vectors_path)


@pytest.mark.parametrize("damage", ["nan_row", "exponent_bytes", "sign_bit"])
def test_damaged_values_are_refused(db, damage):
    vectors_path, index_path, _ = db
    offset = data_offset(vectors_path)
    at = offset + 7 * DIM * 4
    if damage == "nan_row":
        poke(vectors_path, at, np.full(DIM, np.nan, np.float32).tobytes())
    elif damage == "exponent_bytes":
        poke(vectors_path, at + 3, b"\x7f")  # little-endian: the last byte holds sign and exponent
    else:
        original = vectors_path.read_bytes()[at + 3]
        poke(vectors_path, at + 3, bytes([original ^ 0x80]))
    with pytest.raises(DatabaseError, match="contents do not match the checksum"):
        Database.open(vectors_path, index_path)


def test_a_nan_row_with_a_matching_checksum_is_reported_by_row(db):
    vectors_path, _, _ = db
    poke(vectors_path, data_offset(vectors_path) + 5 * DIM * 4, np.float32(np.nan).tobytes())
    edit_json(manifest_path(vectors_path), vectors_sha256=sha256_file(vectors_path))
    with pytest.raises(DatabaseError, match="row 5 holds a non-finite value"):
        Database.open(vectors_path)


def test_trust_skips_only_the_content_check(db):
    vectors_path, index_path, _ = db
    swap_rows(vectors_path, 0, 30)
    opened = Database.open(vectors_path, index_path, trust=True)  # the user said so
    assert len(opened) == N
    poke(vectors_path, 0, b"\x00")  # a header fault is still caught with --trust
    with pytest.raises(DatabaseError, match="corrupt .npy header"):
        Database.open(vectors_path, trust=True)


def test_the_stamp_spares_a_second_hash(db, monkeypatch):
    vectors_path, _, _ = db
    Database.open(vectors_path)
    calls = []
    real = integrity.np.frombuffer
    monkeypatch.setattr(integrity.np, "frombuffer", lambda *a, **k: calls.append(1) or real(*a, **k))
    Database.open(vectors_path)
    assert calls == []  # stamped: not re-read
    Database.open(vectors_path, fresh=True)
    assert calls  # fresh: re-read


# --- manifests: required fields and types ------------------------------------------------------


@pytest.mark.parametrize("field", ["names_sha256", "vectors_sha256", "count", "model"])
def test_a_missing_required_field_is_an_error(db, field):
    vectors_path, _, _ = db
    edit_json(manifest_path(vectors_path), **{field: None})
    with pytest.raises(DatabaseError, match=f"db.npy.manifest.json: missing field '{field}'"):
        Database.open(vectors_path)


def test_names_swapped_without_their_checksum_are_refused(db):
    vectors_path, _, _ = db
    names = list(Database.open(vectors_path).names)
    set_catalog_names(vectors_path, {0: names[1], 1: names[0]})
    with pytest.raises(DatabaseError, match="names of generation .* do not match the manifest's names_sha256"):
        Database.open(vectors_path, fresh=True)
    assert not all(v.ok for v in verify_database(vectors_path))
    edit_json(manifest_path(vectors_path), names_sha256=None)
    with pytest.raises(DatabaseError, match="missing field 'names_sha256'"):
        Database.open(vectors_path)


def test_index_checksums_removed_and_a_flipped_index_byte(db):
    vectors_path, index_path, _ = db
    edit_json(manifest_path(index_path), index_sha256=None)
    with pytest.raises(DatabaseError, match="db.faiss.index.manifest.json: missing field 'index_sha256'"):
        Database.open(vectors_path, index_path)
    edit_json(manifest_path(index_path), index_sha256=sha256_file(index_path))
    size = index_path.stat().st_size
    original = index_path.read_bytes()[size - 9]
    poke(index_path, size - 9, bytes([original ^ 0x01]))
    with pytest.raises(DatabaseError, match="db.faiss.index: index contents do not match"):
        Database.open(vectors_path, index_path)


@pytest.mark.parametrize("field, value, message", [
    ("pool_factor", "x", "field 'pool_factor' must be int, got 'x'"),
    ("count", "200", "field 'count' must be int"),
    ("index_bytes", -1, "field 'index_bytes' must not be negative"),
    ("vectors_sha256", "abc", "field 'vectors_sha256' is not a sha256 checksum"),
])
def test_index_fields_of_the_wrong_type_name_the_field(db, field, value, message):
    vectors_path, index_path, _ = db
    edit_json(manifest_path(index_path), **{field: value})
    with pytest.raises(DatabaseError, match=message):
        Database.open(vectors_path, index_path)


def test_unreadable_json_names_the_file(db):
    vectors_path, _, _ = db
    manifest_path(vectors_path).write_text('{"names": [')
    with pytest.raises(DatabaseError, match="db.npy.manifest.json: unreadable JSON"):
        Database.open(vectors_path)


# --- structure: header, size ----------------------------------------------------------------


@pytest.mark.parametrize("damage, message", [
    ("empty", "corrupt .npy header"),
    ("header_byte", "corrupt .npy header"),
    ("truncated", "bytes, but its header says"),
    ("dtype", "header field 'descr' is float64"),
])
def test_structural_damage_is_one_line(db, damage, message):
    vectors_path, _, _ = db
    data = vectors_path.read_bytes()
    if damage == "empty":
        vectors_path.write_bytes(b"")
    elif damage == "header_byte":
        at = data.index(b"'shape'") + 10  # inside the shape tuple: '(200, 16)' -> '(2"0, 16)'
        poke(vectors_path, at, b'"')
    elif damage == "truncated":
        vectors_path.write_bytes(data[:-100])
    else:
        np.save(vectors_path, np.zeros((N, DIM), np.float64))
    with pytest.raises(DatabaseError, match=message) as info:
        Database.open(vectors_path)
    assert str(info.value).startswith(str(vectors_path)) and "\n" not in str(info.value)


# --- writers: never write non-finite values, never re-sign damage --------------------------------


def test_non_finite_vectors_are_refused_when_written(db, tmp_path):
    vectors_path, index_path, _ = db
    bad = np.ones((3, DIM), np.float32)
    bad[1, 4] = np.inf
    with pytest.raises(DatabaseError, match="new vector 1 holds a non-finite value"):
        save_vectors(tmp_path / "other.npy", bad, {"model": {"name": "x"}, "names": ["a", "b", "c"]})
    assert not (tmp_path / "other.npy").exists()
    with pytest.raises(DatabaseError, match=f"new vector {N + 1} holds a non-finite value"):
        add_rows(vectors_path, index_path, bad, ["a.jpg", "b.jpg", "c.jpg"])
    assert len(Database.open(vectors_path, index_path)) == N
    assert not list(tmp_path.glob(".*.staged"))


@pytest.mark.parametrize("writer", ["remove", "add", "build", "compact"])
def test_writers_never_re_sign_damaged_vectors(db, writer):
    """Full writes (build, compact) re-sign the vectors: they re-check them first and refuse.
    An add or a remove re-signs nothing it did not write (a segment, tombstones): it goes
    ahead, and the damage stays visible to every open and to verify."""
    vectors_path, index_path, _ = db
    Database.open(vectors_path, index_path)  # stamped: writers must not rely on it
    swap_rows(vectors_path, 0, 30)
    damaged = vectors_path.read_bytes()
    if writer == "remove":
        remove_rows(vectors_path, index_path, ["v00005.jpg"], auto_compact=False)
    elif writer == "add":
        add_rows(vectors_path, index_path, np.ones((1, DIM), np.float32), ["new.jpg"], auto_compact=False)
    else:
        with pytest.raises(DatabaseError, match="contents do not match the checksum"):
            if writer == "build":
                build_index_files(vectors_path, index_path, index_type="flat", force=True, show_progress=False)
            else:
                compact(vectors_path, index_path)
    assert vectors_path.read_bytes() == damaged  # not rewritten, and still refused
    with pytest.raises(DatabaseError, match="contents do not match the checksum"):
        Database.open(vectors_path, index_path)
    assert not verify_database(vectors_path)[1].ok


# --- verify and repair ---------------------------------------------------------------------------


def test_verify_gives_one_verdict_per_file(db):
    vectors_path, index_path, _ = db
    verdicts = verify_database(vectors_path, index_path)
    assert [v.path.name for v in verdicts] == ["db.npy.manifest.json", "db.npy", "db.faiss.index.manifest.json",
                                               "db.faiss.index", "db.npy.catalog.sqlite", "db.npy"]
    assert all(v.ok for v in verdicts), [v.line() for v in verdicts]


def test_verify_repairs_a_damaged_index_from_the_vectors(db):
    vectors_path, index_path, vectors = db
    poke(index_path, index_path.stat().st_size - 9, b"\xff\xff")
    verdicts = verify_database(vectors_path, index_path)
    assert [v.ok for v in verdicts] == [True, True, True, False, True] and verdicts[3].repairable
    assert repair(vectors_path, index_path, verdicts)[0].startswith(f"repaired  {index_path}: rebuilt the flat")
    assert all(v.ok for v in verify_database(vectors_path, index_path))
    opened = Database.open(vectors_path, index_path)
    assert opened.index.ntotal == N and opened.index_manifest["index_type"] == "flat"


def test_verify_names_damaged_vectors_and_does_not_rebuild_over_them(db):
    vectors_path, index_path, _ = db
    swap_rows(vectors_path, 3, 4)
    verdicts = verify_database(vectors_path, index_path)
    assert [v.ok for v in verdicts] == [True, False, False]
    assert "contents do not match" in verdicts[1].message and not verdicts[1].repairable
    assert repair(vectors_path, index_path, verdicts) == []


def test_names_checksum_recomputed_is_accepted(db):
    """Control: a consistent edit (names and their checksum) is not flagged as damage."""
    vectors_path, _, _ = db
    names = list(Database.open(vectors_path).names)
    names[0] = "renamed.jpg"
    set_catalog_names(vectors_path, {0: "renamed.jpg"})
    edit_json(manifest_path(vectors_path), names_sha256=sha256_lines(names))
    assert Database.open(vectors_path, fresh=True).names[0] == "renamed.jpg"


def test_repair_does_not_re_sign_edited_names(db):
    """Names and their checksum edited together: the index manifest's copy of the old checksum
    is the evidence; verify reports it and repair refuses to rebuild over it."""
    vectors_path, index_path, _ = db
    names = list(Database.open(vectors_path).names)
    names[0] = "renamed.jpg"
    set_catalog_names(vectors_path, {0: "renamed.jpg"})
    edit_json(manifest_path(vectors_path), names_sha256=sha256_lines(names))
    with pytest.raises(DatabaseError, match="the names changed since the index was built"):
        Database.open(vectors_path, index_path)
    verdicts = verify_database(vectors_path, index_path)
    bad = [v for v in verdicts if not v.ok]
    assert bad and not any(v.repairable for v in bad)
    assert repair(vectors_path, index_path, verdicts) == []
    with pytest.raises(DatabaseError, match="the names changed since the index was built"):
        Database.open(vectors_path, index_path)  # still refused: nothing re-signed

