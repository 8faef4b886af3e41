"""The dashboard notebook and the report as a data scientist sees them: a store of a few runs
(one failed, curves over epochs, metric definitions whose first validation metric is the
objective), the dashboard executed by papermill and exported to HTML, the report written, and
both opened in Debian's Chromium at a laptop's width. What the eye checks is asserted where it
can be — one colour and one legend per run, named axes, the objective as the main metric, a
runs table that fits — and each page is kept as a screenshot in test-artifacts/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from matplotlib.legend import Legend

from sagebook.dashboard import Dashboard, export_html
from sagebook.stores import open_store

from conftest import REPO, add_run, sagebook

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DASHBOARD = REPO / "notebooks" / "experiments.ipynb"
PAPERMILL = Path(sys.executable).parent / "papermill"
ARTIFACTS = REPO / "test-artifacts"
DEFINITIONS = ["train_loss", "val_loss", "val_accuracy"]  # as configs/ define them
VIEWPORT = {"width": 1280, "height": 900}


def planted_store(root: Path) -> tuple[Any, list[Any]]:
    """Three completed runs that differ in learning rate and optimizer, three epochs of every
    metric each (numbered by the log: `epoch=N`), and the newest run failed without metrics."""
    store = open_store(str(root))
    runs = []
    for i, (rate, optimizer) in enumerate([(0.1, "adam"), (0.01, "sgd"), (0.001, "adam")]):
        final = {"train_loss": 0.5 - 0.1 * i, "val_loss": 0.6 - 0.1 * i,
                 "val_accuracy": 0.8 + 0.05 * i}
        run = add_run(store, metrics=final, created=f"2026-01-01T1{i}:00:00+00:00",
                      training={"learning_rate": rate, "optimizer": optimizer, "epochs": 3})
        run.put_text("metrics.jsonl", "".join(
            json.dumps({"name": name, "value": value * (1 + (2 - epoch) / 10), "step": epoch,
                        "unit": "epoch"}) + "\n"
            for epoch in range(1, 4) for name, value in final.items()))
        run.put_text("request.json", json.dumps({"AlgorithmSpecification": {
            "MetricDefinitions": [{"Name": n, "Regex": f"{n}=(.*)"} for n in DEFINITIONS]}}))
        runs.append(run)
    runs.append(add_run(store, status="Failed", failure="CUDA out of memory",
                        created="2026-01-01T15:00:00+00:00",
                        training={"learning_rate": 0.1, "optimizer": "sgd", "epochs": 3}))
    return store, runs


def test_dashboard_plots_share_run_colours_and_one_legend(tmp_path):
    """In the figures themselves: the overlay has one legend (the figure's, outside every
    plot) with a label per run naming all that differs, named axes over whole epochs; a run's
    curves are drawn in the colour the overlay gives it; the default selection shows the
    newest, failed, run."""
    store, runs = planted_store(tmp_path / "records")
    board = Dashboard(store)
    chosen = board.select()
    assert [r.run_id for r in chosen] == [r.run_id for r in reversed(runs)]
    overlay = board.overlay(chosen).figure
    assert [len(a.get_legend() and [1] or []) for a in overlay.axes] == [0, 0, 0]
    legends = overlay.findobj(Legend)
    assert len(legends) == 1
    labels = [t.get_text() for t in legends[0].get_texts()]
    assert labels == ["learning_rate=0.001, optimizer=adam", "learning_rate=0.01, optimizer=sgd",
                      "learning_rate=0.1, optimizer=adam"]
    for axes in overlay.axes:
        assert axes.get_xlabel() == "epoch" and axes.get_ylabel() == axes.get_title()
        assert all(float(t).is_integer() for t in axes.get_xticks())
    colours = dict(zip(labels, [h.get_color() for h in legends[0].legend_handles], strict=True))
    curves = board.curves(chosen[1]).figure
    assert curves.axes[0].lines[0].get_color() == colours["learning_rate=0.001, optimizer=adam"]
    assert len(set(colours.values())) == 3


def test_dashboard_and_report_in_chromium(tmp_path, browser):
    store, runs = planted_store(tmp_path / "records")
    executed = tmp_path / "dashboard.ipynb"
    done = subprocess.run([str(PAPERMILL), str(DASHBOARD), str(executed), "-p", "store",
                           store.uri], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    page_path = export_html(executed, tmp_path / "dashboard.html")
    report = sagebook("report", "--store", store.uri)
    assert report.returncode == 0, report.stderr
    ARTIFACTS.mkdir(exist_ok=True)

    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(10000)
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url))

    page.goto(page_path.as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert all(url.startswith(("file:", "data:")) for url in fetched), fetched  # no CDN
    assert page.inner_text(".main-metric") == "val_loss"  # the first validation metric
    assert page.locator(".legend").count() == 1
    assert page.locator(".legend .legend-item").count() == 3  # the runs with metrics
    assert_charts_named(page)
    # the runs table: one line a run, inside the notebook's column, a failure column
    box = page.evaluate("""() => { const t = document.querySelector('#runs');
        const area = t.closest('.jp-OutputArea-output') || t.parentElement.parentElement;
        return {table: t.getBoundingClientRect().width, area: area.clientWidth,
                page: document.documentElement.scrollWidth, window: window.innerWidth,
                rows: Array.from(t.tBodies[0].rows).map(r => r.getBoundingClientRect().height),
                heads: Array.from(t.tHead.rows[0].cells).map(c => c.textContent)}; }""")
    assert box["table"] <= box["area"], box
    assert box["page"] <= box["window"], box
    assert max(box["rows"]) < 2 * min(box["rows"]), box  # nothing wraps onto a second line
    assert "failure" in box["heads"] and "tags" not in box["heads"]  # empty columns hidden
    assert box["heads"].index("val_loss") < box["heads"].index("train_loss")
    assert "CUDA out of memory" in page.inner_text("#runs")
    assert page.locator("img").count() >= 4  # status counts, curves, the overlay

    fetched.clear()
    page.goto((tmp_path / "records" / "_report" / "index.html").as_uri())
    page.screenshot(path=str(ARTIFACTS / "report-index.png"), full_page=True)
    assert all(url.startswith(("file:", "data:")) for url in fetched), fetched
    assert page.inner_text("#main-metric") == "val_loss"
    assert page.locator(".legend .legend-item").count() == 3
    assert_charts_named(page)
    colours = page.evaluate("""() => Array.from(document.querySelectorAll(
        '#parallel polyline')).map(l => l.getAttribute('stroke'))""")
    assert len(set(colours)) == 3
    # a table wider than the window scrolls in its own box, its header row kept in sight
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]
    assert page.evaluate("document.querySelector('.runs-box').clientWidth") <= VIEWPORT["width"]

    page.goto((tmp_path / "records" / "_report" / "runs" / "exp-a"
               / f"{runs[2].run_id}.html").as_uri())
    page.screenshot(path=str(ARTIFACTS / "report-run.png"), full_page=True)
    chart = page.locator("svg[aria-label='val_loss']")
    assert chart.locator(".x-label").text_content() == "epoch"
    assert chart.locator(".y-label").text_content() == "val_loss"
    assert chart.locator(".tick").all_text_contents()[-3:] == ["1", "2", "3"]  # whole epochs

    # more runs than colours: coloured by the objective, the legend giving its values
    for i in range(10):
        add_run(store, metrics={"val_loss": 0.3 + 0.03 * i, "train_loss": 0.2,
                                "val_accuracy": 0.9},
                created=f"2026-01-02T1{i}:00:00+00:00",
                training={"learning_rate": 0.001 * (i + 1), "optimizer": "adam", "epochs": 3})
    assert sagebook("report", "--store", store.uri).returncode == 0
    page.goto((tmp_path / "records" / "_report" / "index.html").as_uri())
    page.screenshot(path=str(ARTIFACTS / "report-index-many.png"), full_page=True)
    legend = page.locator(".legend")
    assert legend.get_attribute("aria-label") == "colour: val_loss"
    assert legend.locator(".legend-item").count() >= 3
    strokes = page.evaluate("""() => Array.from(document.querySelectorAll(
        '#parallel polyline')).map(l => l.getAttribute('stroke'))""")
    assert len(strokes) == 13 and len(set(strokes)) >= 10
    context.close()


def assert_charts_named(page: Any) -> None:
    """Every scatter's y axis is the main metric and its x axis the parameter; ticks enough to
    read a value (at least three on the metric's axis)."""
    scatters = page.locator("svg.scatter")
    assert scatters.count() == 2  # learning_rate, optimizer
    for i in range(scatters.count()):
        chart = scatters.nth(i)
        assert chart.locator(".y-label").text_content() == "val_loss"
        assert chart.locator(".x-label").text_content() in ("learning_rate", "optimizer")
        assert chart.locator(".tick").count() >= 5
