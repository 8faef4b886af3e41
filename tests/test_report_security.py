"""The report and the dashboard show records that anyone with write access to the store wrote:
no page holds markup a planted record can run, fetch or redirect with, every report page
carries a Content-Security-Policy that allows only its own scripts, and the genuine content
(outputs, images, tables, charts) still shows. Read as HTML here; test_report_browser.py runs
the same store in Chromium."""

from __future__ import annotations

import re

import nbformat
import pytest
from nbconvert import HTMLExporter
from planted_report import (
    GENUINE,
    INERT,
    Elements,
    dangers,
    hostile_notebook,
    payloads,
    plant,
    policy,
)

from sagebook import layout, report
from sagebook.dashboard import Dashboard

SENTINEL = "http://127.0.0.1:9"  # nothing listens: only the page's markup is read here


def pages(store) -> dict[str, str]:
    return {key: store.read_text(key) for key in store.list("_report") if key.endswith(".html")}


def test_no_page_of_a_planted_store_holds_what_runs_and_genuine_content_stays(store):
    planted = plant(store, SENTINEL)
    report.render(store)
    found = pages(store)
    hostile, genuine = planted["hostile"], planted["genuine"]
    assert set(found) == {
        "_report/index.html",
        *(layout.run_page_key("exp-a", r.run_id) for r in (hostile, genuine)),
        *(layout.notebook_page_key("exp-a", r.run_id) for r in (hostile, genuine)),
        layout.sweep_page_key("exp-a", planted["sweep"].sweep_id)}
    for key, html in found.items():
        assert dangers(html) == [], key

    notebook = Elements(found[layout.notebook_page_key("exp-a", hostile.run_id)])
    text = "".join(notebook.text)
    assert GENUINE in text and "Results" in text and "0.01" in text
    sources = [attrs.get("src", "") for tag, attrs, _ in notebook.tags if tag == "img"]
    assert any(src.startswith("data:image/png;base64,") for src in sources)  # the plot
    assert any(src.startswith("data:image/svg+xml;base64,") for src in sources)  # as an image
    links = [attrs.get("href") for tag, attrs, _ in notebook.tags if tag == "a"]
    assert "https://example.com/docs" in links
    classes = {c for _, attrs, _ in notebook.tags for c in attrs.get("class", "").split()}
    assert {"cell", "input_area", "output_area", "highlight", "dataframe"} <= classes

    # record fields are shown as the text they are, escaped, wherever a page shows them
    bad = payloads(SENTINEL)
    run_text = "".join(Elements(found[layout.run_page_key("exp-a", hostile.run_id)]).text)
    for field in ("svg onload", "details ontoggle", "img onerror", "script", "mutation"):
        assert bad[field] in run_text, field
    index_text = "".join(Elements(found["_report/index.html"]).text)
    assert bad["svg onload"] in index_text and bad["img onerror"] in index_text
    sweep_text = "".join(Elements(found[layout.sweep_page_key(
        "exp-a", planted["sweep"].sweep_id)]).text)
    assert bad["script"] in sweep_text and bad["iframe"] in sweep_text


def test_every_page_allows_only_the_scripts_the_report_wrote(tmp_path):
    from sagebook.stores import open_store

    store = open_store(str(tmp_path / "records"))
    plant(store, SENTINEL)
    report.render(store)
    for key, html in pages(store).items():
        csp = dict(part.strip().split(" ", 1) for part in policy(html).split(";"))
        assert csp["default-src"] == "'none'" and csp["img-src"] == "data:", key
        assert csp["base-uri"] == "'none'" and csp["form-action"] == "'none'", key
        scripts = Elements(html).scripts
        if key == "_report/index.html":  # sorting and filtering: its one script, by hash
            assert len(scripts) == 1 and re.fullmatch(r"'sha256-[A-Za-z0-9+/]{43}='",
                                                      csp["script-src"]), key
        else:
            assert scripts == [] and csp["script-src"] == "'none'", key


@pytest.mark.parametrize("name", sorted(payloads(SENTINEL)))
def test_the_sanitizer_drops_each_payload_from_an_output_and_a_markdown_cell(name):
    markup = payloads(SENTINEL)[name]
    for where in ("output", "markdown"):
        cell = (nbformat.v4.new_markdown_cell(markup) if where == "markdown" else
                nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output(
                    "display_data", data={"text/html": markup})]))
        body = HTMLExporter(template_name="basic").from_notebook_node(
            nbformat.v4.new_notebook(cells=[cell]))[0]
        assert bool(dangers(body)) != (name in INERT), f"{name} in a {where}, unsanitized"
        assert dangers(report.sanitized(body)) == [], f"{name} in a {where}"


def test_the_sanitizer_keeps_what_nbconvert_marks_a_notebook_up_with():
    body = HTMLExporter(template_name="basic").from_notebook_node(
        nbformat.reads(hostile_notebook(SENTINEL), as_version=4))[0]
    kept = Elements(report.sanitized(body))
    wanted = Elements(body)
    genuine_classes = {"cell", "code_cell", "text_cell", "prompt", "input_prompt", "inner_cell",
                       "input_area", "highlight", "output_wrapper", "output_area",
                       "output_subarea", "output_stream", "output_png", "rendered_html",
                       "dataframe", "anchor-link"}
    classes = {c for _, attrs, _ in kept.tags for c in attrs.get("class", "").split()}
    assert genuine_classes <= classes <= {
        c for _, attrs, _ in wanted.tags for c in attrs.get("class", "").split()}
    assert any(tag == "h1" and attrs.get("id") == "Results" for tag, attrs, _ in kept.tags)


def test_the_dashboard_shows_planted_records_as_text(store):
    planted = plant(store, SENTINEL)
    board = Dashboard(store)
    hostile, genuine = planted["hostile"], planted["genuine"]
    views = {"table": board.table(), "status": board.status_table(),
             "curves": board.curves(hostile), "compare": board.compare(),
             "diff": board.diff(hostile, genuine), "sweep": board.sweep(planted["sweep"].sweep_id)}
    bad = payloads(SENTINEL)
    for name, view in views.items():
        html = view._repr_html_() if hasattr(view, "_repr_html_") else ""
        assert dangers(html) == [], name
    assert bad["svg onload"] in "".join(Elements(views["table"].html).text)
    assert bad["script"] in "".join(Elements(views["diff"].html).text)
    assert bad["iframe"] in "".join(Elements(views["sweep"].html).text)
