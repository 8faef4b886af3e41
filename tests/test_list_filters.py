"""`sagebook list`: parameter columns, `--where` over metrics, parameters, tags and columns,
sorting by any of them, and a clear error naming the nearest known name for a typo."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sagebook import cli
from sagebook.stores import open_store

from conftest import add_run


@pytest.fixture
def store(tmp_path):
    store = open_store(str(tmp_path / "records"))
    add_run(store, run_id="20261101-000000-aaaaaa",
            created="2026-11-01T00:00:00+00:00", metrics={"val_accuracy": 0.96, "loss": 0.1},
            training={"epochs": 10, "optimizer": "adam", "learning_rate": 0.01,
                      "data": {"train_file": "train.csv"}}, tags={"team": "ml"})
    add_run(store, run_id="20261102-000000-bbbbbb",
            created="2026-11-02T00:00:00+00:00", metrics={"val_accuracy": 0.91, "loss": 0.3},
            training={"epochs": 20, "optimizer": "sgd", "learning_rate": 0.1,
                      "data": {"train_file": "train.csv"}}, tags={"team": "cv"})
    add_run(store, run_id="20261103-000000-cccccc",
            created="2026-11-03T00:00:00+00:00", status="Failed", failure="boom",
            training={"epochs": 20, "optimizer": "adam", "learning_rate": 0.001,
                      "data": {"train_file": "train.csv"}}, user="bob")
    return store


def run(capsys, store, *args):
    code = cli.main(["list", "--store", store.uri, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def ids(capsys, store, *args):
    code, out, err = run(capsys, store, "--json", *args)
    assert code == 0, err
    return [json.loads(line)["run_id"][-1] for line in out.splitlines()]


def test_where_filters_on_metrics_parameters_tags_and_columns(store, capsys):
    assert ids(capsys, store, "--where", "val_accuracy>0.95") == ["a"]
    assert ids(capsys, store, "--where", "optimizer=adam") == ["c", "a"]
    assert ids(capsys, store, "-w", "optimizer=adam", "-w", "epochs>=20") == ["c"]
    assert ids(capsys, store, "--where", "learning_rate<0.05") == ["c", "a"]
    assert ids(capsys, store, "--where", "team=cv") == ["b"]
    assert ids(capsys, store, "--where", "tag.team!=cv") == ["a"]  # runs without it: no match
    assert ids(capsys, store, "--where", "status=Failed") == ["c"]
    assert ids(capsys, store, "--where", "user~BO") == ["c"]
    assert ids(capsys, store, "--where", "param.data.train_file=train.csv") == ["c", "b", "a"]
    assert ids(capsys, store, "--sort", "learning_rate") == ["c", "a", "b"]
    assert ids(capsys, store, "--sort", "optimizer", "--desc")[0] == "b"


def test_parameter_columns_show_what_differs_or_what_is_named(store, capsys):
    code, out, _ = run(capsys, store, "--params")
    header = out.splitlines()[0].split()
    assert code == 0 and header[-5:] == ["epochs", "learning_rate", "optimizer", "COMMIT", "TAGS"]
    assert "data.train_file" not in header  # the same in every run
    code, out, _ = run(capsys, store, "-p", "data.train_file,epochs", "-m", "loss")
    lines = out.splitlines()
    assert lines[0].split()[-5:] == ["LOSS", "data.train_file", "epochs", "COMMIT", "TAGS"]
    row = lines[1]  # newest first: the failed run, no metrics
    assert "train.csv" in row and "20" in row
    assert row[lines[0].index("data.train_file"):lines[0].index("COMMIT")].split() == [
        "train.csv", "20"]
    # numbers right-aligned, at one precision per metric column
    loss_values = [line[lines[0].index("LOSS"):lines[0].index("LOSS") + 6] for line in lines[2:]]
    assert loss_values == ["0.3000", "0.1000"]


@pytest.mark.parametrize(("args", "message"), [
    (["--sort", "val_acuracy"], "--sort: no column, metric, parameter or tag 'val_acuracy' in "
                                "this store; did you mean 'val_accuracy'?"),
    (["-s", "Faild"], "--status: no status 'Faild'; did you mean 'Failed'?"),
    (["-m", "val_acc"], "--metrics: no metric 'val_acc' in this store; did you mean "
                        "'val_accuracy'?"),
    (["-p", "optimiser"], "--params: no parameter 'optimiser' in this store; did you mean "
                          "'optimizer'?"),
    (["--where", "optimzer=adam"], "did you mean 'optimizer'?"),
    (["--where", "val_accuracy"], "--where: expected NAME OP VALUE"),
])
def test_unknown_names_are_errors_naming_the_nearest(store, capsys, args, message):
    code, out, err = run(capsys, store, *args)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_status_colours_only_on_a_terminal_without_no_color(store, monkeypatch):
    from sagebook.runs.text import format_table, use_colour

    class Terminal:
        def isatty(self):
            return True

    rows = [{"run_id": "r1", "status": "Failed"}, {"run_id": "r2", "status": "Completed"}]
    coloured = format_table(rows, [], colour=use_colour(Terminal()))
    assert "\033[31mFailed\033[0m" in coloured and "\033[32mCompleted\033[0m" in coloured
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Terminal())
    assert not use_colour(subprocess.PIPE)


def test_show_into_a_pipe_that_closes_ends_quietly(store):
    shell = (f"{sys.executable} -m sagebook.cli show aaaaaa --store {store.uri} | head -1; "
             f"{sys.executable} -m sagebook.cli list --store {store.uri} -n 0 | head -1")
    # enough output to fill the pipe: a long note
    from sagebook.runs.details import annotate
    from sagebook.runs.lookup import find_run

    annotate(find_run(store, "aaaaaa"), note="x" * 100_000)
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("run:") and "RUN" in done.stdout
    assert done.stderr == ""


def test_a_parameter_both_number_and_text_sorts_without_error(store, capsys):
    """0.1 in one run and 'auto' in another (or a planted summary's text): numbers and texts
    sort apart, whatever the limit, never a TypeError for the whole team."""
    add_run(store, run_id="20261104-000000-dddddd", created="2026-11-04T00:00:00+00:00",
            training={"epochs": 5, "optimizer": "adam", "learning_rate": "auto",
                      "data": {"train_file": "train.csv"}})
    for limit in ("1", "0"):
        code, out, err = run(capsys, store, "--sort", "learning_rate", "--limit", limit,
                             "--json")
        assert code == 0, err
        rates = [json.loads(line)["params"]["learning_rate"] for line in out.splitlines()]
        assert rates == [0.001, 0.01, 0.1, "auto"][:int(limit) or None]
