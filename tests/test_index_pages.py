"""Index pages past one object: a page splits into sealed parts, so an experiment has no cap on
its runs; a compaction rewrites only what its events touch; readers that lose a part to two
compactions still see every run once; a part name is only ever a part of its own folder."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from sagebook import index
from sagebook.record import Record

EXPERIMENT = "big"


def write(store, count: int, start: int = 0) -> list[str]:
    """`count` finished runs, ids in creation order, as launches name them."""
    ids = []
    for i in range(start, start + count):
        run_id = f"20260101-{i:06d}-abcdef"
        Record.create(store, EXPERIMENT, run_id, {
            "status": "Completed", "ended": "x", "final_metrics": {"i": i},
            "created": f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}+00:00"})
        ids.append(run_id)
    return ids


def parts(store) -> set[str]:
    return {k for k in store.list(f"{index.PAGES}/{EXPERIMENT}") if k.endswith(".part")}


def head(store) -> dict:
    key = max(k for k in store.list(f"{index.PAGES}/{EXPERIMENT}") if k.endswith(".jsonl"))
    return json.loads(store.read_bytes(key).split(b"\n", 1)[0])


@pytest.fixture
def small_parts(monkeypatch):
    """Parts of ~10 runs, and no compaction but the test's own."""
    monkeypatch.setattr(index, "PART_BYTES", 3000)
    monkeypatch.setattr(index, "COMPACT_ONE_IN", 10**9)


def test_a_page_splits_and_a_compaction_rewrites_only_what_its_events_touch(store,
                                                                            small_parts):
    ids = write(store, 120)
    assert index.compact(store, EXPERIMENT)
    page = head(store)
    assert page["runs"] == 120 and len(page["parts"]) >= 5
    assert [e["run_id"] for e in index.entries(store, EXPERIMENT)] == ids  # once each, in order

    sealed = {p["key"] for p in page["parts"]}
    ids += write(store, 1, 120)  # a new run lands in the head: no sealed part is written again
    assert index.compact(store, EXPERIMENT)
    assert sealed <= {p["key"] for p in head(store)["parts"]} and head(store)["runs"] == 121
    before = parts(store)

    Record.open(store, EXPERIMENT, ids[3]).set_status("Failed")  # an old run: its part only
    assert index.compact(store, EXPERIMENT)
    added = parts(store) - before
    assert len(added) == 1
    assert {e["run_id"]: e["status"] for e in index.entries(store, EXPERIMENT)} == {
        r: "Failed" if r == ids[3] else "Completed" for r in ids}
    assert list(store.list(index.EVENTS)) == []  # every event folded into the page
    # parts no page refers to any more are gone once a newer page exists
    for _ in range(2):
        Record.open(store, EXPERIMENT, ids[3]).set_status("Stopped")
        assert index.compact(store, EXPERIMENT)
    assert not added & parts(store)


def test_a_reader_that_loses_its_parts_to_two_compactions_lists_each_run_once(tmp_path,
                                                                             small_parts):
    from sagebook.stores import open_store

    store = open_store(str(tmp_path / "records"))
    ids = write(store, 80)
    assert index.compact(store, EXPERIMENT)
    reading = index.entries(store, EXPERIMENT, compact_after=False)
    seen = [next(reading)["run_id"] for _ in range(15)]  # into its second part
    for round_ in range(2):  # every part rewritten twice: the page being read loses them all
        for run_id in ids[::5]:
            Record.open(store, EXPERIMENT, run_id).set_status(("Failed", "Stopped")[round_])
        assert index.compact(store, EXPERIMENT)
    seen += [e["run_id"] for e in reading]
    assert sorted(seen) == ids and len(seen) == len(set(seen))


def test_a_page_naming_a_part_outside_its_folder_is_named_and_not_read(tmp_path, small_parts):
    from sagebook.stores import open_store

    store = open_store(str(tmp_path / "records"))
    store.write_text("secret.part", "x")
    ids = write(store, 2)
    assert index.compact(store, EXPERIMENT)
    [key] = [k for k in store.list(index.PAGES) if k.endswith(".jsonl")]
    lines = store.read_bytes(key).splitlines()
    header = {**json.loads(lines[0]), "parts": [{"key": "../../../secret.part", "first": "",
                                                  "runs": 1}], "rest": ids[0]}
    store.write_bytes(key, b"\n".join([json.dumps(header).encode(), *lines[1:]]) + b"\n")
    damaged: list = []
    assert [e["run_id"] for e in index.entries(store, damaged=damaged)] == ids
    assert [d.where for d in damaged] == [store.url(key)]
    assert "header (line 1) is not a page's" in damaged[0].reason


def test_a_listing_holds_a_few_runs_even_in_an_order_that_may_fall_back(tmp_path, small_parts,
                                                                          monkeypatch):
    """A sweep's objective (`strict_sort=False`) or the default order: the kept runs are
    trimmed as they come (once all 100,000 were held: 540 MB), and the fallback to newest first
    still gives the newest."""
    from sagebook.runs import listing
    from sagebook.stores import open_store

    store = open_store(str(tmp_path / "records"))
    ids = write(store, 60)
    held = []
    offer = listing._Top.offer
    monkeypatch.setattr(listing._Top, "offer", lambda top, entry: offer(top, entry) or held.append(
        len(top.held)))
    best = listing.list_runs(store, sort="i", descending=True, limit=5, refresh=False,
                             strict_sort=False)
    assert [e["run_id"] for e in best.runs] == ids[::-1][:5] and best.order_note is None
    fallback = listing.list_runs(store, sort="loss", limit=5, refresh=False, strict_sort=False)
    assert [e["run_id"] for e in fallback.runs] == ids[::-1][:5]
    assert fallback.order_note == "no run listed has 'loss' yet: newest first"
    assert max(held) < 10  # never more than twice the limit


WRITER = textwrap.dedent("""
    import sys, time
    from sagebook import index
    from sagebook.record import Record
    from sagebook.stores import open_store

    # Parts of a few runs, and every write and read compacts: as many splits as can be.
    index.PART_BYTES, index.COMPACT_ONE_IN, index.COMPACT_AT = 1500, 1, 0
    store, worker, count, start = open_store(sys.argv[1]), sys.argv[2], int(sys.argv[3]), \\
        float(sys.argv[4])
    time.sleep(max(0.0, start - time.time()))
    for i in range(count):
        record = Record.create(store, "big", f"2026{i:03d}-{worker}", {"instance_type": "local"})
        record.set_status("Completed", final_metrics={"i": i})
        # read whole, and as `list` reads: by the chunks' columns
        for seen in ({e["run_id"]: e["status"] for e in index.entries(store, "big")},
                     {e["run_id"]: e["status"] for e in index.scan(store, "big",
                                                                    fields=["status"])}):
            lost = [r for r in (f"2026{j:03d}-{worker}" for j in range(i + 1))
                    if seen.get(r) != "Completed"]
            if lost:
                sys.exit(f"worker {worker} lost {lost} after run {i}")
""")


@pytest.mark.slow
def test_concurrent_writers_and_compactors_of_split_pages_lose_no_run(tmp_path):
    from sagebook.stores import open_store

    store = open_store(str(tmp_path / "records"))
    writers, each = 4, 12
    start = time.time() + 1.5  # all processes begin together, after their imports
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, store.uri, f"w{n}", str(each),
                               str(start)], stderr=subprocess.PIPE, text=True)
             for n in range(writers)]
    try:
        errors = [p.communicate(timeout=180)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), errors
    index.compact(store, EXPERIMENT)
    runs = [e["run_id"] for e in index.entries(store, EXPERIMENT)]
    assert sorted(runs) == sorted(f"2026{i:03d}-w{n}" for n in range(writers)
                                  for i in range(each))
    assert len(head(store)["parts"]) > 1
