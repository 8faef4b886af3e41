"""notebooks/experiments.ipynb, the team dashboard, executed by papermill with a real kernel."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from matplotlib.text import Text

from sagebook import index
from sagebook.dashboard import Dashboard
from sagebook.record import Record
from sagebook.stores import open_store

from conftest import REPO, add_run

DASHBOARD = REPO / "notebooks" / "experiments.ipynb"
PAPERMILL = Path(sys.executable).parent / "papermill"


def test_dashboard_is_committed_without_outputs_and_declares_parameters():
    import papermill as pm

    nb = nbformat.read(DASHBOARD, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count")
               for c in nb.cells if c.cell_type == "code")
    assert set(pm.inspect_notebook(str(DASHBOARD))) == {"store", "experiment", "selection",
                                                        "metrics", "sweep"}


@pytest.mark.slow
def test_dashboard_executes_with_tables_plots_and_a_config_diff(tmp_path):
    store = open_store(str(tmp_path / "records"))
    first = add_run(store, metrics={"acc": 0.8, "loss": 0.4}, training={"epochs": 2},
                    created="2026-01-01T10:00:00+00:00")
    second = add_run(store, metrics={"acc": 0.9, "loss": 0.3}, training={"epochs": 5},
                     created="2026-01-01T11:00:00+00:00")
    failed = add_run(store, "exp-b", status="Failed", failure="boom",
                     created="2026-01-01T12:00:00+00:00")
    out = tmp_path / "dashboard.ipynb"
    result = subprocess.run(
        [str(PAPERMILL), str(DASHBOARD), str(out), "-p", "store", store.uri,
         "-p", "selection", f'["{first.run_id}", "{second.run_id[-6:]}"]'],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]

    nb = nbformat.read(out, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4  # status counts, a curve panel per chosen run, the overlay
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    for run in (first, second, failed):
        assert run.run_id in html  # the runs table
    assert "Failed" in html and "Completed" in html  # status counts
    assert "<code>epochs</code>" in html and "<td>2</td><td>5</td>" in html  # the diff


@pytest.mark.slow
def test_overlay_legends_name_runs_by_what_differs_and_empty_runs_say_why(tmp_path):
    from sagebook.dashboard import Dashboard, Html, legend_labels

    store = open_store(str(tmp_path / "records"))
    a = add_run(store, metrics={"acc": 0.9}, training={"learning_rate": 0.1, "epochs": 5})
    b = add_run(store, metrics={"acc": 0.8}, training={"learning_rate": 0.01, "epochs": 5})
    failed = add_run(store, status="Failed", failure="CUDA out of memory\nat line 3")
    assert legend_labels([a, b]) == {a.run_id: "learning_rate=0.1", b.run_id: "learning_rate=0.01"}
    same = add_run(store, metrics={"acc": 0.7}, training={"learning_rate": 0.1, "epochs": 5})
    assert legend_labels([a, same]) == {a.run_id: a.run_id, same.run_id: same.run_id}
    board = Dashboard(store, refresh=False)
    shown = board.curves(failed)
    assert isinstance(shown, Html) and "failed before reporting any" in shown.html
    assert "CUDA out of memory" in shown.html
    compared = board.compare().html
    assert 'id="parallel"' in compared and 'class="scatter"' in compared


@pytest.mark.slow
def test_the_dashboard_masks_tokens_a_store_writer_planted_in_tables_and_plots(tmp_path):
    """Fields of a record are whatever a store writer put there, and an executed dashboard is
    shared like a report: a token in a tag, a failure reason or a metric name is masked in
    the HTML views and in the texts of the plots."""
    token = "ghp_" + "A1b2C3d4E5" * 4
    store = open_store(str(tmp_path / "records"))
    planted = add_run(store, metrics={"acc": 0.8}, failure=f"Bearer {token}")
    manifest = {**planted.manifest, "tags": {"owner": token}}
    store.write_text(f"{planted.prefix}/manifest.json", json.dumps(manifest))
    store.write_text(f"{planted.prefix}/metrics.jsonl",
                     json.dumps({"name": f"loss {token}", "value": 1.0, "step": 1}) + "\n")
    index.rebuild(store)

    board = Dashboard(store)
    shown = board.table()._repr_html_() + board.diff(planted, planted, True)._repr_html_()
    assert "ghp_****" in shown and token not in shown
    plot = board.curves(Record.open(store, planted.experiment, planted.run_id))
    plot._repr_png_()
    texts = [t.get_text() for t in plot.figure.findobj(Text)]
    assert any("loss ghp_****" in t for t in texts) and not any(token in t for t in texts)


def test_run_labels_name_every_differing_parameter_up_to_four_then_say_how_many_more():
    from sagebook.charts import run_labels

    entries = [{"run_id": f"r{i}", "params": {k: i for k in "abcdef"} | {"same": 1}}
               for i in range(2)]
    assert run_labels(entries) == {"r0": "a=0, b=0, c=0, d=0, +2 more",
                                   "r1": "a=1, b=1, c=1, d=1, +2 more"}


def test_more_runs_than_colours_are_coloured_by_the_main_metric_with_its_values_as_legend():
    from sagebook.charts import RUN_COLOURS, colouring, gradient_colour

    few = [{"run_id": f"r{i}", "params": {"lr": i}, "final_metrics": {"acc": i / 10}}
           for i in range(3)]
    by_run = colouring(few, "acc")
    assert list(by_run.colours.values()) == list(RUN_COLOURS[:3])
    assert [label for _, label in by_run.legend] == ["lr=0", "lr=1", "lr=2"]
    many = [{"run_id": f"r{i}", "params": {"lr": i}, "final_metrics": {"acc": i / 10}}
            for i in range(12)] + [{"run_id": "none", "params": {"lr": 99}}]
    by_metric = colouring(many, "acc")
    assert by_metric.title == "colour: acc"
    assert by_metric.colours["r0"] == gradient_colour(0) != by_metric.colours["r11"]
    assert by_metric.colours["none"] == "#8c959f"  # no value: grey
    assert [label for _, label in by_metric.legend][:2] == ["0.00", "0.25"]


def test_ticks_are_round_enough_to_read_and_whole_on_an_integer_axis():
    from sagebook.charts import Axis, nice_ticks

    assert [label for _, label in nice_ticks(0.81, 0.93)] == [
        "0.825", "0.850", "0.875", "0.900", "0.925"]
    assert [label for _, label in Axis.of("epoch", [1, 2, 3]).ticks()] == ["1", "2", "3"]
    assert [label for _, label in Axis.of("epoch", [0, 40]).ticks()] == [
        "0", "10", "20", "30", "40"]
    assert [label for _, label in Axis.of("lr", [0.001, 0.1], log=True).ticks()] == [
        "0.001", "0.01", "0.1"]


def test_the_main_metric_is_the_sweeps_objective_else_the_first_validation_definition(
        tmp_path):
    from sagebook.report import main_metric

    store = open_store(str(tmp_path / "records"))
    run = add_run(store, metrics={"train_loss": 0.3, "val_loss": 0.4, "val_accuracy": 0.9})
    entries = list(index.entries(store))
    assert main_metric(store, entries) == "train_loss"  # no definitions: the most reported
    run.put_text("request.json", json.dumps({"AlgorithmSpecification": {"MetricDefinitions": [
        {"Name": n, "Regex": "x"} for n in ("train_loss", "val_accuracy", "val_loss")]}}))
    assert main_metric(store, entries) == "val_accuracy"
    swept = [{**entries[0], "sweep": "s1"}]
    assert main_metric(store, swept, {"s1": "val_loss"}) == "val_loss"


def test_the_log_sink_records_what_the_log_counts_its_steps_in(tmp_path):
    from sagebook.backends.logs import LogSink
    from sagebook.record import Record
    from sagebook.runs.details import metric_series

    sink = LogSink(tmp_path / "a.log", tmp_path / "m.jsonl",
                   [{"Name": "loss", "Regex": r"loss=([0-9.]+)"},
                    {"Name": "acc", "Regex": r"acc=([0-9.]+)"}], lambda _: None)
    for line in ("Epoch 1/2 loss=0.5", "Epoch 2/2 loss=0.4", "acc=0.9", "acc=0.95"):
        sink.line(line, 0.0)
    sink.close()
    store = open_store(str(tmp_path / "records"))
    record = add_run(store)
    record.put_text("metrics.jsonl", (tmp_path / "m.jsonl").read_text())
    units: dict[str, str] = {}
    series = metric_series(Record.open(store, record.experiment, record.run_id), units=units)
    assert units == {"loss": "epoch"}  # acc's lines carry no number of their own
    assert [p[0] for p in series["loss"]] == [1, 2]


def test_without_matplotlib_each_plot_is_one_line_naming_the_install(tmp_path, monkeypatch):
    store = open_store(str(tmp_path / "records"))
    run = add_run(store, metrics={"acc": 0.8})
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as an environment without it
    board = Dashboard(store.uri)
    line = ("no plots: matplotlib is not installed here; run `%pip install 'matplotlib>=3.7'` "
            "in a cell (or install sagebook with its notebook extra: pip install "
            "'sagebook[notebook]') and restart the kernel")
    assert board.warning == line
    [record] = board.select([run.run_id])
    for view in (board.status_counts(), board.curves(record), board.overlay([record])):
        assert repr(view) == line
        assert view._repr_html_() == "<p>" + html.escape(line) + "</p>"
    assert run.run_id in board.table()._repr_html_()  # the tables still show


@pytest.mark.slow
def test_the_dashboard_notebook_without_matplotlib_runs_and_says_what_to_install(tmp_path):
    store = open_store(str(tmp_path / "records"))
    add_run(store, metrics={"acc": 0.8})
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['matplotlib'] = None\n")
    out = tmp_path / "dashboard.ipynb"
    result = subprocess.run([str(PAPERMILL), str(DASHBOARD), str(out), "-p", "store", store.uri],
                            capture_output=True, text=True, timeout=180,
                            env={**os.environ, "PYTHONPATH": str(hide)})
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = [o for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"
               for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = json.dumps(outputs)
    assert "ModuleNotFoundError" not in text and "Traceback" not in text
    assert "%pip install 'matplotlib>=3.7'" in text
