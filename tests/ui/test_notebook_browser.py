"""The notebook in a real browser: Jupyter server + headless Chromium (Playwright).

Starts ``jupyter notebook`` on 127.0.0.1 (random free port, random token) serving a
copy of ``Similar image.ipynb`` pointed at the small test database, runs all cells in
Debian's Chromium, uploads a JPEG through the app's file input and waits for the
result thumbnails to render. The screenshot is saved in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _waiting import patience

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "Similar image.ipynb"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
UPLOAD_AS = "my-upload.jpg"
# Each wait for the page, Jupyter or the kernel: generous, as a loaded machine (issue 26) runs the
# notebook's cells several times slower.
TIMEOUT_MS = patience(300) * 1000


@pytest.fixture
def jupyter(db_files, tmp_path):
    """A Jupyter server serving a copy of the notebook; yields its notebook URL."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} missing: run scripts/install-browser.sh")
        pytest.skip(f"{CHROMIUM} missing: run scripts/install-browser.sh (CI runs this test)")
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(NOTEBOOK, served / NOTEBOOK.name)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ,
               SIMILAR_IMAGES_VECTORS=str(db_files["vectors"]),
               SIMILAR_IMAGES_INDEX=str(db_files["index"]),
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    command = [sys.executable, "-m", "notebook", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={served}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI containers run as root
    log = tmp_path / "jupyter.log"
    with open(log, "wb") as log_file:
        server = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", server, log)
        yield f"http://127.0.0.1:{port}/notebooks/{NOTEBOOK.name}?token={token}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=patience(20))
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_upload_in_the_notebook_shows_results(jupyter, db_files):
    from playwright.sync_api import sync_playwright

    upload = db_files["folder"] / UPLOAD_AS
    original = "chelsea.jpg"
    shutil.copy(db_files["image_dir"] / original, upload)
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "notebook-upload.png"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.set_default_timeout(TIMEOUT_MS)
        try:
            page.goto(jupyter)
            page.wait_for_selector(".jp-Notebook")
            _wait_for_kernel(jupyter)  # running cells before it is there asks for a kernel
            # what the README asks users to do: Kernel > Restart Kernel and Run All Cells
            page.get_by_role("menuitem", name="Kernel", exact=True).click()
            page.locator(".lm-Menu .lm-Menu-itemLabel",
                         has_text="Restart Kernel and Run All Cells").click()
            page.locator(".jp-Dialog .jp-mod-accept").click()  # "Restart" in the confirm dialog
            # the last cell shows the app with a random query's eight results
            page.wait_for_function(_rendered_results_js(8))

            with page.expect_file_chooser() as chooser:
                page.locator(".similar-images-app .widget-upload").click()
            chooser.value.set_files(upload)  # what the FileUpload's <input type=file> gets
            page.wait_for_selector(f".similar-images-app :text('query: {UPLOAD_AS}')")
            page.wait_for_function(_rendered_results_js(8, first=original))

            cells = page.locator(".similar-images-results > .widget-vbox")
            assert cells.count() == 8
            first = cells.nth(0).inner_text()
            assert original in first and "score 1.000" in first, first
            assert page.locator(".similar-images-results :text('score')").count() == 8
            assert "8 most similar images" in page.locator(".similar-images-status").inner_text()
            assert page.locator(".jp-OutputArea-output[data-mime-type*='error']").count() == 0
            assert "Upload (1)" in page.locator(".similar-images-app .widget-upload").inner_text()  # not (0)
            rows = {round(page.locator(".similar-images-app button", has_text=label).first.bounding_box()["y"])
                    for label in ("Random image", "Search URL", "Duplicates")}
            assert len(rows) == 1, rows  # the controls fit one row at 1400 px
            page.locator(".similar-images-app").scroll_into_view_if_needed()
            page.screenshot(path=str(screenshot), full_page=True)
            page.set_viewport_size({"width": 390, "height": 844})  # a phone: the grid wraps, nothing is cut
            page.wait_for_timeout(500)
            assert page.locator(".similar-images-results").evaluate("e => e.scrollWidth <= e.clientWidth + 1")
            right = page.locator(".similar-images-results > .widget-vbox").first.bounding_box()
            assert right["x"] + right["width"] <= 390, right
            page.screenshot(path=str(ARTIFACTS / "notebook-390px.png"), full_page=True)
            page.set_viewport_size({"width": 1400, "height": 1200})

            # a URL typed + Enter that fails: one red line, the results stay
            bad_url = "http://127.0.0.1:9/none.jpg"  # nothing listens on port 9
            page.locator(".similar-images-app input[type=text]").fill(bad_url)
            page.keyboard.press("Enter")
            status = page.locator(".similar-images-status")
            status.filter(has_text="cannot connect").wait_for()
            assert status.inner_text().startswith(f"error: {bad_url}: cannot connect")
            assert "Traceback" not in page.locator(".similar-images-app").inner_text()
            assert page.locator(".similar-images-results img").count() == 8
            # the old results stay, dimmed: they are not the answer to the bad URL
            page.wait_for_selector(".similar-images-results.similar-images-stale")
            assert float(page.locator(".similar-images-results").evaluate(
                "e => getComputedStyle(e).opacity")) < 0.5
            page.screenshot(path=str(ARTIFACTS / "notebook-error.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "notebook-failure.png"), full_page=True)
            print(f"failure screenshot: {ARTIFACTS / 'notebook-failure.png'}")
            raise
        finally:
            browser.close()
    print(f"screenshot: {screenshot}")
    assert screenshot.stat().st_size > 10_000


def _rendered_results_js(k: int, first: str = "") -> str:
    """JS that is true once the query image and ``k`` result thumbnails have loaded
    (and the first result's text contains ``first``)."""
    return f"""() => {{
        const loaded = img => img.complete && img.naturalWidth > 0;
        const query = document.querySelector('.similar-images-query-image');
        const cells = [...document.querySelectorAll('.similar-images-results > .widget-vbox')];
        const thumbs = [...document.querySelectorAll('.similar-images-results img')];
        return query && loaded(query) && thumbs.length === {k} && thumbs.every(loaded)
            && cells.length === {k} && cells[0].innerText.includes({first!r})
            && !document.querySelector('.similar-images-busy');
    }}"""


def _wait_for_kernel(notebook_url: str, timeout: float = TIMEOUT_MS / 1000) -> None:
    """Wait until the page has started the notebook's kernel and it is idle."""
    base, token = notebook_url.split("/notebooks/")[0], notebook_url.split("token=")[1]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=patience(60)) as response:
            sessions = json.load(response)
        if any(s["kernel"]["execution_state"] == "idle" for s in sessions):
            return
        time.sleep(0.3)
    pytest.fail(f"the notebook's kernel did not start within {timeout:.0f} s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_server(url: str, server: subprocess.Popen, log: Path, timeout: float = TIMEOUT_MS / 1000) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"jupyter exited ({server.returncode}):\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"jupyter did not answer within {timeout:.0f} s:\n{log.read_text()[-2000:]}")
