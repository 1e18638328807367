"""duplicates/evaluate.py and `similar-images evaluate duplicates`, with a small fake
feature model (8 x 8 colour thumbnails as vectors) so it runs in seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from similar_images.cli import main
from similar_images.duplicates.evaluate import calibrate_models, summary

PHOTOS, UNRELATED = ["coffee", "rocket", "brick"], ["clock", "page", "logo"]


class TinyModel:
    name = "tiny"
    input_size = (224, 224)
    dim = 192

    def embed(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)  # (n, 224, 224, 3) -> (n, 8, 8, 3) block means
        return batch.reshape(n, 8, 28, 8, 28, 3).mean(axis=(2, 4)).reshape(n, -1).astype(np.float32)

    def describe(self):
        return {"name": self.name, "dim": self.dim}


def test_calibrate_models_saves_the_curves_and_picks_from_them(tmp_path):
    report = calibrate_models({"tiny": TinyModel()}, tmp_path, photos=PHOTOS, unrelated=UNRELATED,
                              show_progress=False)
    result = report["models"]["tiny"]
    assert result["images"] == 3 * 9 + 3 and len(result["curve"]) == 71
    if result["chosen"] is not None:  # the pick reaches the target on its own set
        assert result["at_chosen"]["precision"] >= 0.95 and result["at_chosen"]["group_precision"] >= 0.95
    saved = json.loads((tmp_path / "duplicates_pr.json").read_text())
    assert saved["models"]["tiny"]["chosen"] == result["chosen"]
    with Image.open(tmp_path / "duplicates_pr.png") as img:
        assert img.format == "PNG" and img.height > 400  # two panels: chosen set and check set
    text = summary(report)
    assert "tiny" in text and "check set" in text and text.count(" | ") >= 5 * 12


def test_cli_evaluate_duplicates(tmp_path, monkeypatch):
    import similar_images.duplicates.evaluate as evaluate
    import similar_images.features

    monkeypatch.setattr(similar_images.features, "get_extractor", lambda name: TinyModel())
    full = evaluate.calibrate_models
    monkeypatch.setattr(evaluate, "calibrate_models",
                        lambda *a, **kw: full(*a, **kw, photos=PHOTOS, unrelated=UNRELATED))
    result = CliRunner().invoke(main, ["evaluate", "duplicates", "--models", "tiny", "-o", str(tmp_path),
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "chosen:" in result.output and "duplicates_pr.png" in result.output
    assert (tmp_path / "duplicates_pr.png").exists()


def test_cli_evaluate_duplicates_bad_rule_model(tmp_path):
    result = CliRunner().invoke(main, ["evaluate", "duplicates", "--models", "nope", "-o", str(tmp_path)])
    assert result.exit_code == 1 and "nope" in result.output
    with pytest.raises(ValueError, match="centre, components"):
        calibrate_models({}, tmp_path, rule="single")
