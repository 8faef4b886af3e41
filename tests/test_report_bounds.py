"""A record's size does not set a reader's: curves are streamed and downsampled with their
extremes kept, long texts are cut with a link to the whole file, and a record of a million
metric points, a 50 MB metrics line and a 50 MB failure text makes a run page of a few hundred
kilobytes in bounded memory. The huge record is rendered in a child under an address space
limit and a SIGKILL timeout, so a regression fails the test instead of taking the machine
down."""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from sagebook import report
from sagebook.record import Record
from sagebook.runs.details import (
    MAX_CURVE_POINTS,
    MAX_METRIC_LINE,
    MAX_METRIC_SERIES,
    lttb,
    metric_series,
)
from sagebook.runs.lookup import read_cut
from sagebook.stores import open_store

from conftest import add_run

POINTS = 1_000_000
HUGE_LINE = 50 << 20
MEMORY_LIMIT = 1 << 30  # address space of the child: the unbounded reading took 1.1 GB of RSS
HIGH, LOW = (123_457, 1000.0), (654_321, -1000.0)  # (step, value): a spike and a dip


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def huge_record(root: Path) -> Record:
    """A record with POINTS points of `loss` (a spike and a dip among them), a 50 MB line in
    metrics.jsonl and in its log, and a 50 MB failure.txt."""
    store = open_store(str(root))
    record = add_run(store, status="Failed", failure="see failure.txt", run_id="huge")
    folder = root / record.prefix
    special = dict([HIGH, LOW])
    with (folder / "metrics.jsonl").open("w") as out:
        for start in range(0, POINTS, 100_000):
            out.write("".join(
                f'{{"name": "loss", "value": {special.get(i, 1.0 / (1 + i % 1000))!r}, '
                f'"step": {i}, "timestamp": {1.7e9 + i!r}}}\n'
                for i in range(start, start + 100_000)))
            if start == POINTS // 2:
                out.write('{"name": "loss", "value": 0.5, "note": "' + "x" * HUGE_LINE + '"}\n')
    with (folder / "failure.txt").open("w") as out:
        out.write("Traceback (most recent call last): the start\n")
        out.write("y" * HUGE_LINE)
        out.write("\nValueError: the end\n")
    (folder / "logs").mkdir()
    (folder / "logs" / "algo-1.log").write_text("z" * HUGE_LINE + "\n")
    return record


CHILD = """
import json, sys
from sagebook import report
from sagebook.runs.details import metric_series
from sagebook import report
from sagebook.record import Record
from sagebook.stores import open_store

store = open_store(sys.argv[1])
report.render(store)
totals = {}
curve = metric_series(Record.open(store, "exp-a", "huge"), totals=totals)["loss"]
print(json.dumps({"totals": totals, "curve": curve}))
"""


@pytest.mark.slow  # a record of a million metric points
def test_a_huge_record_makes_a_small_run_page_in_bounded_memory(tmp_path):
    record = huge_record(tmp_path / "records")
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "records")],
                          capture_output=True, text=True, timeout=300, preexec_fn=_limited)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    curve = [tuple(p) for p in result["curve"]]
    assert result["totals"] == {"loss": POINTS}  # the 50 MB line is not a point
    assert len(curve) <= MAX_CURVE_POINTS
    steps = [p[0] for p in curve]
    assert steps[0] == 0 and steps[-1] == POINTS - 1 and steps == sorted(steps)
    values = {p[0]: p[1] for p in curve}
    assert values[HIGH[0]] == HIGH[1] and values[LOW[0]] == LOW[1]  # the extremes are kept

    page = tmp_path / "records" / "_report" / "runs" / "exp-a" / "huge.html"
    assert page.stat().st_size <= 2 << 20
    html = page.read_text()
    assert "Traceback (most recent call last): the start" in html
    assert "ValueError: the end" in html  # the end of the failure text, where tracebacks end
    assert f"bytes left out here: the whole text is {record.url('failure.txt')}" in html
    assert 'href="../../../exp-a/huge/failure.txt"' in html
    polyline = html.split('<polyline fill="none" stroke="#0969da"', 1)[1].split("/>", 1)[0]
    assert 2 <= polyline.count(",") <= MAX_CURVE_POINTS
    assert ">1000</text>" in html and ">-1000</text>" in html  # spans the spike and the dip


def write_metrics(store, record: Record, lines: list[str]) -> None:
    store.write_text(f"{record.prefix}/metrics.jsonl", "".join(lines))


def test_curves_are_downsampled_with_their_shape_and_extremes_on_every_store(store):
    record = add_run(store)
    values = [math.sin(i / 500) for i in range(20_000)]
    values[7_777], values[12_345] = 5.0, -5.0
    write_metrics(store, record, [json.dumps({"name": "acc", "value": v, "step": i * 10}) + "\n"
                                  for i, v in enumerate(values)]
                  + [json.dumps({"name": "loss", "value": 0.1}) + "\n"] * 3)
    totals: dict[str, int] = {}
    series = metric_series(record, limit=500, totals=totals)
    assert totals == {"acc": 20_000, "loss": 3}
    acc = series["acc"]
    assert len(acc) <= 500
    assert acc[0][0] == 0 and acc[-1][0] == 199_990
    assert (77_770, 5.0) in [p[:2] for p in acc] and (123_450, -5.0) in [p[:2] for p in acc]
    # the shape: every kept point lies on the curve, and no stretch of it is left out
    assert all(values[step // 10] == value for step, value, _ in acc)
    assert max(b[0] - a[0] for a, b in zip(acc, acc[1:], strict=False)) < 20 * 199_990 / 500
    assert series["loss"] == [(0, 0.1, None), (1, 0.1, None), (2, 0.1, None)]  # own positions
    assert len(metric_series(record, limit=None)["acc"]) == 20_000  # an export: all


def test_lines_that_are_not_points_are_skipped(store):
    record = add_run(store)
    write_metrics(store, record, [
        '{"name": "acc", "value": 0.5, "step": 1, "timestamp": 1700000000.5}\n',
        '{"name": "acc", "value": "NaN", "step": 2}\n',
        '{"name": "acc", "value": 1e999, "step": 3}\n',
        '{"name": "acc", "value": null, "step": 4}\n',
        '{"name": ["acc"], "value": 1, "step": 5}\n',
        '[1, 2]\n',
        "\n",
        '{"name": "acc", "value": 0.25, "step": "six", "timestamp": "soon"}\n',
        '{"name": "acc", "value": 0.75, "note": "' + "x" * MAX_METRIC_LINE + '"}\n',
        '{"name": "acc", "value": 0.6, "step": 8}\n',
        '{"name": "acc", "val',  # torn: the run is writing
    ])
    assert metric_series(record) == {
        "acc": [(1, 0.5, 1700000000.5), (1, 0.25, None), (8, 0.6, None)]}


def test_metric_names_past_the_bound_are_skipped(tmp_path):
    store = open_store(str(tmp_path / "records"))
    record = add_run(store)
    write_metrics(store, record, [json.dumps({"name": f"m{i}", "value": i}) + "\n"
                                  for i in range(MAX_METRIC_SERIES + 50)])
    assert list(metric_series(record)) == [f"m{i}" for i in range(MAX_METRIC_SERIES)]


@pytest.mark.parametrize("limit", [5, 6, 50])
def test_lttb_keeps_the_ends_and_the_extremes_within_the_limit(limit):
    xs = list(range(1000))
    ys = [0.0] * 1000
    ys[500], ys[501] = 9.0, -9.0
    kept = lttb(xs, ys, limit)
    assert len(kept) <= limit and kept == sorted(set(kept))
    assert {0, 500, 501, 999} <= set(kept)
    assert lttb(xs[:limit], ys[:limit], limit) == list(range(limit))


def test_a_long_text_is_cut_to_its_start_and_end_with_where_the_rest_is(store):
    record = add_run(store)
    store.write_text(f"{record.prefix}/failure.txt", "start\n" + "é" * 100_000 + "\nthe end\n")
    text = read_cut(record, "failure.txt", head=101, tail=200)  # é is two bytes
    assert text is not None and text.startswith("start\n") and text.endswith("\nthe end\n")
    gap = f"\n[… 199,714 bytes left out here: the whole text is {record.url('failure.txt')} …]\n"
    assert gap in text and len(text) < 300 + len(gap)
    assert "\ufffd" not in text  # no character cut in half at either side
    store.write_text(f"{record.prefix}/failure.txt", "short\n")
    assert read_cut(record, "failure.txt", head=100, tail=200) == "short\n"
    assert read_cut(record, "missing.txt") is None


# --------------------------------------------------------------------------------------------
# The index page of many runs: written as a stream, in memory that does not grow with the runs

INDEX_CHILD = """
import json, sys
from sagebook import report

runs, note_bytes = int(sys.argv[1]), int(sys.argv[2])
with report.IndexPage() as page:
    for i in range(runs):  # in the index's order, which is not the page's
        n = (i * 7919) % runs
        page.add({"run_id": f"run-{n:06d}", "experiment": f"exp-{n % 3}", "user": "ann",
                  "status": "Completed", "created": f"2026-01-01T00:00:00.{n:06d}+00:00",
                  "final_metrics": {"acc": n / runs}, "params": {"lr": n % 5},
                  "note": ("AKIAQWERTYUIOPASDFGH </pre><script>alert(1)</script> " if n == 3
                           else "") + f"{n:06d}" * (note_bytes // 6)})
    with open(sys.argv[3], "wb") as out:
        page.write(out, "/store", main="acc")
print([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmPeak")][0])
"""


def _index_child(tmp_path: Path, runs: int, note_bytes: int, limit: int | None
                 ) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / f"index-{runs}.html"

    def limited() -> None:
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run([sys.executable, "-c", INDEX_CHILD, str(runs), str(note_bytes),
                           str(out)], capture_output=True, text=True, timeout=300,
                          preexec_fn=limited)
    return done, out


def test_the_index_page_of_many_runs_holds_every_row_in_memory_that_does_not_grow_with_them(
        tmp_path):
    """4,000 runs with a 32 KB note each are a page of over 130 MB: drawn in a child whose
    address space is what drawing 50 such runs took, plus 160 MB (it takes about 60 MB more
    here: the newest runs the charts draw). Holding the runs, their rows and the page in memory,
    as the report did, took 2.3 GB; the page still holds every run, once, newest first, masked
    and escaped."""
    small, _ = _index_child(tmp_path, 50, 32 << 10, None)
    assert small.returncode == 0, small.stderr[-3000:]
    runs = 4000
    done, out = _index_child(tmp_path, runs, 32 << 10,
                             int(small.stdout.split()[-1]) * 1024 + (160 << 20))
    assert done.returncode == 0, done.stderr[-3000:]
    html = out.read_text()
    data = html.split('<pre id="rows-data" hidden>', 1)[1].split("</pre>", 1)[0]
    assert "<" not in data  # the rows' text cannot end the element or start markup
    rows = json.loads(data.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    assert [row[0] for row in rows] == [f"run-{n:06d}" for n in reversed(range(runs))]
    assert html.count("<tr data-run=") == report.PAGE_ROWS
    assert "AKIAQWERTYUIOPASDFGH" not in html and "**** </pre><script>" in data.replace(
        "&lt;", "<").replace("&gt;", ">")
    assert "<script>alert(1)" not in html
