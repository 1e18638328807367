"""The web page in real headless Chromium (Playwright): every control, errors, history.

The service runs in this process (uvicorn on 127.0.0.1) over the tiny database;
Chromium is Debian's (/usr/bin/chromium). Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from _live import live_server
from _service_data import image_bytes

from similar_images.service.app import create_app

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 20_000


@pytest.fixture
def open_page(browser, make_engine, request):
    """``open_page(path="/", **config) -> (page, base_url)``; a screenshot is saved after each test."""
    pages = []
    with __import__("contextlib").ExitStack() as stack:
        def start(path: str = "/", **config):
            engine = make_engine(**config)
            base = stack.enter_context(live_server(create_app(engine, warm_up=False)))
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("console", lambda message: message.type == "error" and print("console:", message.text))
            page.goto(base + path)
            pages.append(page)
            return page, base

        yield start
        ARTIFACTS.mkdir(exist_ok=True)
        for i, page in enumerate(pages):
            page.screenshot(path=str(ARTIFACTS / f"service-{request.node.name}-{i}.png"), full_page=True)
            page.close()


def wait_results(page, count: int):
    page.locator("#results li").nth(count - 1).wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('#results img')].every(i => i.complete && "
                           "i.naturalWidth > 0)")
    assert page.locator("#results li").count() == count
    assert page.locator("#busy").is_hidden()


def first_result(page) -> str:
    return page.locator("#results .result .name").first.inner_text()


def test_upload_a_file_and_see_scored_results(open_page, tmp_path):
    page, _ = open_page()
    page.locator("#summary").filter(has_text="12 images").wait_for()
    photo = tmp_path / "my-photo.png"
    photo.write_bytes(image_bytes(4))
    page.locator("#k").fill("6")
    page.set_input_files("#file", str(photo))
    wait_results(page, 6)
    assert first_result(page) == "img004.png"
    assert page.locator("#results .score").first.inner_text() == "1.000"
    assert page.locator("#query-caption").inner_text() == "Your image"
    assert "6 results in" in page.locator("#timings").inner_text()
    assert page.locator("#error").is_hidden()


def _drop_or_paste_js(kind: str) -> str:
    event = ("new ClipboardEvent('paste', {clipboardData: data, bubbles: true})" if kind == "paste"
             else "new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true})")
    target = "document" if kind == "paste" else "document.getElementById('drop')"
    return f"""(b64) => {{
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], 'clip.png', {{type: 'image/png'}}));
        {target}.dispatchEvent({event});
    }}"""


@pytest.mark.parametrize("kind", ["paste", "drop"])
def test_paste_or_drop_an_image(open_page, kind):
    page, _ = open_page()
    page.locator("#summary").filter(has_text="12 images").wait_for()
    page.evaluate(_drop_or_paste_js(kind), base64.b64encode(image_bytes(9)).decode())
    wait_results(page, 12)
    assert first_result(page) == "img009.png"


def test_click_a_result_then_go_back(open_page):
    page, base = open_page("/?id=2")
    wait_results(page, 12)
    assert page.locator("#query-caption").inner_text() == "Image 2" and first_result(page) == "img002.png"
    second = page.locator("#results .result").nth(1)
    clicked_id = second.get_attribute("data-id")
    second.click()
    page.wait_for_url(re.compile(rf"\?id={clicked_id}$"))
    page.locator("#query-caption").filter(has_text=f"Image {clicked_id}").wait_for()
    wait_results(page, 12)
    assert first_result(page) == f"img{int(clicked_id):03d}.png"
    page.go_back()
    page.wait_for_url(re.compile(r"\?id=2$"))
    page.locator("#query-caption").filter(has_text="Image 2").wait_for()
    wait_results(page, 12)
    assert first_result(page) == "img002.png"


def test_the_random_button_and_the_keyboard(open_page):
    page, _ = open_page()
    page.locator("#summary").filter(has_text="12 images").wait_for()
    page.get_by_role("button", name="Random image").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"\?id=\d+$"))
    wait_results(page, 12)
    shown = int(page.url.rsplit("=", 1)[1])
    assert first_result(page) == f"img{shown:03d}.png"
    # a result is a button with a spoken name; Enter on it searches from it
    third = page.locator("#results .result").nth(2)
    assert third.get_attribute("aria-label").startswith("Search from img")
    third_id = third.get_attribute("data-id")
    third.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"\?id={third_id}$"))


def test_errors_are_shown_in_place(open_page, tmp_path):
    page, _ = open_page()
    page.locator("#summary").filter(has_text="12 images").wait_for()
    text = tmp_path / "notes.jpg"
    text.write_bytes(b"this is not an image")
    page.set_input_files("#file", str(text))
    error = page.locator("#error")
    error.filter(has_text="not an image").wait_for()
    assert page.get_by_role("alert").inner_text() == error.inner_text()
    assert "Traceback" not in error.inner_text() and page.locator("#busy").is_hidden()
    page.goto(page.url.split("?")[0] + "?id=99")
    page.locator("#error").filter(has_text="no image with id 99").wait_for()


def test_the_url_box_appears_only_when_urls_are_on(open_page):
    page, _ = open_page()
    page.locator("#summary").filter(has_text="12 images").wait_for()
    assert page.locator("#url-form").is_hidden()
    page2, base = open_page(allow_urls=True, allow_private_urls=True)
    page2.locator("#summary").filter(has_text="12 images").wait_for()
    assert page2.locator("#url-form").is_visible()
    page2.get_by_label("Image URL").fill(f"{base}/api/images/7")  # the server's own image, by loopback
    page2.get_by_role("button", name="Search URL").click()
    page2.wait_for_url(re.compile(r"\?url="))
    wait_results(page2, 12)
    assert first_result(page2) == "img007.png"


def test_with_a_token_the_page_asks_for_it(open_page):
    page, _ = open_page(token="page-token")
    page.get_by_label("Access token").wait_for()
    assert "bearer token" in page.locator("#error").inner_text()
    page.get_by_label("Access token").fill("page-token")
    page.get_by_role("button", name="Use token").click()
    page.locator("#summary").filter(has_text="12 images").wait_for()
    page.get_by_role("button", name="Random image").click()
    wait_results(page, 12)  # thumbnails fetched with the token, shown from blob: URLs
    assert page.locator("#results img").first.get_attribute("src").startswith("blob:")


def test_each_result_says_what_its_score_means(open_page, monkeypatch):
    from similar_images.models import score_bands

    monkeypatch.setitem(score_bands.MEASURED, ("tiny", "none"), score_bands.Bands(same_photo=0.999, similar=0.999))
    page, _ = open_page("/?id=4")
    wait_results(page, 12)
    verdicts = page.locator("#results .verdict").all_inner_texts()
    assert verdicts == ["same photo"] + ["unrelated"] * 11
    assert page.locator("#results .result").first.get_attribute("aria-label").endswith(", same photo")
    assert page.locator("#no-match").is_hidden()
    monkeypatch.setitem(score_bands.MEASURED, ("tiny", "none"), score_bands.Bands(same_photo=1.5, similar=1.2))
    page.locator("#results .result").nth(1).click()
    page.locator("#no-match").wait_for()
    assert "No close match in this collection" in page.locator("#no-match").inner_text()
