"""Text_similarity.ipynb executed headless (nbclient), with and without a tweets database."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from _waiting import patience

NOTEBOOK = Path(__file__).resolve().parents[2] / "Text_similarity.ipynb"

pytestmark = pytest.mark.slow  # starts a kernel that loads torch and the model


def run_notebook(cwd: Path):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # First, prove the kernel is this environment's Python (the .venv), not another one.
    nb.cells.insert(0, nbformat.v4.new_code_cell("import sys; print('KERNEL', sys.prefix)"))
    # generous per cell and for the kernel's start: torch and the model load slowly on a loaded machine (issue 26)
    client = NotebookClient(nb, kernel_name="python3", timeout=int(patience(600)), startup_timeout=int(patience(300)),
                            resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb, [c for c in nb.cells if c.cell_type == "code"]


def outputs(cell) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts.append(out.data.get("text/html", "") + out.data.get("text/plain", ""))
    return "".join(parts)


def table_texts(html: str) -> list[str]:
    return re.findall(r"<td style='text-align:left'>(.*?)</td>", html)


def widget_states(nb) -> list[dict]:
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    return [w["state"] for w in state.values()]


def test_notebook_runs_with_builtin_corpus(tmp_path):
    nb, code = run_notebook(tmp_path)
    assert f"KERNEL {sys.prefix}" in outputs(code[0])
    assert "searching a small built-in corpus of 35 sentences" in outputs(code[1])
    assert "Loading weights" not in outputs(code[1])  # no model-loading bar in the notebook
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]

    table = outputs(code[2])
    rows = table_texts(table)
    assert len(rows) == 8 and "score" in table
    assert rows[0] == "I love sunny days at the beach"
    scores = [float(s) for s in re.findall(r"<tr><td>\d+</td><td>([-0-9.]+)</td>", table)]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.5

    # The app's own search filled its results table (saved widget state).
    html_values = [s.get("value", "") for s in widget_states(nb) if s.get("_model_name") == "HTMLModel"]
    app_table = next(v for v in html_values if "text-results" in v)
    assert table_texts(app_table)[:2] == ["My laptop crashed and I lost all my work",
                                          "The computer froze right before I saved the file"]


def test_notebook_uses_the_tweets_database_when_built(tmp_path):
    from similar_images.text.build import build_text_database

    texts = [f"tweet {i} about cooking pasta" for i in range(5)] + ["What a beautiful sunny day at the beach!"]
    with open(tmp_path / "tweets.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)
    build_text_database(tmp_path / "tweets.csv", show_progress=False)
    nb, code = run_notebook(tmp_path)
    # it opened the index `text build` wrote (tweets.csv.faiss.index), and says so
    assert ("Searching 6 texts of tweets.csv.saved_predictions.npy (model all-MiniLM-L6-v2) with the index "
            "tweets.csv.faiss.index (hnsw)") in outputs(code[1])
    rows = table_texts(outputs(code[2]))
    assert len(rows) == 6 and rows[0] == "What a beautiful sunny day at the beach!"
    json.dumps(nb)  # the executed notebook is valid JSON
