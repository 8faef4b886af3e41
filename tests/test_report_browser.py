"""The report of a planted store in a real browser: `sagebook report` over records whose notebooks
and fields hold scripts, event handlers, `javascript:` links, SVG, frames and beacons (see
planted_report.py), then every page — index, run pages, notebook pages, the sweep page — opened
in Debian's Chromium from a local folder (file://) and from S3 (the local endpoint). No planted
script runs (each would set `window.__pwned`, retitle the page or call a sentinel server on
127.0.0.1), nothing is fetched but the report's own files, and the genuine content shows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbconvert import HTMLExporter
from planted_report import GENUINE, hostile_notebook, plant
from test_report import site  # noqa: F401  (the fixture: a store and the URL of its root)

from conftest import sagebook

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Run in each page after it loaded: markup that got past the sanitizer (were there a hole)
# meets the page's Content-Security-Policy alone.
PAST_THE_SANITIZER = """() => {
  document.body.insertAdjacentHTML('beforeend',
    '<img src="data:," onerror="window.__pwned=`csp-handler`">');
  const s = document.createElement('script');
  s.textContent = "window.__pwned='csp-script'";
  document.body.appendChild(s);
}"""


class Sentinel:
    """An HTTP server on 127.0.0.1 that answers everything and remembers every path asked."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        sentinel = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                sentinel.requests.append(self.path)
                self.send_response(204)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture
def sentinel() -> Iterator[Sentinel]:
    server = Sentinel()
    yield server
    server.server.shutdown()
    server.server.server_close()


def visit(page: Any, url: str) -> None:
    """Open a page and give a planted script every chance: load, timers, clicks on its links
    and buttons, focus."""
    page.goto(url)
    page.wait_for_load_state("load")
    for target in page.locator("a.bad-link, button.bad-button, input").all():
        target.click(timeout=2000, no_wait_after=True)
    page.wait_for_timeout(400)


def test_no_planted_script_runs_on_any_page_and_the_genuine_content_shows(site, browser,  # noqa: F811
                                                                          sentinel):
    store, root = site
    planted = plant(store, sentinel.url)
    done = sagebook("report", "--store", store.uri)
    assert done.returncode == 0, done.stderr
    keys = sorted(k for k in store.list("_report") if k.endswith(".html"))
    assert len(keys) == 6  # the index, two run pages, two notebook pages, the sweep page

    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(5000)
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url))
    page.on("dialog", lambda d: (fetched.append(f"dialog {d.message}"), d.dismiss()))
    for key in keys:
        visit(page, f"{root}/{key}")
        assert page.url == f"{root}/{key}", f"{key} went elsewhere"
        assert page.evaluate("window.__pwned") is None, key
        assert "pwned" not in page.title(), key
        page.evaluate(PAST_THE_SANITIZER)
        page.wait_for_timeout(200)
        assert page.evaluate("window.__pwned") is None, f"{key}: its policy let a script run"
    assert sentinel.requests == []
    assert all(url.startswith((root, "data:")) for url in fetched), fetched

    hostile, genuine = planted["hostile"], planted["genuine"]
    for run in (genuine, hostile):  # the outputs, the plot as an image
        page.goto(f"{root}/_report/runs/exp-a/{run.run_id}.notebook.html")
        assert GENUINE in page.inner_text("body")
        assert page.eval_on_selector(
            "img[src^='data:image/png']", "i => i.complete && i.naturalWidth") == 2
    assert page.inner_text("#genuine-cell") == "0.01"
    page.goto(f"{root}/_report/runs/exp-a/{genuine.run_id}.html")
    assert page.locator("svg[aria-label='acc']").count() == 1  # a metric curve
    page.goto(f"{root}/{keys[0]}")  # the index: its own script sorts the table
    assert keys[0] == "_report/index.html"
    order = "() => Array.from(document.querySelectorAll('#runs tbody tr')).map(r => r.dataset.run)"
    page.click("th[data-col='run']")
    first = page.evaluate(order)
    page.click("th[data-col='run']")
    assert page.evaluate(order) == list(reversed(first)) and len(first) == 2
    page.goto(f"{root}/_report/sweeps/exp-a/{planted['sweep'].sweep_id}.html")
    assert page.locator("#over-time circle").count() == 2
    context.close()


def test_the_same_payloads_run_in_a_page_without_the_defences(tmp_path, browser, sentinel):
    """The planted notebook, as nbconvert alone renders it: the test above would see it run."""
    body, _ = HTMLExporter(template_name="basic").from_notebook_node(
        nbformat.reads(hostile_notebook(sentinel.url), as_version=4))
    page_path = Path(tmp_path / "bare.html")
    page_path.write_text(f"<!DOCTYPE html><html><body>{body}</body></html>")
    page = browser.new_page()
    page.goto(page_path.as_uri())
    page.wait_for_timeout(400)
    assert page.evaluate("window.__pwned") is not None
    assert sentinel.requests
    page.close()
