"""``Similar image.ipynb`` runs headless (nbclient) against a small real database."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from _waiting import patience
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "Similar image.ipynb"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_notebook_is_short_and_has_no_stored_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    kinds = [cell.cell_type for cell in nb.cells]
    assert kinds == ["markdown", "code", "code"]
    assert all(not cell.outputs for cell in nb.cells if cell.cell_type == "code")
    assert nb.metadata.kernelspec.name == "python3"
    assert "nbextension" not in NOTEBOOK.read_text()


def test_notebook_runs_and_shows_results(db_files, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMILAR_IMAGES_VECTORS", str(db_files["vectors"]))
    monkeypatch.setenv("SIMILAR_IMAGES_INDEX", str(db_files["index"]))
    nb, text = _run(tmp_path)
    assert f"Searching 24 images of {db_files['vectors']}" in text
    _check_results(nb)


@pytest.mark.slow
def test_without_coco_files_the_notebook_uses_the_demo_database(tmp_path, monkeypatch):
    """A fresh clone: no COCO files, no demo database yet. The notebook builds the
    sample database (in its own folder, here tmp_path), says so, and shows results."""
    for name in ("SIMILAR_IMAGES_VECTORS", "SIMILAR_IMAGES_INDEX", "SIMILAR_IMAGES_IMAGE_DIR"):
        monkeypatch.delenv(name, raising=False)
    nb, text = _run(tmp_path)
    assert "ms_coco_file_list.txt.saved_predictions.npy not found" in text
    assert "sample database of `similar-images demo`" in text
    assert "Searching 119 sample images" in text
    assert (tmp_path / "demo_output").is_dir()
    _check_results(nb)


def _run(folder: Path):
    """Execute the notebook in ``folder``; return it and its printed text."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # a cell may build the demo's database: minutes on a loaded machine (issue 26), as may the kernel's start
    client = NotebookClient(nb, timeout=int(patience(900)), startup_timeout=int(patience(300)), kernel_name="python3",
                            store_widget_state=True, resources={"metadata": {"path": str(folder)}})
    client.execute()  # raises CellExecutionError if a cell fails
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert "Traceback" not in text
    return nb, text


def _check_results(nb) -> None:
    """The app is displayed and its widget state holds a query and eight scored results."""
    app_output = nb.cells[2].outputs[-1]
    assert WIDGET_VIEW in app_output.data  # the app, displayed as a widget
    state = nb.metadata.widgets[WIDGET_STATE]["state"]
    html = [m["state"].get("value", "") for m in state.values() if m["model_name"] == "HTMLModel"]
    assert any("8 most similar images" in value for value in html)
    scores = [value for value in html if value.startswith("score <b>")]
    assert len(scores) == 8
    images = [m for m in state.values() if m["model_name"] == "ImageModel"]
    assert len(images) >= 9  # the query and eight results


def test_the_intro_names_the_buttons_as_they_are_labelled(db):
    from similar_images.ui.image_app import SimilarImagesApp

    intro = nbformat.read(NOTEBOOK, as_version=4).cells[0].source
    app = SimilarImagesApp(db, k=4, seed=0)
    app.search_random()
    controls = [app.random_button, app.upload, app.url_button, app.duplicates_button, app.k_choice,
                app.result_buttons[0]]
    named = [f"**{control.description}**" for control in controls]
    assert all(name in intro for name in named), [name for name in named if name not in intro]
    assert "**Search**" not in intro  # no button is labelled that
