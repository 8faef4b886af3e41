"""`sagebook tag`, `note` and `rename`: annotations after launch, kept as immutable events in
the record and the index, seen by list, show and --where, and never lost to concurrent
writers — other annotators, the run's own status writes, compactions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from sagebook import index
from sagebook.record import Record

from conftest import add_run, listed, run_cli


def test_tag_note_rename_show_in_list_show_and_where(store, capsys):
    run = add_run(store, tags={"team": "ml", "owner": "ann"})
    other = add_run(store)
    ref = run.run_id[-6:]
    assert run_cli(capsys, "tag", ref, "stage=prod", "--remove", "owner", "--store",
                   store.uri)[0] == 0
    assert run_cli(capsys, "note", ref, "baseline for the\nQ4 report", "--store", store.uri)[0] == 0
    assert run_cli(capsys, "rename", ref, "baseline", "--store", store.uri)[0] == 0
    [row] = listed(capsys, store, "--where", "stage=prod")
    assert row["run_id"] == run.run_id and row["name"] == "baseline"
    assert row["tags"] == {"team": "ml", "stage": "prod"}  # owner removed, config tags kept
    assert listed(capsys, store, "-t", "owner") == []
    assert [r["run_id"] for r in listed(capsys, store, "--where", "note~q4")] == [run.run_id]
    assert [r["run_id"] for r in listed(capsys, store, "--where", "name=baseline")] == [
        run.run_id]
    code, out, _ = run_cli(capsys, "list", "--store", store.uri)
    assert "baseline" in out and "stage=prod" in out
    code, out, _ = run_cli(capsys, "show", ref, "--store", store.uri)
    assert "name:        baseline" in out and "stage=prod, team=ml" in out
    assert "baseline for the" in out and "    Q4 report" in out
    # the record keeps every event; the manifest was never rewritten by an annotation
    assert len(Record.open(store, "exp-a", run.run_id).annotations()) == 3
    assert Record.open(store, "exp-a", run.run_id).manifest["revision"] == run.manifest[
        "revision"]
    assert other.run_id not in {r["run_id"] for r in listed(capsys, store, "-t", "stage")}


@pytest.mark.parametrize("args", [["tag", "RUN", "novalue"], ["tag", "RUN"],
                                  ["note", "RUN", "  "], ["rename", "RUN", ""]])
def test_bad_annotations_are_refused_and_write_nothing(store, capsys, args):
    run = add_run(store)
    args = [run.run_id if a == "RUN" else a for a in args]
    code, out, err = run_cli(capsys, *args, "--store", store.uri)
    assert code == 2 and "Traceback" not in err and err.strip()
    assert Record.open(store, "exp-a", run.run_id).annotations() == []


ANNOTATOR = textwrap.dedent("""
    import sys, time
    from sagebook import index
    from sagebook.runs.details import annotate
    from sagebook.record import Record
    from sagebook.stores import open_store

    index.COMPACT_ONE_IN = 1
    index.COMPACT_AT = 0
    store, worker, run_id, start = open_store(sys.argv[1]), sys.argv[2], sys.argv[3], \\
        float(sys.argv[4])
    time.sleep(max(0.0, start - time.time()))
    record = Record.open(store, "exp-a", run_id)
    if worker == "status":  # the run's own launcher, writing its manifest meanwhile
        for i in range(8):
            record.reload()
            record.update(progress=i)
            list(index.entries(store))  # and compacting
        record.set_status("Completed")
    else:
        for i in range(5):
            annotate(record, tags=[f"{worker}={i}"])
            list(index.entries(store))
        annotate(record, note=f"note from {worker}", name=f"name by {worker}")
""")


@pytest.mark.slow
def test_annotations_survive_concurrent_writers_and_compaction(store, capsys):
    run = add_run(store, status="InProgress")
    start = time.time() + 1.5  # together, after their imports
    workers = ["w0", "w1", "w2", "status"]
    procs = [subprocess.Popen([sys.executable, "-c", ANNOTATOR, store.uri, w, run.run_id,
                               str(start)], stderr=subprocess.PIPE, text=True)
             for w in workers]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors

    def check(row):
        assert row["status"] == "Completed"
        assert {k: v for k, v in row["tags"].items()} == {"w0": "4", "w1": "4", "w2": "4"}
        assert row["name"] in {"name by w0", "name by w1", "name by w2"}
        assert row["note"] == f"note from {row['name'][-2:]}"  # one event set both

    [row] = listed(capsys, store)
    check(row)
    index.compact(store, "exp-a")
    assert [k for k in store.list(index.EVENTS)] == []  # every event folded into the page
    [row] = listed(capsys, store)
    check(row)
    notes = [e for e in Record.open(store, "exp-a", run.run_id).annotations()
             if "note" in e["set"]]
    assert sorted(e["set"]["note"] for e in notes) == [f"note from w{i}" for i in range(3)]
