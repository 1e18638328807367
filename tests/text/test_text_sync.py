"""``text sync FILE.csv``: the first sync builds the database; later ones add the new texts,
remove those gone from the file, and encode nothing when the file did not change."""

from __future__ import annotations

import csv

import pytest

from similar_images.db.database import Database
from similar_images.text.follow import sync_texts


class Counting:
    """The database's text model, counting the texts it encodes."""

    def __init__(self, vectors):
        from similar_images.models import minilm

        self.real = minilm.TextEncoder(Database.open(vectors, None).model["name"])
        self.texts = 0

    def encode(self, texts):
        self.texts += len(texts)
        return self.real.encode(texts)


def write_csv(path, texts):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows((i, t) for i, t in enumerate(texts))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("texts")
    csv_path = folder / "notes.csv"
    write_csv(csv_path, [f"a note about topic number {i}" for i in range(30)])
    report = sync_texts(csv_path, show_progress=False)  # builds it with the real MiniLM (offline)
    return csv_path, report


@pytest.mark.slow
def test_the_first_sync_builds_then_rows_are_added_removed_and_changed(built, tmp_path):
    import shutil

    csv_path, first = built
    assert first.created and first.count == 30
    work = tmp_path / "notes.csv"
    for path in csv_path.parent.iterdir():
        shutil.copy(path, tmp_path / path.name)
    texts = [f"a note about topic number {i}" for i in range(30)]
    texts = texts[3:] + ["a brand new note", "another new one"]  # 3 removed, 2 added
    texts[0] = "a note whose text was edited"  # changed: its old text goes, the new one comes
    write_csv(work, texts)
    encoder = Counting(tmp_path / "notes.csv.saved_predictions.npy")
    report = sync_texts(work, encoder=encoder, show_progress=False)
    assert (report.added, report.removed, report.unchanged) == (3, 4, 26) and encoder.texts == 3
    assert "3 added, 4 removed, 26 unchanged" in report.summary()
    db = Database.open(tmp_path / "notes.csv.saved_predictions.npy", None)
    assert sorted(db.names[i] for i in db.live_ids()) == sorted(texts)
    again = sync_texts(work, encoder=encoder, show_progress=False)
    assert (again.added, again.removed, again.unchanged) == (0, 0, 29) and encoder.texts == 3


def test_an_image_database_is_refused(tmp_path):
    from _index_data import vector_db

    from similar_images.errors import DatabaseError

    vectors, _ = vector_db(tmp_path, 20, 8)
    csv_path = tmp_path / "t.csv"
    write_csv(csv_path, ["one text"])
    with pytest.raises(DatabaseError, match="not a text database"):
        sync_texts(csv_path, vectors=vectors, show_progress=False)


def test_the_cli_says_it_in_one_line(tmp_path):
    from _index_data import vector_db
    from click.testing import CliRunner

    from similar_images.cli import main

    vectors, _ = vector_db(tmp_path, 20, 8)
    csv_path = tmp_path / "t.csv"
    write_csv(csv_path, ["one text"])
    result = CliRunner().invoke(main, ["text", "sync", str(csv_path), "--vectors", str(vectors)])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "not a text database" in result.output
