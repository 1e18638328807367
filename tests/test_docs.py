"""The docs are tested: every shell block in README.md and docs/ is marked, and the ones
marked ``docs-test: run`` run in order, in a fresh folder, as a newcomer would type them.

The folder holds what a newcomer brings: ``my_photo.jpg`` and a folder ``my_photos/`` of
photos (made here from the photos scikit-image ships). Blocks that need COCO, the
internet or a long-running server are marked ``skip`` with the reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _waiting import patience

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^(?:<!-- docs-test: (run|skip \((.+?)\)) -->\n)?```bash\n(.*?)^```", re.S | re.M)


def test_the_docs_cite_only_tests_that_exist():
    cited = {name for page in PAGES for name in re.findall(r"tests/[\w/]+\.py", page.read_text())}
    assert cited and not {name for name in cited if not (ROOT / name).is_file()}, sorted(
        name for name in cited if not (ROOT / name).is_file())


def blocks(page: Path) -> list[tuple[str | None, str | None, str]]:
    """``(mark, skip reason, code)`` of each bash block of ``page``."""
    return [(m.group(1) and m.group(1).split(" ")[0], m.group(2), m.group(3)) for m in BLOCK.finditer(page.read_text())]


def test_every_shell_block_is_marked_run_or_skip_with_a_reason():
    for page in PAGES:
        for mark, reason, code in blocks(page):
            assert mark in ("run", "skip"), f"{page.name}: unmarked bash block:\n{code}"
            assert mark == "run" or reason, f"{page.name}: a skipped block needs its reason:\n{code}"


def test_readme_stays_short_with_the_quick_start_first():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    quick = text.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert quick[0].startswith("make demo") and quick[1].startswith("make test")
    assert "similar-images search" in quick[2] and "demo_output/" in quick[2]  # search the sample database
    for page in re.findall(r"\]\((docs/[\w.-]+\.md)\)", text):
        assert (ROOT / page).exists(), page


def newcomer_folder(tmp_path: Path) -> Path:
    from similar_images.demo import sample_photos

    folder = tmp_path / "newcomer"
    (folder / "my_photos").mkdir(parents=True)
    for name in ("coffee", "rocket", "astronaut", "chelsea", "hubble", "camera"):
        photo = sample_photos.load_photo(name)
        sample_photos.save_jpeg(photo, folder / "my_photos" / f"{name}.jpg")
    sample_photos.write_query(folder / "my_photo.jpg", "chelsea")
    return folder


@pytest.mark.slow
def test_marked_commands_run_in_order(tmp_path):
    folder = newcomer_folder(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "SIMILAR_IMAGES_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    ran = 0
    for page in PAGES:
        for mark, _, code in blocks(page):
            if mark != "run":
                continue
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=folder, env=env,
                                  capture_output=True, text=True, timeout=patience(1800))
            assert done.returncode == 0, f"{page.name}:\n{code}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            ran += 1
    assert ran >= 3  # the sample database, your own photos, texts
    assert (folder / "demo_output" / "results.png").exists() and (folder / "my_photos.saved_predictions.npy").exists()
