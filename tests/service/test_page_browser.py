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
from _waiting import patience

from similar_images.service.app import create_app

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = patience(120) * 1000  # each wait for the page: generous on a loaded machine (issue 26)


@pytest.fixture
def open_page(browser, make_engine, request):
    """``open_page(path="/", size=(w, h), phone=False, **config) -> (page, base_url)``; a screenshot of
    the viewport and one of the whole page are saved after each test."""
    pages = []
    with __import__("contextlib").ExitStack() as stack:
        def start(path: str = "/", size=(1000, 800), phone: bool = False, **config):
            engine = make_engine(**config)
            base = stack.enter_context(live_server(create_app(engine, warm_up=False)))
            page = browser.new_page(viewport={"width": size[0], "height": size[1]}, is_mobile=phone, has_touch=phone)
            page.set_default_timeout(TIMEOUT_MS)
            page.on("console", lambda message: message.type == "error" and print("console:", message.text))
            page.goto(base + path)
            pages.append(page)
            return page, base

        yield start
        ARTIFACTS.mkdir(exist_ok=True)
        for i, page in enumerate(pages):
            page.screenshot(path=str(ARTIFACTS / f"service-{request.node.name}-{i}.png"), full_page=True)
            page.screenshot(path=str(ARTIFACTS / f"service-{request.node.name}-{i}-viewport.png"))
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
    wait_results(page, 8)
    assert first_result(page) == "img009.png"


def test_click_a_result_then_go_back(open_page):
    page, base = open_page("/?id=2")
    wait_results(page, 8)
    assert page.locator("#query-caption").inner_text() == "Image 2" and first_result(page) == "img002.png"
    second = page.locator("#results .result").nth(1)
    clicked_id = second.get_attribute("data-id")
    second.click()
    page.wait_for_url(re.compile(rf"\?id={clicked_id}$"))
    page.locator("#query-caption").filter(has_text=f"Image {clicked_id}").wait_for()
    wait_results(page, 8)
    assert first_result(page) == f"img{int(clicked_id):03d}.png"
    page.go_back()
    page.wait_for_url(re.compile(r"\?id=2$"))
    page.locator("#query-caption").filter(has_text="Image 2").wait_for()
    wait_results(page, 8)
    assert first_result(page) == "img002.png"


def test_the_random_button_and_the_keyboard(open_page):
    page, _ = open_page()
    page.locator("#summary").filter(has_text="12 images").wait_for()
    page.get_by_role("button", name="Random image").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"\?id=\d+$"))
    wait_results(page, 8)
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
    wait_results(page2, 8)
    assert first_result(page2) == "img007.png"


def test_with_a_token_the_page_asks_for_it(open_page):
    page, _ = open_page(token="page-token")
    page.get_by_label("Access token").wait_for()
    assert "bearer token" in page.locator("#error").inner_text()
    page.get_by_label("Access token").fill("page-token")
    page.get_by_role("button", name="Use token").click()
    page.locator("#summary").filter(has_text="12 images").wait_for()
    page.get_by_role("button", name="Random image").click()
    wait_results(page, 8)  # thumbnails fetched with the token, shown from blob: URLs
    assert page.locator("#results img").first.get_attribute("src").startswith("blob:")


def test_each_result_says_what_its_score_means(open_page, monkeypatch):
    from similar_images.models import score_bands

    monkeypatch.setitem(score_bands.MEASURED, ("tiny", "none"), score_bands.Bands(same_photo=0.999, similar=0.999))
    page, _ = open_page("/?id=4")
    wait_results(page, 8)
    verdicts = page.locator("#results .verdict").all_inner_texts()
    assert verdicts == ["same photo"] + ["unrelated"] * 7
    assert page.locator("#results .result").first.get_attribute("aria-label").endswith(", same photo")
    assert page.locator("#no-match").is_hidden()
    monkeypatch.setitem(score_bands.MEASURED, ("tiny", "none"), score_bands.Bands(same_photo=1.5, similar=1.2))
    page.locator("#results .result").nth(1).click()
    page.locator("#no-match").wait_for()
    assert "No close match in this collection" in page.locator("#no-match").inner_text()



def above_the_fold(page, selector: str) -> bool:
    """Whether the element is wholly inside the viewport as it is now."""
    box, height = page.locator(selector).bounding_box(), page.viewport_size["height"]
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


@pytest.mark.parametrize("size,phone", [((1280, 800), False), ((390, 844), True)], ids=["1280px", "390px-phone"])
def test_after_an_upload_the_query_and_four_results_are_in_view(open_page, tmp_path, size, phone):
    page, _ = open_page(size=size, phone=phone)
    page.locator("#summary").filter(has_text="12 images").wait_for()
    assert page.locator("#summary").inner_text() == "12 images · tiny · exact search"  # not "flat"
    hint = page.locator("#drop-help").inner_text()
    assert ("Ctrl+V" in hint) != phone  # no keyboard shortcut offered on a phone
    photo = tmp_path / "holiday.png"
    photo.write_bytes(image_bytes(4))
    page.set_input_files("#file", str(photo))
    wait_results(page, 8)  # the API's default k, which the page now shows
    assert page.locator("#k").input_value() == "8"
    for selector in ("#query-img", "#results li:nth-child(4)"):
        assert above_the_fold(page, selector), selector
    tapped = page.locator("#results .result").nth(2)
    tapped_id = tapped.get_attribute("data-id")
    tapped.click()  # a tapped result: its query is in view too
    page.wait_for_url(re.compile(rf"\?id={tapped_id}$"))
    # its answer, not the upload's results still on the page while the search runs (a loaded machine)
    page.locator("#query-caption").filter(has_text=f"Image {tapped_id}").wait_for()
    wait_results(page, 8)
    assert above_the_fold(page, "#query-caption") and above_the_fold(page, "#results li:nth-child(4)")


def test_a_bad_file_is_named_and_the_old_results_dimmed(open_page, tmp_path):
    page, _ = open_page("/?id=2")
    wait_results(page, 8)
    text = tmp_path / "notes.jpg"
    text.write_bytes(b"hello, this is not an image")
    page.set_input_files("#file", str(text))
    page.locator("#error").filter(has_text="notes.jpg: not an image").wait_for()
    assert 'it starts with the text "hello, t"' in page.locator("#error").inner_text()
    assert "b'" not in page.locator("#error").inner_text()
    assert "stale" in page.locator("#answer").get_attribute("class")
    page.get_by_role("button", name="Random image").click()
    page.locator("#error").wait_for(state="hidden")
    assert "stale" not in (page.locator("#answer").get_attribute("class") or "")


def test_pasting_nothing_or_text_says_so(open_page):
    page, _ = open_page()
    page.locator("#summary").filter(has_text="12 images").wait_for()
    for fill in ("", "data.setData('text/plain', 'a cat');"):
        page.evaluate(f"""() => {{
            const data = new DataTransfer(); {fill}
            document.dispatchEvent(new ClipboardEvent('paste', {{clipboardData: data, bubbles: true}}));
        }}""")
        page.locator("#error").filter(has_text="Nothing to search in what you pasted").wait_for()
        page.evaluate("() => { document.getElementById('error').hidden = true; }")


def test_back_to_an_upload_shows_it_again_and_back_to_the_start_shows_nothing(open_page, tmp_path):
    page, _ = open_page()
    page.locator("#summary").filter(has_text="12 images").wait_for()
    photo = tmp_path / "mine.png"
    photo.write_bytes(image_bytes(5))
    page.set_input_files("#file", str(photo))
    wait_results(page, 8)
    page.locator("#results .result").nth(1).click()
    page.wait_for_url(re.compile(r"\?id=\d+$"))
    page.locator("#query-caption").filter(has_text="Image ").wait_for()
    page.go_back()
    page.locator("#query-caption").filter(has_text="Your image").wait_for()
    wait_results(page, 8)
    assert first_result(page) == "img005.png"
    page.go_back()  # the page as it was first opened: no empty headings, no old timings
    page.locator("#results-title").wait_for(state="hidden")
    assert page.locator("#query-title").is_hidden() and page.locator("#timings").inner_text() == ""
    assert page.locator("#results li").count() == 0


def test_the_results_field_is_checked_in_its_own_words_and_tab_skips_the_hidden_input(open_page):
    page, base = open_page()
    page.locator("#summary").filter(has_text="12 images").wait_for()
    page.locator("#k").fill("0")
    page.get_by_role("button", name="Random image").click()
    page.locator("#error").filter(has_text="Results: give a whole number from 1 to 100 (got 0)").wait_for()
    assert page.locator("#results li").count() == 0  # nothing was sent
    page.goto(base + "/")  # a fresh page: Tab from the start
    page.locator("#summary").filter(has_text="12 images").wait_for()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "drop"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "random"  # not the invisible file input
