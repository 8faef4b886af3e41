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
    saved = tmp_path / "job.yaml"  # Save writes the open files
    assert "max_runtime: 20m" in saved.read_text()
    training = (tmp_path / "training-job.yaml").read_text()
    assert "epochs: 1" in training and "optimizer: sgd" in training
    assert not list(tmp_path.glob("*-1.yaml"))

    expect(launch).to_have_text("Launch")  # nothing left unsaved
    launch.click()
    record = page.locator(".sagebook-record")
    expect(record).to_have_text(re.compile(r"^record: \S+$"), timeout=90_000)
    expect(page.locator(".sagebook-run-status")).to_contain_text("Completed")

    picked = page.locator(".sagebook-picker select option:checked")
    expect(picked).to_have_text("job.yaml")
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


# --------------------------------------------------------------------------------------------
# Saving never loses the form, Save as, every problem at once, typed numbers, and
# the controls in reach

WIDGET_ERRORS = ("widget model not found", "Could not create child view",
                 "Could not add child view")


def opened(page: Page, url: str) -> list[str]:
    """Open the form; return the list the browser console's messages go to."""
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(url)
    expect(page.locator(".sagebook-form")).to_be_visible(timeout=60_000)
    expect(field(page, "training.epochs")).to_be_visible(timeout=30_000)
    return console


def settled(page: Page, fields: int, console: list[str]) -> None:
    """Every field is (still) on the page, and the console has no widget error."""
    expect(page.locator(".sagebook-field")).to_have_count(fields, timeout=20_000)
    page.wait_for_timeout(500)  # a late child view would fail after the count is reached
    expect(page.locator(".sagebook-field")).to_have_count(fields)
    errors = [text for text in console if any(e in text for e in WIDGET_ERRORS)]
    assert not errors, errors[:5]


def test_twenty_saves_in_a_row_keep_every_field(served_form, page, tmp_path):
    """The form emptied after a few saves ("widget model not found"): Save now keeps its
    widgets. Clicked 20 times without edits, 20 times with, and again after a launch."""
    console = opened(page, served_form)
    fields = page.locator(".sagebook-field").count()
    assert fields > 50  # every job and training field (the emptied form kept none)
    save = page.locator("button.sagebook-save")
    launch = page.locator("button.sagebook-launch")
    epochs = field(page, "training.epochs").locator("input")

    def saved_twenty_times() -> None:
        for _ in range(20):
            save.click()
        expect(page.locator(".sagebook-actions")).to_contain_text("Saved", timeout=20_000)
        epochs.fill("5")  # the kernel answers this edit after the twenty clicks before it
        expect(launch).to_have_text("Save and launch", timeout=30_000)
        settled(page, fields, console)

    saved_twenty_times()
    for value in [*(str(count % 3 + 1) for count in range(19)), "7"]:
        epochs.fill(value)
        # the kernel has the edit (a click can overtake a text field's buffered update)
        expect(launch).to_have_text("Save and launch")
        save.click()
        expect(launch).to_have_text("Launch", timeout=20_000)
    assert "epochs: 7" in (tmp_path / "training-job.yaml").read_text()  # the 20th save's
    settled(page, fields, console)
    assert sorted(p.name for p in tmp_path.glob("*.yaml")) == ["job.yaml", "training-job.yaml"]

    epochs.fill("1")
    expect(launch).to_have_text("Save and launch")
    launch.click()
    expect(page.locator(".sagebook-run-status")).to_contain_text("Completed", timeout=90_000)
    saved_twenty_times()
    assert "epochs: 1" in (tmp_path / "training-job.yaml").read_text()  # saved by the launch


def test_save_as_asks_for_a_name_and_shows_the_copy(served_form, page, tmp_path):
    console = opened(page, served_form)
    fields = page.locator(".sagebook-field").count()
    names = page.locator(".sagebook-save-as-names")
    expect(names).to_be_hidden()
    page.locator("button.sagebook-save-as").click()
    expect(names).to_be_visible()
    names.locator("input").first.fill("small.yaml")
    field(page, "training.epochs").locator("input").fill("1")
    page.locator("button.sagebook-save-copy").click()
    picked = page.locator(".sagebook-picker select option:checked")
    expect(picked).to_have_text("small.yaml", timeout=20_000)  # the picker follows
    expect(names).to_be_hidden()
    assert (tmp_path / "small.yaml").is_file() and (tmp_path / "training-job-1.yaml").is_file()
    assert "epochs: 2" in (tmp_path / "training-job.yaml").read_text()  # untouched
    settled(page, fields, console)
    revert = page.locator(".sagebook-actions button", has_text="Revert")
    for _ in range(10):  # Revert still rebuilds the fields: once per click, none lost
        revert.click()
    settled(page, fields, console)
    expect(field(page, "training.epochs").locator("input")).to_have_value("1")


def test_instance_type_typo_is_named_beside_the_missing_keys(served_form, page):
    opened(page, served_form)
    instance_type = field(page, "job.instance_type")
    instance_type.locator("input").fill("ml.m5.xlarg")
    expect(instance_type.locator(".sagebook-error")).to_contain_text(
        "'ml.m5.xlarg' is not one of the", timeout=20_000)
    expect(instance_type.locator(".sagebook-error")).to_contain_text("nearest: ml.m5.xlarge")
    for key in ("job.image_uri", "job.role_arn"):
        expect(field(page, key).locator(".sagebook-error")).to_contain_text(
            "required for instance_type ml.m5.xlarg")
    expect(page.locator(".sagebook-actions")).to_contain_text("3 problems")
    expect(page.locator("button.sagebook-save")).to_be_disabled()
    link = field(page, "job.training_config").locator("input")  # Save's to set, yet readable
    expect(link).to_be_disabled()
    expect(link).to_have_css("opacity", "1")


def test_text_in_a_number_field_says_no_and_blocks_save(served_form, page):
    opened(page, served_form)
    rate = field(page, "training.learning_rate")
    rate.locator("input").fill("abc")
    expect(rate.locator(".sagebook-error")).to_contain_text(
        "training.learning_rate: Input should be a valid number", timeout=20_000)
    expect(rate.locator("input")).to_have_value("abc")  # not silently put back
    expect(page.locator("button.sagebook-save")).to_be_disabled()
    rate.locator("input").fill("1e-3")
    expect(rate.locator(".sagebook-error")).to_be_hidden()
    expect(page.locator("button.sagebook-save")).to_be_enabled()


def test_controls_stay_on_screen_and_a_problem_leads_to_its_field(served_form, page):
    opened(page, served_form)
    epochs = field(page, "training.epochs")
    epochs.locator("input").fill("0")
    expect(page.locator(".sagebook-actions")).to_contain_text("1 problem", timeout=20_000)
    page.locator(".sagebook-picker").scroll_into_view_if_needed()  # back to the top
    link = page.locator(".sagebook-problem-link")
    expect(link).to_have_text(
        "training.epochs: Input should be greater than or equal to 1 (got 0)")
    link.click()
    expect(epochs.locator("input")).to_be_in_viewport()
    expect(epochs.locator("input")).to_be_focused()
    for name in ("save", "launch"):  # the training section is thousands of pixels down
        expect(page.locator(f"button.sagebook-{name}")).to_be_in_viewport()
    expect(page.locator(".sagebook-actions")).to_contain_text("1 problem")
    box = page.locator(".sagebook-actions").bounding_box()
    assert box is not None and -12 <= box["y"] <= 0, box  # at the very top, nothing above
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "edit_config-sticky.png"))
