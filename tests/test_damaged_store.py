"""A store with damaged files still answers: list, show, diff and report skip or mark each
unreadable entry and name the file; `--reindex` rebuilds from what is readable and drops what
no longer exists; `sagebook fsck` names every damaged file with what to do."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import add_run, sagebook


@pytest.fixture
def store(tmp_path: Path):
    from sagebook.stores import open_store

    root = tmp_path / "records"
    store = open_store(str(root))
    store.runs = [add_run(store, run_id=f"20261201-00000{i}-aaaaa{i}", metrics={"acc": i / 10})
                  for i in range(5)]
    return store


def listed(store) -> tuple[list[str], str]:
    result = sagebook("list", "--store", store.uri, "--json")
    assert result.returncode == 0, result.stderr
    import json

    return sorted(json.loads(line)["run_id"] for line in result.stdout.splitlines()), \
        result.stderr


def events(store) -> list[Path]:
    return sorted((Path(store.uri) / "_index/events/exp-a").glob("*.json"))


def test_garbage_in_an_index_event_is_named_and_skipped(store):
    victim = events(store)[0]
    victim.write_bytes(b"\xff\xfe garbage \x00")
    ids, err = listed(store)
    assert ids == sorted(r.run_id for r in store.runs[1:])
    assert f"sagebook: skipped {victim}: not valid JSON (Expecting value: line 1 column 1 " \
           "(char 0))" in err.splitlines()
    assert "sagebook fsck" in err and "Traceback" not in err
    # show still finds the run by its record, and the other runs as ever
    shown = sagebook("show", f"exp-a/{store.runs[0].run_id}", "--store", store.uri)
    assert shown.returncode == 0 and store.runs[0].run_id in shown.stdout
    assert sagebook("show", store.runs[1].run_id, "--store", store.uri).returncode == 0

    fsck = sagebook("fsck", "--store", store.uri)
    assert fsck.returncode == 1
    assert f"{victim}: not valid JSON (Expecting value: line 1 column 1 (char 0))\n" \
           "  what to do: remove this index file" in fsck.stdout
    repaired = sagebook("fsck", "--store", store.uri, "--repair")
    assert repaired.returncode == 0, repaired.stderr
    assert victim.read_bytes().startswith(b"{")  # written again from the record
    assert listed(store) == (sorted(r.run_id for r in store.runs), "")
    assert sagebook("fsck", "--store", store.uri).returncode == 0


def test_a_garbled_index_page_is_named_and_reindex_brings_its_runs_back(store):
    from sagebook import index

    assert index.compact(store, "exp-a")
    [page] = (Path(store.uri) / "_index/pages/exp-a").glob("*.jsonl")
    lines = page.read_bytes().splitlines()
    page.write_bytes(b"\n".join(lines[:2] + [b'{"run_id": "2026', b"\x00\x01garbage"]) + b"\n")
    ids, err = listed(store)
    assert ids == [store.runs[0].run_id]  # what the page still holds
    assert f"sagebook: skipped {page}: 2 unreadable lines (first: line 3)" in err.splitlines()
    reindexed = sagebook("list", "--store", store.uri, "--reindex", "--json")
    assert reindexed.returncode == 0
    assert "indexed 4 records, dropped 0 whose folder is gone" in reindexed.stderr
    assert len(reindexed.stdout.splitlines()) == 5


def test_a_half_written_manifest_is_named_by_fsck_show_report_and_reindex(store):
    run = store.runs[2]
    manifest = Path(store.uri) / run.prefix / "manifest.json"
    manifest.write_text(manifest.read_text()[:150])
    where = f"{manifest}: not valid JSON"

    fsck = sagebook("fsck", "--store", store.uri)
    assert fsck.returncode == 1
    assert f"{where}" in fsck.stdout and "(the index still lists it as Completed)" in fsck.stdout
    shown = sagebook("show", run.run_id, "--store", store.uri)
    assert shown.returncode == 1 and shown.stderr.startswith(f"sagebook: {where}")
    assert "sagebook fsck" in shown.stderr and "Traceback" not in shown.stderr
    diffed = sagebook("diff", store.runs[0].run_id, run.run_id, "--store", store.uri)
    assert diffed.returncode == 1 and diffed.stderr.startswith(f"sagebook: {where}")
    report = sagebook("report", "--store", store.uri)
    assert report.returncode == 0, report.stderr
    assert f"skipped exp-a/{run.run_id}: {where}" in report.stderr
    assert "4 of 5 run pages rendered (0 notebooks), 1 skipped" in report.stderr
    reindexed = sagebook("list", "--store", store.uri, "--reindex")
    assert f"sagebook: not indexed: {where}" in reindexed.stderr


def test_a_record_folder_removed_by_hand_is_dropped_by_reindex(store):
    gone = store.runs[4]
    shutil.rmtree(Path(store.uri) / gone.prefix)
    assert gone.run_id in listed(store)[0]  # the index does not know yet
    report = sagebook("report", "--store", store.uri)
    assert f"skipped exp-a/{gone.run_id}: its record folder is gone" in report.stderr
    assert "4 of 5 run pages rendered" in report.stderr
    fsck = sagebook("fsck", "--store", store.uri)
    assert f"{Path(store.uri) / gone.prefix}: listed in the run index, but its record folder " \
           "is gone" in fsck.stdout
    reindexed = sagebook("list", "--store", store.uri, "--reindex")
    assert "indexed 0 records, dropped 1 whose folder is gone" in reindexed.stderr
    assert gone.run_id not in listed(store)[0]
    assert sagebook("fsck", "--store", store.uri).returncode == 0


def test_an_unreadable_record_folder_is_named_for_a_user_without_permission(store):
    if subprocess.run(["which", "setpriv"], capture_output=True).returncode:
        pytest.skip("needs setpriv to run as an unprivileged user")
    shared = Path(tempfile.mkdtemp(prefix="sagebook-shared-"))  # a folder others can enter
    try:
        root = shared / "records"
        shutil.copytree(store.uri, root)
        subprocess.run(["chmod", "-R", "a+rX", str(shared)], check=True)
        hidden = root / store.runs[1].prefix
        (hidden / "config").chmod(0o700)
        (hidden / "request.json").write_text("{}")
        (hidden / "request.json").chmod(0o600)

        def as_nobody(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                 sys.executable, "-m", "sagebook.cli", *args, "--store", str(root)],
                capture_output=True, text=True, timeout=120)

        shown = as_nobody("show", store.runs[1].run_id)
        assert shown.returncode == 0, shown.stderr
        assert (f"unreadable:  request.json: cannot read {hidden}/request.json: Permission "
                "denied") in shown.stdout
        fsck = as_nobody("fsck")
        assert f"{hidden}/config: cannot be read: Permission denied" in fsck.stdout
        report = as_nobody("report")
        assert "Traceback" not in report.stderr  # it cannot write the report as nobody
        assert report.returncode == 1 and "Permission denied" in report.stderr
    finally:
        shutil.rmtree(shared)


def test_a_planted_object_of_any_size_is_read_no_further_than_the_bound(store, tmp_path):
    """A manifest of 8 GiB (a sparse file: no disk spent) is named too large by `show`, in a
    child that may hold 600 MB at most and is killed after 120 s: reading it whole would fail
    the child, not the machine."""
    import resource

    run = store.runs[0]
    manifest = Path(store.uri) / run.experiment / run.run_id / "manifest.json"
    with manifest.open("r+b") as handle:
        handle.truncate(8 << 30)

    def bounded() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (600 << 20, 600 << 20))

    result = subprocess.run([sys.executable, "-m", "sagebook.cli", "show", run.run_id,
                             "--store", store.uri], capture_output=True, text=True,
                            timeout=120, preexec_fn=bounded)
    assert result.returncode == 1, result.stderr
    assert f"{manifest}: too large (more than 33,554,432 bytes)" in result.stderr
    assert "Traceback" not in result.stderr


def test_index_files_too_large_to_read_are_named_and_the_other_runs_listed(store):
    """An index event, a page head and a chunk's columns of 8 GiB each (sparse files), in a
    child that may hold 600 MB: each is named, and `list` and `fsck` go on with the rest."""
    import resource

    from sagebook import index

    assert index.compact(store, "exp-a")
    planted = Path(store.uri) / "_index/events/exp-a/20261202-000000-bbbbbb.000001.json"
    [columns] = (Path(store.uri) / "_index/pages/exp-a").glob("*.cols")
    add_run(store, run_id="20261201-000009-aaaaa9", experiment="exp-b")
    assert index.compact(store, "exp-b")
    [head] = (Path(store.uri) / "_index/pages/exp-b").glob("*.jsonl")
    for path in (planted, columns, head):
        with path.open("a+b") as handle:
            handle.truncate(8 << 30)

    def bounded() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (600 << 20, 600 << 20))

    for command in ("list", "fsck"):
        result = subprocess.run([sys.executable, "-m", "sagebook.cli", command, "--store",
                                 store.uri, *(("--no-refresh",) if command == "list" else ())],
                                capture_output=True, text=True, timeout=120,
                                preexec_fn=bounded)
        assert "Traceback" not in result.stderr
        for path in (planted, columns, head):
            assert f"{path}: too large (more than 33,554,432 bytes)" in result.stdout + \
                result.stderr, (command, path)
    listing = subprocess.run([sys.executable, "-m", "sagebook.cli", "list", "--store",
                              store.uri, "--no-refresh", "--json"], capture_output=True,
                             text=True, timeout=120, preexec_fn=bounded)
    assert listing.returncode == 0, listing.stderr
    assert sorted(line.split('"run_id": "')[1][:22] for line in listing.stdout.splitlines()
                  ) == sorted(r.run_id for r in store.runs)  # exp-a's runs, from its lines
