"""The house rules: the layer contract CI checks is the one docs/architecture.md shows,
modules stay small, and only the public faces sit at the top of the package."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "similar_images"


def contract_layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return [" | ".join(part.strip() for part in layer.split("|")) for layer in layers]


def documented_layers() -> list[str]:
    rows = re.findall(r"^\| \d+ \| (.+?) \|$", (ROOT / "docs" / "architecture.md").read_text(), re.M)
    return [row.replace("`", "").replace("\\|", "|") for row in rows]


def test_architecture_page_shows_the_contract_ci_checks():
    assert documented_layers() == contract_layers()


def test_storage_core_sits_below_models_ui_and_cli():
    layers = contract_layers()
    position = {name.strip(): i for i, layer in enumerate(layers) for name in layer.split("|")}
    for upper in ("models", "ui", "cli", "search", "extract", "features"):
        assert position[upper] < position["db"], upper


def test_every_subpackage_and_top_module_is_in_the_contract():
    named = {name.strip() for layer in contract_layers() for name in layer.split("|")}
    present = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    present |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert present == named


def test_modules_stay_small_and_the_top_stays_short():
    sizes = {p.relative_to(PACKAGE): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert max(sizes.values()) <= 320, max(sizes, key=sizes.get)
    assert len(list(PACKAGE.glob("*.py"))) <= 12
