"""`sagebook report`: a static site in the record store, opened in headless Chromium from a
local folder (file://) and from S3 (the local endpoint), with no server and no internet."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlparse

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from sagebook import cli, layout, report
from sagebook.stores import Store, open_store

from conftest import add_run

# a 2x2 PNG
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6Q"
       "AAAABJRU5ErkJggg==")


@pytest.fixture(params=["local", "s3"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, str]:
    """A store, and the URL a browser opens its root at."""
    if request.param == "local":
        store = open_store(str(tmp_path / "records"))
        return store, (tmp_path / "records").as_uri()
    import boto3

    bucket = request.getfixturevalue("bucket")
    # How a team opens the site from S3: a bucket policy lets browsers read the store (on AWS,
    # limited to the team's network or identities; here, anyone on 127.0.0.1).
    boto3.client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": f"arn:aws:s3:::{bucket}/team/records/*"}],
    }))
    endpoint = request.getfixturevalue("aws")
    return open_store(f"s3://{bucket}/team/records"), f"{endpoint}/{bucket}/team/records"


def executed_notebook() -> str:
    nb = new_notebook(cells=[
        new_markdown_cell("# Launch"),
        new_code_cell("print('hello from the notebook')", execution_count=1, outputs=[
            new_output("stream", name="stdout", text="hello from the notebook\n"),
            new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
        ]),
    ])
    return nbformat.writes(nb)


def test_report_opens_without_a_server_and_every_link_resolves(site, browser, capsys):
    store, root = site
    good = add_run(store, metrics={"acc": 0.9, "loss": 0.2}, user="ann",
                   created="2026-01-01T10:00:00+00:00")
    good.put_text("notebook.ipynb", executed_notebook())
    good.update(notebook={"status": "completed"})
    bad = add_run(store, status="Failed", metrics={"acc": 0.4}, failure="CUDA OOM", user="bob",
                  created="2026-01-01T11:00:00+00:00")
    other = add_run(store, "exp-b", metrics={"acc": 0.7}, user="cy",
                    created="2026-01-01T12:00:00+00:00")

    assert cli.main(["report", "--store", store.uri]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == store.url("_report/index.html")
    assert "3 of 3 run pages rendered (1 notebooks)" in out.err

    for key in store.list("_report"):  # nothing that would reach the internet
        if key.endswith(".html"):
            text = store.read_text(key)
            assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), key
            assert "@import" not in text, key

    requests: list[str] = []
    page = browser.new_page()
    page.set_default_timeout(5000)
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{root}/_report/index.html")
    rows = page.eval_on_selector_all("#runs tbody tr", "rows => rows.map(r => r.dataset.run)")
    assert rows == [other.run_id, bad.run_id, good.run_id]  # newest first
    failed_cell = page.locator(f"tr[data-run='{bad.run_id}'] td.status")
    assert failed_cell.inner_text() == "Failed"
    assert failed_cell.evaluate("c => getComputedStyle(c).color") == "rgb(207, 34, 46)"

    page.click("th[data-col='acc']")
    assert _order(page) == [bad.run_id, other.run_id, good.run_id]
    page.click("th[data-col='acc']")
    assert _order(page) == [good.run_id, other.run_id, bad.run_id]
    page.fill("#filter", "bob")
    assert page.inner_text("#shown") == "1" and _visible(page) == [bad.run_id]
    page.fill("#filter", "")

    for href in _links(page):
        _assert_resolves(href)
    page.click(f"a[href='runs/exp-a/{good.run_id}.html']")
    assert page.inner_text("h1") == good.run_id
    assert page.locator("svg[aria-label='acc']").count() == 1  # the metric curve
    for href in _links(page):
        _assert_resolves(href)
    page.click("text=executed notebook")
    assert "hello from the notebook" in page.content()
    assert page.eval_on_selector("img", "i => i.complete && i.naturalWidth") == 2
    assert all(url.startswith((root, "data:")) for url in requests), requests
    page.close()


def _order(page) -> list[str]:
    return page.eval_on_selector_all("#runs tbody tr", "rows => rows.map(r => r.dataset.run)")


def _visible(page) -> list[str]:
    return page.eval_on_selector_all(
        "#runs tbody tr", "rows => rows.filter(r => r.offsetParent).map(r => r.dataset.run)")


def _links(page) -> list[str]:
    hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")
    return [urljoin(page.url, h) for h in hrefs]


def _assert_resolves(url: str) -> None:
    if url.startswith("file://"):
        assert Path(urlparse(url).path).is_file(), url
    else:
        with urllib.request.urlopen(url) as answer:  # the local S3 endpoint, as a browser
            assert answer.status == 200, url
            if url.endswith(".html"):
                assert answer.headers["Content-Type"].startswith("text/html"), url


def test_report_renders_only_what_changed(tmp_path):
    store = open_store(str(tmp_path / "records"))
    first = add_run(store, metrics={"acc": 0.5})
    add_run(store, metrics={"acc": 0.6})
    assert report.render(store).rendered == 2
    page = tmp_path / "records" / "_report" / "runs" / "exp-a" / f"{first.run_id}.html"
    before = page.stat().st_mtime_ns
    assert report.render(store).rendered == 0
    first.update(note="reviewed")
    assert report.render(store).rendered == 1
    assert page.stat().st_mtime_ns > before
    from sagebook.runs.details import annotate

    annotate(first, note="a note is on the page")  # the manifest is unchanged
    assert report.render(store).rendered == 1
    assert "a note is on the page" in page.read_text()
    assert report.render(store, hide_inputs=True).rendered == 2  # another rendering: all again
    state = json.loads(store.read_text(layout.REPORT_STATE))
    assert state["options"]["hide_inputs"] is True and len(state["runs"]) == 2


def test_hidden_inputs_leave_only_outputs(tmp_path):
    store = open_store(str(tmp_path / "records"))
    run = add_run(store)
    run.put_text("notebook.ipynb", executed_notebook())
    report.render(store, hide_inputs=True)
    html = store.read_text(layout.notebook_page_key("exp-a", run.run_id))
    assert "hello from the notebook" in html and 'class="input_area"' not in html
    report.render(store, force=True)
    html = store.read_text(layout.notebook_page_key("exp-a", run.run_id))
    assert "hello from the notebook" in html and 'class="input_area"' in html


def test_pages_are_masked_like_records_even_for_an_unmasked_record(tmp_path):
    store = open_store(str(tmp_path / "store"))
    record = add_run(store, failure="boom")
    raw = json.loads(store.read_text(f"{record.prefix}/manifest.json"))
    raw["failure_reason"] = "boom: AKIAQWERTYUIOPASDFGH api_key=s3cr3tv4lu3xyz"
    store.write_text(f"{record.prefix}/manifest.json", json.dumps(raw))  # an older writer's
    report.render(store)
    page = store.read_text(layout.run_page_key(record.experiment, record.run_id))
    assert "boom: **** api_key=****" in page
    assert "AKIAQWERTYUIOPASDFGH" not in page and "s3cr3tv4lu3xyz" not in page


def test_report_filters_and_compares_parameters_in_the_browser(tmp_path, browser):
    store = open_store(str(tmp_path / "records"))
    runs_made = [
        add_run(store, metrics={"acc": acc, "loss": 1 - acc}, created=f"2026-01-0{i + 1}T10:00:00"
                "+00:00", training={"learning_rate": lr, "optimizer": opt, "epochs": 5})
        for i, (lr, opt, acc) in enumerate([(0.01, "adam", 0.9), (0.1, "sgd", 0.7),
                                            (0.001, "adam", 0.8)])]
    reason = "AlgorithmError: " + "x" * 1100
    failed = add_run(store, status="Failed", failure=reason[:1024], created="2026-01-05T10:00:00"
                     "+00:00", training={"learning_rate": 1.0, "optimizer": "sgd", "epochs": 5})
    failed.put_text("failure.txt", reason + "\nTraceback: the whole story\n")
    from sagebook.runs.details import annotate

    annotate(runs_made[0], tags=["stage=best"], note="the one to beat", name="baseline")
    report.render(store)

    page = browser.new_page()
    page.set_default_timeout(5000)
    page.goto((tmp_path / "records" / "_report" / "index.html").as_uri())
    headers = page.eval_on_selector_all("#runs th[data-col]", "hs => hs.map(h => h.dataset.col)")
    assert {"learning_rate", "optimizer", "failure", "name", "tags", "note"} <= set(headers)
    assert "epochs" not in headers  # the same in every run
    assert "cost" not in headers  # no run has one: the column is left out

    def drawn():
        return page.eval_on_selector_all(
            "#parallel polyline.run", "ls => ls.filter(l => l.style.display !== 'none')"
                                      ".map(l => l.dataset.run)")

    box = page.locator("#parallel").bounding_box()
    assert box and box["width"] > 300 and box["height"] > 100  # the view renders
    assert sorted(drawn()) == sorted(r.run_id for r in runs_made)  # runs with metrics
    assert page.locator("svg.scatter").count() == 2  # learning_rate and optimizer vs acc

    page.fill("#filter", "learning_rate<0.05 optimizer=adam")
    assert page.inner_text("#shown") == "2"
    assert sorted(drawn()) == sorted([runs_made[0].run_id, runs_made[2].run_id])
    page.uncheck(f"tr[data-run='{runs_made[2].run_id}'] input.pick")  # not chosen
    assert drawn() == [runs_made[0].run_id]
    page.fill("#filter", "stage=best")
    assert _visible(page) == [runs_made[0].run_id]
    assert "the one to beat" in page.inner_text(f"tr[data-run='{runs_made[0].run_id}']")
    page.fill("#filter", "")
    for href in _links(page):
        _assert_resolves(href)

    page.click(f"a[href='runs/exp-a/{failed.run_id}.html']")
    assert "failed before reporting any" in page.inner_text("#no-metrics")
    assert "first 1,024 characters" in page.inner_text(".cut")
    assert "Traceback: the whole story" in page.content()
    for href in _links(page):
        _assert_resolves(href)
    page.close()


def test_the_index_page_draws_one_page_of_runs_and_finds_any_of_them(tmp_path, browser):
    """More runs than one page holds: the table draws PAGE_ROWS of them, the next page the
    rest, and a filter or a sort reaches a run that is not on the page shown."""
    store = open_store(str(tmp_path / "records"))
    count = report.PAGE_ROWS + 30
    runs = [add_run(store, metrics={"acc": i / 1000}, user="zed" if i == 0 else "ann",
                    created=f"2026-01-{1 + i // 24:02d}T{i % 24:02d}:00:00+00:00")
            for i in range(count)]
    report.render(store)
    html = store.read_text("_report/index.html")
    assert html.count("<tr data-run=") == report.PAGE_ROWS  # the page itself holds one page

    page = browser.new_page()
    page.set_default_timeout(5000)
    page.goto((tmp_path / "records" / "_report" / "index.html").as_uri())
    assert _order(page) == [r.run_id for r in reversed(runs)][:report.PAGE_ROWS]
    assert page.inner_text("#page") == "1 of 2"
    assert page.get_attribute("#prev", "aria-disabled") == "true"
    page.click("#next")
    assert _order(page) == [r.run_id for r in reversed(runs)][report.PAGE_ROWS:]
    assert page.inner_text("#page") == "2 of 2"
    assert page.get_attribute("#next", "aria-disabled") == "true"
    page.click("#prev")
    page.fill("#filter", "user=zed")  # the oldest run, on the second page
    assert page.inner_text("#shown") == "1" and _visible(page) == [runs[0].run_id]
    page.fill("#filter", "zed")  # as text anywhere in the row
    assert _visible(page) == [runs[0].run_id]
    page.fill("#filter", "")
    assert page.inner_text("#shown") == str(count)
    page.click("th[data-col='acc']")  # ascending over every run, not only the page shown
    assert _order(page)[0] == runs[0].run_id
    page.click("th[data-col='acc']")
    assert _order(page)[0] == runs[-1].run_id
    page.click(f"a[href='runs/exp-a/{runs[-1].run_id}.html']")
    assert page.inner_text("h1") == runs[-1].run_id
    page.close()
