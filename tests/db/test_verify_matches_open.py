"""`verify` answers what `open` answers (issue 26), for every corruption the test suite makes.

Each case below is a damage that another test makes (named beside it), applied to a copy of
one small database. On one copy `similar-images verify` runs, on another the open that every
command makes (`similar-images search`): verify exits non-zero exactly when the search
refuses, and both agree with what the case expects. Cases that harm nothing (leftovers, an
orphan segment, a consistent edit that nothing can tell from a real one) must pass both.
`verify --repair` either mends a case (a search then accepts) or leaves it refused; it never
re-signs an edit of the names or of the model description (also checked for `build --force`).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from _corrupt import data_offset, edit_json, plant, plant_stale_journal, poke, set_catalog_names, swap_rows
from _index_data import copy_database, flat_database, vector_db, write_format_1
from click.testing import CliRunner
from test_database import run_killed

from similar_images.cli import main
from similar_images.db import journal
from similar_images.db.catalog import catalog_path
from similar_images.db.catalog_guard import put_guard
from similar_images.db.changes import add_rows, remove_rows
from similar_images.db.compaction import compact
from similar_images.db.database import Database
from similar_images.db.vectors import load_vectors_manifest, save_vectors
from similar_images.errors import DatabaseError
from similar_images.evaluation.synthetic import clustered_vectors
from similar_images.fileio.files import manifest_path, sha256_file, sha256_lines

N, DIM = 200, 16
ROW = DIM * 4


@dataclass(frozen=True)
class Case:
    """``corrupt(vectors, index)`` damages a database in place; it may return the
    ``(vectors, index)`` to check instead (a database it made, or no index)."""

    corrupt: Callable
    refused: bool
    repairable: bool = False  # `verify --repair` mends it: a search accepts afterwards


def no_index(vectors, index):
    index.unlink()
    manifest_path(index).unlink()
    return vectors, None


def then_no_index(corrupt):
    return lambda v, i: (corrupt(v, i), no_index(v, i))[1]


def names(vectors) -> list[str]:
    return list(Database.open(vectors).names)


def rename_first_and_re_sign(vectors, _index):
    """Names and their checksum edited together (test_integrity: test_repair_does_not_re_sign_edited_names)."""
    edited = names(vectors)
    edited[0] = "renamed.jpg"
    set_catalog_names(vectors, {0: "renamed.jpg"})
    edit_json(manifest_path(vectors), names_sha256=sha256_lines(edited))


def edit_model(vectors, _index):
    """The model description edited (test_database: test_open_refuses_an_index_built_for_another_model)."""
    edit_json(manifest_path(vectors), model={"name": "synthetic", "weights": "imagenet", "dim": DIM})


def nan_re_signed(vectors, _index):
    poke(vectors, data_offset(vectors) + 5 * ROW, np.float32(np.nan).tobytes())
    edit_json(manifest_path(vectors), vectors_sha256=sha256_file(vectors))


def restored_mtime(vectors, _index):
    before = vectors.stat()
    swap_rows(vectors, 1, 2)
    os.utime(vectors, ns=(before.st_atime_ns, before.st_mtime_ns))


def flip_byte(path: Path, at: int) -> None:
    poke(path, at, bytes([path.read_bytes()[at] ^ 0x80]))


def header_byte(vectors, _index):
    poke(vectors, vectors.read_bytes().index(b"'shape'") + 10, b'"')


def generation(vectors) -> str:
    return load_vectors_manifest(vectors)["generation"]


def segment_outside(file):
    return lambda v, i: plant(v, "INSERT INTO segments VALUES (?, 1, ?, ?, 1, 1, ?)", generation(v), file, N, "0" * 64)


def guard_put_back(edit, *args):
    """An edit made with the catalog's guard removed, then the guard put back as it was."""
    def corrupt(vectors, _index):
        edit(vectors, *args)
        con = sqlite3.connect(catalog_path(vectors))
        with con:
            put_guard(con)
        con.close()
    return corrupt


def forged_segment(vectors, _index):
    forged = vectors.parent / "db.npy.seg-forged000000.npy"
    np.save(forged, np.zeros((1, DIM), np.float32))
    plant(vectors, "INSERT INTO segments VALUES (?, 1, ?, ?, 1, ?, ?)", generation(vectors), forged.name, N,
          forged.stat().st_size, "0" * 64)
    plant(vectors, "INSERT INTO items(gen, id, name, key) VALUES (?, ?, 'f.jpg', 'f.jpg')", generation(vectors), N)


def segment_gone(vectors, index):
    add_rows(vectors, index, np.ones((1, DIM), np.float32), ["late.jpg"], auto_compact=False)
    next(vectors.parent.glob("db.npy.seg-*.npy")).unlink()


def other_vectors(dim):
    """The vectors rewritten by a real writer after the index was built (test_database)."""
    def corrupt(vectors, _index):
        rows = np.asarray(Database.open(vectors).vectors)[::-1] if dim == DIM else clustered_vectors(N, dim)
        model = {"name": "synthetic", "weights": "none(seed=0)", "dim": dim}
        save_vectors(vectors, rows, {"model": model, "names": names(vectors)})
    return corrupt


def journal_body(body):
    return lambda v, i: journal.journal_path(v).write_text(body)


def stale_journal(vectors, _index):
    old = vectors.parent / "old"
    old.mkdir()
    old_path, _ = vector_db(old, 60, DIM)
    plant_stale_journal(vectors, old_path)


def killed_compaction(point):
    """A compaction killed at ``point`` (test_database's kill -9 points): before its journal
    is written, after it (nothing renamed yet), or half-way through the renames."""
    def corrupt(vectors, index):
        remove_rows(vectors, index, ["v00000.jpg"], auto_compact=False)
        proc = run_killed(vectors.parent, point, "compact", vectors, index)
        assert proc.returncode < 0, proc.stderr
    return corrupt


def committed_then(damage):
    """A compaction stopped right after its commit point, then ``damage(staged files)``."""
    def corrupt(vectors, index):
        remove_rows(vectors, index, ["v00000.jpg"], auto_compact=False)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(journal, "roll_forward", lambda *a, **k: False)
            compact(vectors, index)
        damage(sorted(vectors.parent.glob(".db.npy.*.staged")))
    return corrupt


def index_elsewhere(vectors, index):
    """test_journal: the journal of a compaction names an index kept in another folder."""
    elsewhere = vectors.parent / "indexes"
    elsewhere.mkdir()
    for path in (index, manifest_path(index)):
        path.rename(elsewhere / path.name)
    committed_then(lambda staged: None)(vectors, elsewhere / index.name)
    return vectors, elsewhere / index.name


def leftovers(vectors, _index):
    for name in (f".{vectors.name}.journal.json.x1y2.tmp", f".{vectors.name}.dead1234.staged",
                 f".{vectors.name}.manifest.json.dead1234.staged", ".db.faiss.index.0badc0de.staged"):
        (vectors.parent / name).write_bytes(b"x" * 100)


def format_1(names_edited: bool):
    def corrupt(vectors, _index):
        old = vectors.parent / "old.npy"
        write_format_1(old, np.asarray(Database.open(vectors).vectors), names(vectors))
        if names_edited:
            listed = json.loads(manifest_path(old).read_text())["names"]
            edit_json(manifest_path(old), names=[listed[1], listed[0], *listed[2:]])
        return old, None
    return corrupt


def index_manifest(**changes):
    return lambda v, i: edit_json(manifest_path(i), **changes)


JOURNALS = {  # test_journal: test_malformed_journals_name_the_file_and_field; test_cli_verify
    "pairs": '{"format": 2, "renames": [["a", "b"]]}',
    "not_a_list": '{"format": 2, "renames": 5}',
    "format_1": '{"format": 1, "renames": []}',
    "bad_json": '{"renames": [',
    "staged_outside": '{"format": 2, "renames": [{"staged": "../.db.npy.1.staged", "final": "db.npy", '
                      '"sha256": "0", "before": null}]}',
    "final_outside": '{"format": 2, "renames": [{"staged": "../v/.keep.txt.1.staged", "final": "../v/keep.txt", '
                     '"sha256": "0", "before": null}]}',
    "not_staged": '{"format": 2, "renames": [{"staged": "db.npy.manifest.json", "final": "db.npy", "sha256": "0", '
                  '"before": null}]}',
}

CASES = {
    # the vectors' content (test_integrity, test_cli_verify, test_database)
    "rows_swapped": Case(lambda v, i: swap_rows(v, 0, 30), True),
    "rows_swapped_mtime_restored": Case(restored_mtime, True),
    "nan_row": Case(lambda v, i: poke(v, data_offset(v) + 7 * ROW, np.full(DIM, np.nan, np.float32).tobytes()), True),
    "exponent_byte": Case(lambda v, i: poke(v, data_offset(v) + 7 * ROW + 3, b"\x7f"), True),
    "sign_bit": Case(lambda v, i: flip_byte(v, data_offset(v) + 7 * ROW + 3), True),
    "last_bytes_infinity": Case(lambda v, i: poke(v, v.stat().st_size - 4, b"\x00\x00\x80\x7f"), True),
    "nan_row_re_signed": Case(then_no_index(nan_re_signed), True),
    # structure (test_integrity, test_cli_verify)
    "npy_empty": Case(lambda v, i: v.write_bytes(b""), True),
    "npy_header_byte": Case(header_byte, True),
    "npy_truncated": Case(lambda v, i: v.write_bytes(v.read_bytes()[:-100]), True),
    "npy_float64": Case(lambda v, i: np.save(v, np.zeros((N, DIM), np.float64)), True),
    # the vectors manifest (test_integrity, test_database, test_cli_verify)
    **{f"manifest_without_{field}": Case(lambda v, i, f=field: edit_json(manifest_path(v), **{f: None}), True)
       for field in ("names_sha256", "vectors_sha256", "count", "model")},
    "manifest_bad_json": Case(lambda v, i: manifest_path(v).write_text('{"names": ['), True),
    "manifest_nested_deeply": Case(lambda v, i: manifest_path(v).write_text("[" * 100_000), True),
    "manifest_count": Case(lambda v, i: edit_json(manifest_path(v), count=N - 1), True),
    "model_edited": Case(edit_model, True),
    "model_edited_no_index": Case(then_no_index(edit_model), False),  # nothing left to tell it from a real one
    "names_re_signed": Case(rename_first_and_re_sign, True),
    "names_re_signed_no_index": Case(then_no_index(rename_first_and_re_sign), False),
    "format_1_names_swapped": Case(format_1(names_edited=True), True),
    "format_1_intact": Case(format_1(names_edited=False), False),
    # the catalog (test_integrity, test_growing, test_database, test_cli_compact)
    "catalog_names_swapped": Case(lambda v, i: set_catalog_names(v, {0: "v00001.jpg", 1: "v00000.jpg"}), True),
    "catalog_names_swapped_guard_put_back": Case(guard_put_back(set_catalog_names, {0: "v00001.jpg", 1: "v00000.jpg"}),
                                                 True),
    "catalog_item_replaced": Case(lambda v, i: plant(v, "REPLACE INTO items(gen, id, name, key) VALUES (?, 3, 'x.jpg', "
                                                        "'x.jpg')", generation(v)), True),
    "catalog_item_deleted": Case(lambda v, i: plant(v, "DELETE FROM items WHERE id=?", N - 1), True),
    **{f"segment_file_{label}": Case(segment_outside(file), True) for label, file in (
        ("outside", "../victim/keep.npy"), ("absolute", "/etc/passwd"), ("in_a_folder", "a/b.npy"),
        ("dotdot", ".."), ("empty", ""))},
    "segment_forged": Case(forged_segment, True),
    "segment_missing": Case(segment_gone, True),
    "segment_orphan": Case(lambda v, i: np.save(v.parent / "db.npy.seg-deadbeef0000.npy", np.ones((2, DIM))), False),
    "tombstone_outside": Case(lambda v, i: plant(v, "INSERT INTO tombstones VALUES (?, ?)", generation(v), 10 * N),
                              True),
    "catalog_missing": Case(lambda v, i: Path(f"{v}.catalog.sqlite").unlink(), True),
    "catalog_garbage": Case(lambda v, i: Path(f"{v}.catalog.sqlite").write_bytes(b"not sqlite" * 100), True),
    # the index and its manifest (test_integrity, test_database, test_cli_verify, test_search)
    "index_byte_flipped": Case(lambda v, i: flip_byte(i, i.stat().st_size - 9), True, repairable=True),
    "index_garbage": Case(lambda v, i: i.write_bytes(b"garbage"), True, repairable=True),
    "index_missing": Case(lambda v, i: i.unlink(), True, repairable=True),
    "index_manifest_missing": Case(lambda v, i: manifest_path(i).unlink(), True, repairable=True),
    "index_manifest_bad_json": Case(lambda v, i: manifest_path(i).write_text("{not json"), True, repairable=True),
    "index_without_index_sha256": Case(index_manifest(index_sha256=None), True, repairable=True),
    "index_pool_factor_text": Case(index_manifest(pool_factor="x"), True, repairable=True),
    "index_count_text": Case(index_manifest(count="200"), True, repairable=True),
    "index_bytes_negative": Case(index_manifest(index_bytes=-1), True, repairable=True),
    "index_vectors_sha256_short": Case(index_manifest(vectors_sha256="abc"), True, repairable=True),
    "index_pool_factor_37": Case(index_manifest(pool_factor=37), False),
    "nprobe_negative": Case(index_manifest(search_params={"nprobe": -5}), True, repairable=True),
    "nprobe_text": Case(index_manifest(search_params={"nprobe": "8"}), True, repairable=True),
    "nprobe_misspelt": Case(index_manifest(search_params={"nprob": 8}), True, repairable=True),
    "nprobe_on_a_flat_index": Case(index_manifest(search_params={"nprobe": 8}), True, repairable=True),
    "index_older_than_the_vectors": Case(other_vectors(DIM), True, repairable=True),
    "index_of_another_dimension": Case(other_vectors(64), True, repairable=True),
    # the journal (test_journal, test_database, test_cli_verify)
    **{f"journal_{label}": Case(journal_body(body), True) for label, body in JOURNALS.items()},
    "journal_stale": Case(stale_journal, True),
    "journal_staged_file_damaged": Case(committed_then(lambda staged: poke(staged[0], 200, b"\x00\x01")), True),
    "journal_staged_file_replaced": Case(committed_then(lambda staged: staged[0].write_bytes(b"x" * 64)), True),
    "killed_before_the_commit_point": Case(killed_compaction("replace0"), False),
    "killed_after_the_commit_point": Case(killed_compaction("replace1"), False),
    "killed_half_way_through_the_renames": Case(killed_compaction("replace3"), False),
    "journal_names_an_index_elsewhere": Case(index_elsewhere, False),
    "leftovers_of_dead_writers": Case(leftovers, False),
}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return flat_database(tmp_path_factory.mktemp("verify_vs_open"), N, DIM)


def damaged(folder: Path, template: Path, case: Case, *, stamped: bool) -> tuple[Path, Path | None]:
    """A copy of the template, opened once first when ``stamped`` (verification stamps
    written, as on a machine that used it), then damaged."""
    folder.mkdir()
    vectors, index = copy_database(template, folder)
    if stamped:
        Database.open(vectors, index)
    other = case.corrupt(vectors, index)
    return other if isinstance(other, tuple) else (vectors, index)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def where(vectors, index) -> list:
    return ["--vectors", vectors, *(["--index", index] if index else [])]


def search(vectors, index):
    return run("search", *where(vectors, index), "--id", 1, "-k", 1)


@pytest.mark.parametrize("stamped", [False, True], ids=["copied", "stamped"])
@pytest.mark.parametrize("name", list(CASES))
def test_verify_exits_non_zero_exactly_when_open_refuses(tmp_path, template, name, stamped):
    case = CASES[name]
    verified = run("verify", *where(*damaged(tmp_path / "verify", template, case, stamped=stamped)))
    where_opened = damaged(tmp_path / "open", template, case, stamped=stamped)
    opened = search(*where_opened)
    said = f"verify:\n{verified.output}\nsearch:\n{opened.output}"
    assert (verified.exit_code != 0, opened.exit_code != 0) == (case.refused, case.refused), said
    assert verified.exception is None or isinstance(verified.exception, SystemExit), said  # no traceback
    if case.refused:
        assert opened.output.strip().splitlines()[-1].startswith("error: "), said
        again = search(*where_opened)
        assert again.exit_code == 1, f"{said}\nsearch again:\n{again.output}"  # the refusal left no stamp behind
        assert "\nBAD  " in f"\n{verified.output}", said
    else:
        assert verified.output.strip().splitlines()[-1].startswith("verified: "), said


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.refused])
def test_repair_mends_only_what_it_can_check(tmp_path, template, name):
    case = CASES[name]
    vectors, index = damaged(tmp_path / "db", template, case, stamped=False)
    repaired = run("verify", *where(vectors, index), "--repair")
    after = search(vectors, index)
    said = f"repair:\n{repaired.output}\nsearch:\n{after.output}"
    assert (repaired.exit_code == 0, after.exit_code == 0) == (case.repairable, case.repairable), said


# --- no repair re-signs what it cannot check ------------------------------------------------


@pytest.mark.parametrize("edit, what", [(rename_first_and_re_sign, "names"), (edit_model, "model description")])
def test_no_rebuild_re_signs_edited_names_or_model(tmp_path, template, edit, what):
    """Names (in the catalog, with their checksum) or the model description edited: the index
    manifest's copies are the last evidence, so `verify --repair` and `build --force` refuse
    in one line and leave every file as it was."""
    vectors, index = damaged(tmp_path / "db", template, Case(edit, True), stamped=False)
    files = [vectors, manifest_path(vectors), index, manifest_path(index)]
    before = [p.read_bytes() for p in files]
    repaired = run("verify", "--vectors", vectors, "--repair")
    assert repaired.exit_code == 1 and "does not belong to these vectors" in repaired.output
    assert "(--repair can fix the index)" not in repaired.output and "repaired " not in repaired.output
    forced = run("build", "-i", vectors, "-o", index, "--index-type", "flat", "--force", "--no-progress")
    assert forced.exit_code == 1
    assert forced.output.strip().splitlines()[-1] == (
        f"error: {manifest_path(vectors)}: the {what} changed since db.faiss.index was built from these same "
        "vectors (edited by hand?); refusing to rebuild the index over them, which would re-sign them; nothing "
        "was changed. If the change is yours, delete db.faiss.index and its manifest, then build again; "
        "if not, restore what was edited or extract again")
    assert [p.read_bytes() for p in files] == before
    with pytest.raises(DatabaseError, match="does not belong to these vectors"):
        Database.open(vectors, index)
    no_index(vectors, index)  # the user's own choice, as the message says: then the edit is the database
    assert run("build", "-i", vectors, "-o", index, "--index-type", "flat", "--no-progress").exit_code == 0
    assert search(vectors, index).exit_code == 0


def test_build_force_rebuilds_over_vectors_rewritten_by_a_writer(tmp_path, template):
    """Control: new vectors (another checksum) with new names are a new database, not an
    edit; their old index says nothing about them, and `build --force` replaces it."""
    vectors, index = damaged(tmp_path / "db", template, Case(lambda v, i: None, False), stamped=False)
    rows = np.asarray(Database.open(vectors).vectors)[::-1]
    save_vectors(vectors, rows, {"model": {"name": "synthetic", "weights": "none(seed=0)", "dim": DIM},
                                 "names": [f"new{i}.jpg" for i in range(N)]})
    assert search(vectors, index).exit_code == 1  # the old index does not belong to them
    forced = run("build", "-i", vectors, "-o", index, "--index-type", "flat", "--force", "--no-progress")
    assert forced.exit_code == 0, forced.output
    found = search(vectors, index)
    assert found.exit_code == 0 and "new1.jpg" in found.output, found.output
