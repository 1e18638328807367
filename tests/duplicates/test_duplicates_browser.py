"""The duplicates HTML report in headless Chromium: every group's thumbnails render."""

from __future__ import annotations

import pytest
from _duplicates_db import make_collection, open_collection
from _waiting import patience

from similar_images.duplicates import find_duplicates, html

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = patience(120) * 1000  # launch and page waits: generous on a loaded machine (issue 26)


def test_report_renders_every_groups_thumbnails(tmp_path):
    from playwright.sync_api import sync_playwright

    found = find_duplicates(open_collection(make_collection(tmp_path / "images")), threshold=0.9,
                            show_progress=False)
    page_path = html.write_duplicates_html(tmp_path / "report.html", found)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"],
                                    timeout=TIMEOUT_MS)
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            requests = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri())
            sections = page.locator("section.group")
            assert sections.count() == len(found.groups) == 4
            for i, group in enumerate(found.groups):
                figures = sections.nth(i).locator("figure")
                assert figures.count() == len(group.members)
                assert [int(x) for x in figures.evaluate_all("fs => fs.map(f => f.dataset.id)")] == [
                    m.id for m in group.members]
                # every thumbnail decoded: a real picture, not a broken image
                sizes = sections.nth(i).locator("img").evaluate_all(
                    "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
                assert all(done and w > 0 and h > 0 for done, w, h in sizes), sizes
                assert figures.first.get_attribute("class") == "keeper"
                assert "keep" in figures.first.inner_text()
            assert all(url.startswith(("file:", "data:")) for url in requests)  # nothing fetched from a network
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
