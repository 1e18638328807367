"""duplicates/report.py, html.py and the `similar-images duplicates` command: the
table, JSON, CSV, remove list and HTML report of a known collection."""

from __future__ import annotations

import csv
import io
import json

import pytest
from _duplicates_db import make_collection, open_collection
from click.testing import CliRunner

from similar_images.cli import main
from similar_images.duplicates import find_duplicates, html, report


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_collection(tmp_path_factory.mktemp("dups-report") / "images")


@pytest.fixture(scope="module")
def found(files):
    return find_duplicates(open_collection(files), threshold=0.9, show_progress=False)


def test_json_holds_every_group_member_score_and_suggestion(found):
    doc = json.loads(report.json_text(found))
    assert doc["threshold"] == 0.9 and doc["rule"] == "centre" and doc["images"] == found.images
    assert [g["group"] for g in doc["groups"]] == [g.number for g in found.groups]
    for group, written in zip(found.groups, doc["groups"]):
        assert written["keeper"] == group.keeper.path
        assert [(m["member"], m["score"], m["suggestion"]) for m in written["members"]] == [
            (m.path, m.score, "keep" if m.keep else "remove") for m in group.members]
        assert sum(m["suggestion"] == "keep" for m in written["members"]) == 1


def test_csv_has_one_row_per_member(found):
    rows = list(csv.DictReader(io.StringIO(report.csv_text(found))))
    assert len(rows) == sum(len(g.members) for g in found.groups)
    assert list(rows[0]) == list(report.CSV_COLUMNS)
    copy = next(r for r in rows if r["name"] == "copy_of_single.jpg")
    assert copy["identical"] == "True" and copy["suggestion"] == "remove"
    keepers = {r["group"]: r["member"] for r in rows if r["suggestion"] == "keep"}
    assert keepers == {str(g.number): g.keeper.path for g in found.groups}


def test_remove_list_never_names_a_keeper(found):
    lines = report.remove_list_text(found).splitlines()
    assert lines == found.remove_paths() and len(lines) == sum(len(g.members) - 1 for g in found.groups)
    assert not set(lines) & {g.keeper.path for g in found.groups}


def test_table_and_html_show_every_group(found):
    text = report.table(found)
    assert text.count("\n  keep ") == len(found.groups) and "identical file" in text
    assert "more groups" in report.table(found, max_groups=1)
    page = html.duplicates_html(found)
    assert page.count('<section class="group"') == len(found.groups)
    assert page.count("<img ") == sum(len(g.members) for g in found.groups)
    assert page.count('class="keeper"') == len(found.groups)


def test_cli_writes_every_output_and_deletes_nothing(files, tmp_path):
    def listing():  # SQLite's -wal/-shm come and go with open catalog connections: not ours to count
        return sorted(p.name for p in files["folder"].iterdir() if not p.name.endswith(("-wal", "-shm")))

    before = listing()
    out = {name: tmp_path / name for name in ("d.json", "d.csv", "remove.txt", "d.html")}
    result = CliRunner().invoke(main, ["duplicates", "--vectors", str(files["vectors"]), "--threshold", "0.9",
                                       "--json", str(out["d.json"]), "--csv", str(out["d.csv"]),
                                       "--remove-list", str(out["remove.txt"]), "--html", str(out["d.html"]),
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "4 duplicate groups" in result.output and "keep " in result.output
    doc = json.loads(out["d.json"].read_text())
    assert len(doc["groups"]) == 4
    removable = out["remove.txt"].read_text().splitlines()
    assert len(removable) == 7 and all(files["folder"].name in p for p in removable)
    assert len(list(csv.DictReader(out["d.csv"].open()))) == 11
    assert out["d.html"].read_text().count('<section class="group"') == 4
    assert listing() == before  # nothing deleted or moved
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(out)  # temporary names renamed away


def test_cli_json_to_stdout_and_bad_input(files):
    runner = CliRunner()
    ok = runner.invoke(main, ["duplicates", "--vectors", str(files["vectors"]), "--threshold", "0.9", "--json", "-",
                              "--no-progress"])
    assert ok.exit_code == 0 and len(json.loads(ok.stdout)["groups"]) == 4
    bad = runner.invoke(main, ["duplicates", "--vectors", str(files["vectors"]), "--threshold", "high"])
    assert bad.exit_code == 2 and "neither a cosine" in bad.output
    auto = runner.invoke(main, ["duplicates", "--vectors", str(files["vectors"]), "--no-progress"])
    assert auto.exit_code == 1 and "no calibrated duplicate threshold" in auto.output
    assert len(auto.output.strip().splitlines()) == 1
    missing = runner.invoke(main, ["duplicates", "--vectors", str(files["folder"] / "none.npy"), "--threshold", "0.9"])
    assert missing.exit_code == 1 and "no such database (found: --vectors " in missing.output
