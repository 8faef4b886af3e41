"""The config form in a real browser: edit_config.ipynb served by voila on 127.0.0.1, driven
in Debian's chromium by playwright — fill fields, watch an error come and go, save, launch,
and read the record's location on the page.

voila comes from its own venv (`make browser-venv`, which `make test` builds): installing it
slows every nbformat import, so it stays out of the venv that runs launches. Its kernel runs
the form and the launches. playwright is a plain client, from the test extra.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from conftest import REPO, manifest, runs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

VOILA = REPO / ".venv-browser" / "bin" / "voila"
ARTIFACTS = REPO / "test-artifacts"
NOTEBOOK = REPO / "notebooks" / "edit_config.ipynb"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    """Up means the port accepts connections (an HTTP GET of / would start a kernel)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"voila exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"voila did not listen on port {port} within {timeout}s")


@pytest.fixture
def served_form(make_config, tmp_path: Path) -> Iterator[str]:
    """edit_config.ipynb with its `config` parameter set to a scratch job config (as
    `papermill --prepare-only -p config …` sets it), served by voila; yields the page URL."""
    import papermill as pm

    assert VOILA.exists(), f"{VOILA} is missing: make browser-venv (make test builds it)"
    notebook = tmp_path / "edit_config.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(notebook), prepare_only=True,
                        parameters={"config": str(make_config())}, progress_bar=False)
    port = free_port()
    log = (tmp_path / "voila.log").open("w")
    voila = subprocess.Popen(
        [str(VOILA), str(notebook), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
         "--show_tracebacks=True"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
    )
    try:
        wait_for_port(port, voila)
        yield f"http://127.0.0.1:{port}/"
    finally:
        voila.terminate()
        try:
            voila.wait(timeout=20)
        except subprocess.TimeoutExpired:
            voila.kill()
            voila.wait()
        log.close()


@pytest.fixture
def page(browser) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    # Keep the test on this machine: voila's template asks a CDN for icon fonts.
    page.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())
    yield page
    page.close()


def field(page: Page, key: str):
    return page.locator(f".sagebook-key-{key.replace('.', '-')}")


def test_form_in_chromium_validates_saves_and_launches(served_form, page, tmp_path):
    page.goto(served_form)
    expect(page.locator(".sagebook-form")).to_be_visible(timeout=60_000)
    save = page.locator("button.sagebook-save")
    launch = page.locator("button.sagebook-launch")
    expect(save).to_be_enabled()

    epochs = field(page, "training.epochs")
    epochs.locator("input").fill("0")
    expect(epochs.locator(".sagebook-error")).to_have_text(
        "training.epochs: Input should be greater than or equal to 1 (got 0)")
    expect(save).to_be_disabled()
    expect(launch).to_be_disabled()
    expect(page.locator(".sagebook-actions")).to_contain_text("1 problem")
    epochs.locator("input").fill("1")
    expect(epochs.locator(".sagebook-error")).to_be_hidden()
    expect(epochs).to_have_class(re.compile(r"\bsagebook-changed\b"))

    runtime = field(page, "job.max_runtime")
    runtime.locator("input").fill("soon")
    expect(runtime.locator(".sagebook-error")).to_contain_text(
        "job.max_runtime: expected a duration such as 90m, 2h or 3600 (seconds)")
    expect(save).to_be_disabled()
    runtime.locator("input").fill("20m")
    expect(runtime.locator(".sagebook-error")).to_be_hidden()
    field(page, "training.optimizer").locator("select").select_option("sgd")
    expect(save).to_be_enabled()

    save.click()
    expect(page.locator(".sagebook-actions")).to_contain_text("Saved", timeout=20_000)
    saved = tmp_path / "job-1.yaml"
    assert saved.is_file() and "max_runtime: 20m" in saved.read_text()
    training = (tmp_path / "training-job-1.yaml").read_text()
    assert "epochs: 1" in training and "optimizer: sgd" in training

    expect(launch).to_have_text("Launch")  # nothing left unsaved
    launch.click()
    record = page.locator(".sagebook-record")
    expect(record).to_have_text(re.compile(r"^record: \S+$"), timeout=90_000)
    expect(page.locator(".sagebook-run-status")).to_contain_text("Completed")

    picked = page.locator(".sagebook-picker select option:checked")
    expect(picked).to_have_text("job-1.yaml")  # the picker follows the save
    (run,) = runs(tmp_path / "experiments")
    assert record.inner_text() == f"record: {run}"
    assert manifest(run)["status"] == "Completed"
    assert manifest(run)["config"]["job_file"] == str(saved)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "edit_config.png"))  # the run's end, as the user sees it
    # voila scrolls an inner element, not the document: size the window to the tallest one
    height = page.evaluate("() => Math.max(...Array.from(document.querySelectorAll('*'), "
                           "e => e.scrollHeight))")
    page.set_viewport_size({"width": 1300, "height": max(900, min(height, 12_000))})
    page.screenshot(path=str(ARTIFACTS / "edit_config-full.png"), full_page=True)
