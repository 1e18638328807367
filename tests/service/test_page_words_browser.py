"""The page's box for words, in headless Chromium: shown for a CLIP database only, answered
with the text tower's results, kept in the address. (The rest of the page:
test_page_browser.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _clip_data import clip_database
from _live import live_server
from _waiting import patience

from similar_images.search import SimilarImages
from similar_images.service.app import create_app
from similar_images.service.config import ServiceConfig
from similar_images.service.engine import Engine

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT_MS = patience(120) * 1000  # each wait for the page: generous on a loaded machine (issue 26)


def test_words_find_pictures_on_a_clip_database(browser, tmp_path_factory, make_engine):
    files = clip_database(tmp_path_factory)
    db = SimilarImages.open(files["vectors"], files["index"], image_dir=files["image_dir"], device="cpu")
    expected = [r.path for r in db.search_text("a red bicycle", k=4)]
    with live_server(create_app(Engine(db, ServiceConfig()), warm_up=False)) as base:
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(base + "/")
        page.locator("#summary").filter(has_text="8 images").wait_for()
        page.locator("#k").fill("4")
        page.get_by_label("Describe it").fill("a red bicycle")
        page.get_by_role("button", name="Search words").click()
        page.wait_for_url(re.compile(r"\?text=a(\+|%20)red(\+|%20)bicycle"))
        page.locator("#results li").nth(3).wait_for()
        assert page.locator("#results .result .name").all_inner_texts() == expected
        assert page.locator("#query-caption").inner_text() == "\u201ca red bicycle\u201d"
        assert page.locator("#query-img").is_hidden()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "service-words.png"), full_page=True)
        page.close()
    with live_server(create_app(make_engine(), warm_up=False)) as base:  # the tiny model: no text tower
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(base + "/")
        page.locator("#summary").filter(has_text="12 images").wait_for()
        assert page.locator("#text-form").is_hidden()
        page.close()
