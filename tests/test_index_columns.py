"""The index's columns: `list` reads a chunk's columns and the whole summaries of the runs it
shows only, and lists exactly what reading every summary lists; columns that are damaged,
missing or outdated by pending events give way to the chunk's lines; they go with their
parts."""

from __future__ import annotations

import json

import pytest

from sagebook import columns, index
from sagebook.record import Record
from sagebook.runs import listing

EXPERIMENT = "big"


@pytest.fixture
def small_parts(monkeypatch):
    """Parts of ~10 runs, and no compaction but the test's own."""
    monkeypatch.setattr(index, "PART_BYTES", 3000)
    monkeypatch.setattr(index, "COMPACT_ONE_IN", 10**9)


def write(store, count: int, experiment: str = EXPERIMENT, start: int = 0) -> list[str]:
    """Finished runs with metrics, parameters, tags and costs that differ from run to run."""
    ids = []
    for i in range(start, start + count):
        run_id = f"20260101-{i:06d}-abcdef"
        Record.create(store, experiment, run_id, {
            "status": ("Completed", "Failed", "Stopped", "InProgress")[i % 4],
            "ended": None if i % 4 == 3 else f"2026-01-01T05:{i % 60:02d}:00+00:00",
            "job_name": f"job-{i}", "user": f"user{i % 3}", "instance_type": "ml.m5.large",
            "final_metrics": {"acc": (i * 37 % 100) / 100, **({"loss": 1 / (i + 1)}
                                                              if i % 2 else {})},
            "params": {"lr": 10 ** -(i % 3), "optimizer": ("adam", "sgd")[i % 2]},
            "tags": {"team": "ml", **({"pinned": "yes"} if i % 7 == 0 else {})},
            "cost": {"usd": i / 10} if i % 5 else {},
            "created": f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}+00:00",
            **({"sweep": {"id": "sweep-1", "parameters": {"lr": 0.1}}} if i % 3 == 0 else {}),
        })
        ids.append(run_id)
    return ids


QUERIES = [
    {},
    {"limit": 7},
    {"limit": 0},
    {"sort": "acc", "limit": 5},
    {"sort": "-loss", "limit": 5},
    {"sort": "duration", "limit": 5},
    {"sort": "optimizer", "limit": 9},
    {"filters": listing.Filters(where=[listing.parse_where("acc>0.5"),
                                       listing.parse_where("optimizer=adam")])},
    {"filters": listing.Filters(where=[listing.parse_where("metric.loss<0.05")]), "limit": 3},
    {"filters": listing.Filters(tags={"pinned": "yes"})},
    {"filters": listing.Filters(user="user1", status=["failed"])},
    {"filters": listing.Filters(sweep="sweep-1"), "sort": "acc"},
    {"filters": listing.Filters(where=[listing.parse_where("cost>=2"),
                                       listing.parse_where("instance~m5")])},
    {"filters": listing.Filters(where=[listing.parse_where("note~looked")])},
]


def listed(store, query: dict) -> tuple:
    result = listing.list_runs(store, refresh=False, **query)
    return ([json.dumps(e, sort_keys=True) for e in result.runs], result.matched,
            result.costs, sorted(result.names.metrics), sorted(result.names.params),
            sorted(result.names.tags), sorted(result.names.statuses), result.damaged)


def columns_of(store) -> list[str]:
    return [k for k in store.list(index.PAGES) if k.endswith(".cols")]


def test_list_reads_columns_and_lists_what_the_summaries_list(store, small_parts,
                                                              monkeypatch):
    ids = write(store, 90)
    write(store, 12, "other", 1000)
    Record.open(store, EXPERIMENT, ids[4]).annotate({"note": "looked at it", "tags.team": "cv"})
    for experiment in (EXPERIMENT, "other"):
        assert index.compact(store, experiment)
    assert len(columns_of(store)) > 8  # every part, and each head
    read: list[str] = []
    lines = index._chunk_lines
    monkeypatch.setattr(index, "_chunk_lines", lambda store_, chunk, damaged: read.append(
        chunk.key) or lines(store_, chunk, damaged))
    with_columns = [listed(store, query) for query in QUERIES]
    assert read == []  # no chunk was read line by line
    assert with_columns[0][1] == 102 and with_columns[9][0]  # the queries match something
    for key in columns_of(store):
        store.delete([key])
    assert [listed(store, query) for query in QUERIES] == with_columns
    assert read  # now they were


def test_damaged_columns_give_way_to_the_lines_and_are_named(store, small_parts):
    ids = write(store, 40)
    assert index.compact(store, EXPERIMENT)
    truth = listed(store, {"sort": "acc"})
    keys = sorted(columns_of(store))
    garbled, short, typed = keys[0], keys[1], keys[2]
    store.write_bytes(garbled, b"{not json")
    lines = store.read_bytes(short).split(b"\n")
    store.write_bytes(short, b"\n".join([lines[0].replace(b'"runs":', b'"runs":1'), *lines[1:]]))
    lines = store.read_bytes(typed).split(b"\n")
    header = json.loads(lines[0])
    number = header["fields"].index("final_metrics.acc") + 1
    lines[number] = json.dumps(["0.9"] * header["runs"]).encode()  # texts where numbers go
    store.write_bytes(typed, b"\n".join(lines))
    damaged = listing.list_runs(store, sort="acc", refresh=False)
    assert [json.dumps(e, sort_keys=True) for e in damaged.runs] == truth[0]
    assert damaged.matched == truth[1] == len(ids)
    assert sorted(d.where for d in damaged.damaged) == sorted(store.url(k) for k in keys[:3])
    reasons = " | ".join(d.reason for d in damaged.damaged)
    assert "runs" in reasons and "not a number" in reasons and "not valid JSON" in reasons


def test_a_header_naming_columns_outside_the_folder_is_named_and_not_read(tmp_path,
                                                                          small_parts):
    from sagebook.stores import open_store

    store = open_store(str(tmp_path / "records"))
    ids = write(store, 3)
    assert index.compact(store, EXPERIMENT)
    [key] = [k for k in store.list(index.PAGES) if k.endswith(".jsonl")]
    lines = store.read_bytes(key).splitlines()
    header = {**json.loads(lines[0]), "cols": "../../../../etc/passwd"}
    store.write_bytes(key, b"\n".join([json.dumps(header).encode(), *lines[1:]]) + b"\n")
    result = listing.list_runs(store, refresh=False)
    assert sorted(e["run_id"] for e in result.runs) == ids  # from its lines
    assert [d.where for d in result.damaged] == [store.url(key)]


def test_runs_with_pending_events_are_merged_from_the_lines(store, small_parts):
    ids = write(store, 60)
    assert index.compact(store, EXPERIMENT)
    Record.open(store, EXPERIMENT, ids[2]).annotate({"tags.pinned": "late"})  # in an old part
    Record.open(store, EXPERIMENT, ids[5]).set_status("Completed", final_metrics={"acc": 7.0})
    pinned = listing.list_runs(store, listing.Filters(tags={"pinned": "late"}), refresh=False)
    assert [e["run_id"] for e in pinned.runs] == [ids[2]]
    best = listing.list_runs(store, sort="-acc", limit=1, refresh=False)
    assert [(e["run_id"], e["final_metrics"]["acc"]) for e in best.runs] == [(ids[5], 7.0)]
    assert best.matched == 60


def test_columns_go_with_their_parts(store, small_parts):
    ids = write(store, 50)
    assert index.compact(store, EXPERIMENT)
    first = set(columns_of(store))
    for status in ("Failed", "Stopped", "Completed"):  # every part rewritten three times
        for run_id in ids[::4]:
            Record.open(store, EXPERIMENT, run_id).set_status(status)
        assert index.compact(store, EXPERIMENT)
    pages = sorted(k for k in store.list(index.PAGES) if k.endswith(".jsonl"))
    named = set()
    for key in pages:  # the newest page and the one before it, kept for its readers
        header = json.loads(store.read_bytes(key).split(b"\n", 1)[0])
        named |= {header["cols"], *(p["cols"] for p in header.get("parts", []))}
    assert len(pages) == 2 and not first & set(columns_of(store))
    assert {k.rsplit("/", 1)[1] for k in columns_of(store)} == named


def test_a_view_reader_that_loses_its_parts_to_two_compactions_lists_each_run_once(
        tmp_path, small_parts):
    from sagebook.stores import open_store

    store = open_store(str(tmp_path / "records"))
    ids = write(store, 80)
    assert index.compact(store, EXPERIMENT)
    reading = index.scan(store, EXPERIMENT, fields=["status"], compact_after=False)
    seen = [next(reading) for _ in range(15)]  # into its second part
    for round_ in range(2):  # every part rewritten twice: the page being read loses them all
        for run_id in ids[::5]:
            Record.open(store, EXPERIMENT, run_id).set_status(("Failed", "Stopped")[round_])
        assert index.compact(store, EXPERIMENT)
    seen += list(reading)
    assert sorted(v["run_id"] for v in seen) == ids and len({v["run_id"] for v in seen}) == 80
    whole = index.resolve(store, seen)  # their chunks are gone: looked up anew
    assert [e["run_id"] for e in whole] == [v["run_id"] for v in seen]
    assert {e["status"] for e in whole if e["run_id"] in ids[::5]} == {"Stopped"}


def test_columns_are_held_to_their_types():
    entries = [{"run_id": "a", "created": "x", "final_metrics": {"acc": 1}, "tags": {"t": "v"}},
               {"run_id": "b", "params": {"lr": [1, 2]}}]
    data = columns.encode(entries)
    cols = columns.Columns(data, "here", 2)
    assert cols.column("final_metrics.acc") == [1, None]
    assert cols.column("params.lr") == [None, [1, 2]]
    assert cols.column("user") == [None, None]  # no run has it
    assert columns.rows(cols, ["created", "final_metrics.acc", "tags.t"], {"experiment": "e"}
                        ) == [{"created": "x", "final_metrics": {"acc": 1}, "tags": {"t": "v"},
                               "experiment": "e"},
                              {"created": None, "final_metrics": {}, "tags": {},
                               "experiment": "e"}]
    with pytest.raises(columns.DamagedFile, match="hold 2 runs, its chunk 3"):
        columns.Columns(data, "here", 3)
    bad = data.replace(b'["x",null]', b'[true,null]')
    with pytest.raises(columns.DamagedFile, match=r"\(created\) holds a value that is not a text"):
        columns.Columns(bad, "here", 2).column("created")


def test_parts_sealed_before_columns_get_theirs_from_later_compactions(store, small_parts,
                                                                       monkeypatch):
    ids = write(store, 60)
    monkeypatch.setattr(index, "_write_columns", lambda *args: None)  # a sagebook before them
    assert index.compact(store, EXPERIMENT)
    monkeypatch.undo()
    monkeypatch.setattr(index, "PART_BYTES", 3000)
    monkeypatch.setattr(index, "COMPACT_ONE_IN", 10**9)
    header = json.loads(store.read_bytes(max(
        k for k in store.list(index.PAGES) if k.endswith(".jsonl"))).split(b"\n", 1)[0])
    sealed = len(header["parts"])
    assert sealed > 2 * index.BACKFILL and columns_of(store) == []
    truth = listed(store, {"sort": "acc"})
    without = sealed
    for _ in range(3):
        Record.open(store, EXPERIMENT, ids[-1]).set_status("Stopped")  # in the head
        assert index.compact(store, EXPERIMENT)
        header = json.loads(store.read_bytes(max(
            k for k in store.list(index.PAGES) if k.endswith(".jsonl"))).split(b"\n", 1)[0])
        now = sum(p.get("cols") is None for p in header["parts"])
        assert now == max(without - index.BACKFILL, 0) and header["cols"]
        without = now
    truth_after = listed(store, {"sort": "acc"})
    assert truth_after[1:] == truth[1:] and len(truth_after[0]) == len(truth[0])


def test_fsck_names_columns_that_lie_and_repair_gives_them_back(store, small_parts):
    from sagebook import fsck

    ids = write(store, 40)
    assert index.compact(store, EXPERIMENT)
    assert index.check_columns(store) == []
    key = sorted(columns_of(store))[1]
    lines = store.read_bytes(key).split(b"\n")
    header = json.loads(lines[0])
    number = header["fields"].index("final_metrics.acc") + 1
    values = json.loads(lines[number])
    values[0] = 99.0  # within its type: only the lines can tell
    lines[number] = json.dumps(values).encode()
    store.write_bytes(key, b"\n".join(lines))
    run = json.loads(lines[header["fields"].index("run_id") + 1])[0]
    assert listing.list_runs(store, sort="-acc", limit=1, refresh=False).runs[0]["run_id"] == run
    findings, _ = fsck.check(store)
    assert [(f.where, f.index_file) for f in findings] == [(store.url(key), True)]
    assert f"its final_metrics.acc of run {run!r} is 99.0, its line says" in findings[0].problem
    fsck.repair(store, findings)
    assert key not in columns_of(store)
    best = listing.list_runs(store, sort="-acc", limit=1, refresh=False).runs[0]
    assert best["final_metrics"]["acc"] == max((i * 37 % 100) / 100 for i in range(40))
    Record.open(store, EXPERIMENT, ids[-1]).set_status("Stopped")
    assert index.compact(store, EXPERIMENT)  # and gives the part its columns again
    header = json.loads(store.read_bytes(max(
        k for k in store.list(index.PAGES) if k.endswith(".jsonl"))).split(b"\n", 1)[0])
    named = {f"{index.PAGES}/{EXPERIMENT}/{p['cols']}" for p in header["parts"]}
    assert named <= set(columns_of(store)) and len(named) == len(header["parts"])
    assert index.check_columns(store) == []
