"""``similar-images verify`` and the top-level handler: one line ``error: ...`` for every fault,
a non-zero exit, no traceback unless -v."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _corrupt import swap_rows
from _index_data import copy_database, flat_database
from click.testing import CliRunner

from similar_images.cli import main
from similar_images.db.integrity import read_npy_header
from similar_images.fileio.files import manifest_path

N, DIM = 120, 8


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return flat_database(tmp_path_factory.mktemp("cli_verify"), N, DIM, eval_queries=5)


@pytest.fixture
def db(tmp_path, template):
    return tuple(copy_database(template, tmp_path))


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_verify_says_ok_per_file(db):
    vectors, index = db
    result = run("verify", "--vectors", str(vectors))
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    # manifest, vectors, index manifest, index, catalog, and the open a search does
    assert lines[:6] == [line for line in lines[:6] if line.startswith("ok  ")] and len(lines) == 7
    assert f"ok  {vectors}: {N} x {DIM} float32, checksum matches, all values finite" in lines
    assert any(line.startswith(f"ok  {vectors}.catalog.sqlite: {N} items in 1 segment(s)") for line in lines)
    assert lines[-1] == "verified: db.npy and its index are intact"


def test_verify_repair_rebuilds_a_damaged_index(db):
    vectors, index = db
    with open(index, "r+b") as f:
        f.seek(index.stat().st_size - 9)
        f.write(b"\xff\xfe")
    refused = run("verify", "--vectors", str(vectors))
    assert refused.exit_code == 1
    assert f"BAD  {index}: index contents do not match the checksum in its manifest" in refused.output
    assert "error: 1 file(s) of db.npy failed the check (--repair can fix the index)" in refused.output
    repaired = run("verify", "--vectors", str(vectors), "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert f"repaired  {index}: rebuilt the flat index" in repaired.output
    assert run("search", "--vectors", str(vectors), "--id", "3", "-k", "1").stdout.split()[3].endswith("v00003.jpg")


def test_search_refuses_swapped_rows_and_trust_opts_out(db):
    vectors, _ = db
    assert run("search", "--vectors", str(vectors), "--id", "0", "-k", "1").exit_code == 0
    swap_rows(vectors, 0, 30)
    refused = run("search", "--vectors", str(vectors), "--id", "0", "-k", "1")
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines() == [
        f"error: {vectors}: contents do not match the checksum in its manifest (damaged or edited); "
        "run `similar-images verify`"]
    trusted = run("search", "--vectors", str(vectors), "--id", "0", "-k", "1", "--trust")
    assert trusted.exit_code == 0  # the user's choice: content not checked


@pytest.mark.parametrize("damage", ["empty_npy", "header_byte", "bad_json", "pool_factor"])
def test_a_corrupt_file_is_one_line_naming_it(db, damage):
    vectors, index = db
    if damage == "empty_npy":
        vectors.write_bytes(b"")
        named = str(vectors)
    elif damage == "header_byte":
        data = bytearray(vectors.read_bytes())
        data[data.index(b"'shape'") + 10] = ord('"')
        vectors.write_bytes(bytes(data))
        named = str(vectors)
    elif damage == "bad_json":
        manifest_path(vectors).write_text("{not json")
        named = str(manifest_path(vectors))
    else:
        manifest = json.loads(manifest_path(index).read_text())
        manifest["pool_factor"] = "x"
        manifest_path(index).write_text(json.dumps(manifest))
        named = f"{manifest_path(index)}: field 'pool_factor'"
    result = run("search", "--vectors", str(vectors), "--id", "0")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {named}"), result.output
    assert "Traceback" not in result.output and "Aborted" not in result.output


def test_an_unexpected_fault_is_one_line_and_v_shows_the_traceback(db, monkeypatch):
    vectors, _ = db
    from similar_images import search

    monkeypatch.setattr(search.SimilarImages, "search", lambda *a, **k: 1 / 0)
    plain = run("search", "--vectors", str(vectors), "--id", "0")
    assert plain.exit_code == 1
    # the last line (before it, a warning that this copied database's image folder is missing)
    assert plain.output.strip().splitlines()[-1] == (
        "error: unexpected ZeroDivisionError: division by zero (run with -v for the details)")
    verbose = run("search", "--vectors", str(vectors), "--id", "0", "-v")
    assert verbose.exit_code == 1 and "Traceback" in verbose.output and "ZeroDivisionError" in verbose.output


def test_disk_full_in_a_command_is_one_line(db, monkeypatch):
    vectors, index = db
    import errno

    from similar_images.db import index as ix

    monkeypatch.setattr(ix, "write_index_to", lambda *_: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
    result = run("build", "-i", str(vectors), "-o", str(index), "-d", str(DIM), "--index-type", "flat", "--force",
                 "--no-progress")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"error: {index}: disk full while writing a change of db.npy; nothing was changed")
    monkeypatch.undo()
    assert run("verify", "--vectors", str(vectors)).exit_code == 0


def test_verify_of_non_finite_values_written_by_hand(db):
    vectors, _ = db
    from similar_images.fileio.files import sha256_file

    data = bytearray(vectors.read_bytes())
    offset = read_npy_header(vectors)[2]
    data[offset + 4 * DIM * 4: offset + 4 * DIM * 4 + 4] = np.float32(np.inf).tobytes()
    vectors.write_bytes(bytes(data))
    manifest = json.loads(manifest_path(vectors).read_text())
    manifest["vectors_sha256"] = sha256_file(vectors)  # re-signed by hand: the values are still checked
    manifest_path(vectors).write_text(json.dumps(manifest))
    result = run("verify", "--vectors", str(vectors), "--index", str(vectors.parent / "none.index"))
    assert result.exit_code == 1
    assert f"BAD  {vectors}: row 4 holds a non-finite value (NaN or infinity)" in result.output


def test_a_malformed_journal_is_one_line_naming_it(db):
    vectors, _ = db
    journal = vectors.parent / "db.npy.journal.json"
    journal.write_text('{"format": 2, "renames": [["a", "b"]]}')  # the old "not enough values to unpack"
    result = run("search", "--vectors", str(vectors), "--id", "0")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: {journal}: malformed entry 0 in field 'renames'; nothing was changed"]
    verdicts = run("verify", "--vectors", str(vectors))
    assert verdicts.exit_code == 1 and f"BAD  {journal}: malformed entry 0" in verdicts.output


# The exact error faiss 1.x raises when write() fails on a full disk (seen by writing to /dev/full).
FAISS_DISK_FULL = ("Error in void faiss::write_index(const Index*, IOWriter*, int) at /project/faiss/impl/"
                   "index_write.cpp:499: Error: 'ret == (size * 4)' failed: write error in x: 4051 != 16000 "
                   "(No space left on device)")


def test_faiss_full_disk_while_writing_the_index_is_one_line_and_nothing_changed(db, monkeypatch):
    import faiss

    vectors, index = db
    before = index.read_bytes(), manifest_path(index).read_bytes()

    def full(*_a):
        raise RuntimeError(FAISS_DISK_FULL)

    monkeypatch.setattr(faiss, "write_index", full)
    result = run("build", "-i", str(vectors), "-o", str(index), "--index-type", "flat", "--force", "--no-progress")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"error: {index}: disk full while writing a change of db.npy; nothing was changed")
    monkeypatch.undo()
    assert (index.read_bytes(), manifest_path(index).read_bytes()) == before
    assert run("search", "--vectors", str(vectors), "--index", str(index), "--id", "0").exit_code == 0


@pytest.mark.parametrize("params, says", [
    ({"nprobe": -5}, "field 'search_params': 'nprobe' must be a whole number >= 1, got -5"),
    ({"nprobe": "8"}, "field 'search_params': 'nprobe' must be a whole number >= 1, got '8'"),
    ({"nprob": 8}, "field 'search_params' has unknown parameter 'nprob' (known: nprobe, efSearch, quantizer_efSearch)"),
    # valid in itself, but a flat index has no lists to probe: Faiss refuses, we name the field
    ({"nprobe": 8}, "field 'search_params': Faiss cannot set nprobe=8 on this index (IndexFlatIP: "
                    "could not set parameter nprobe)"),
])
def test_bad_search_params_in_the_index_manifest_are_one_line_naming_file_and_field(db, params, says):
    vectors, index = db
    manifest = json.loads(manifest_path(index).read_text())
    manifest["search_params"] = params
    manifest_path(index).write_text(json.dumps(manifest))
    result = run("search", "--vectors", str(vectors), "--index", str(index), "--id", "0")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: {manifest_path(index)}: {says}"]
