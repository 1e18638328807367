"""The API docs (/docs, /redoc) render in headless Chromium with every outside request blocked.

FastAPI's default docs load Swagger UI from a CDN and are a blank page offline; ours load
it from the server itself (similar_images/service/docs.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _live import live_server
from _waiting import patience

from similar_images.service.app import create_app

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
OPERATIONS = ("/api/search", "/api/health", "/api/images/{image_id}/thumbnail")


@pytest.fixture
def offline_page(browser, make_engine):
    """``(page, base, blocked)``: a page whose requests outside the server are aborted and listed."""
    engine = make_engine()
    with live_server(create_app(engine, warm_up=False)) as base:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(patience(120) * 1000)  # generous on a loaded machine (issue 26)
        blocked = []

        def only_the_server(route):
            url = route.request.url
            if url.startswith(base + "/") or url.startswith(("data:", "blob:")):
                return route.continue_()
            blocked.append(url)
            return route.abort()

        page.route("**/*", only_the_server)
        yield page, base, blocked
        page.close()


def test_swagger_ui_renders_the_operations_offline(offline_page):
    page, base, blocked = offline_page
    page.goto(base + "/docs")
    for path in OPERATIONS:
        page.locator(".opblock-summary-path", has_text=path).first.wait_for()
    page.locator(".opblock-summary-path", has_text="/api/search").first.click()  # an operation opens
    page.get_by_text("Search with an uploaded image, an id or a URL").first.wait_for()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "service-docs-offline.png"))
    assert blocked == []  # nothing was even asked of another host


def test_redoc_renders_the_operations_offline(offline_page):
    page, base, blocked = offline_page
    page.goto(base + "/redoc")
    page.get_by_text("Search with an uploaded image, an id or a URL").first.wait_for()
    page.get_by_text("Is it up, and what does it serve").first.wait_for()
    assert blocked == []
