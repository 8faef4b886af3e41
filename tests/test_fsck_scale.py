"""`sagebook fsck` and `list --reindex` over thousands of records: they say how far they are,
and a rebuild holds one batch of manifests at a time, not the store's. The commands run in a
child process with its address space capped and a timeout that kills it, so a regression
fails the test instead of exhausting the machine."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sagebook import index
from sagebook.stores import open_store

RUNS = 2_500
LIMIT = 2 << 30  # bytes of address space the child may map


def write_records(root: Path, count: int) -> None:
    """`count` finished records and their index, written as plain files (fast set-up)."""
    lines: dict[str, list[bytes]] = {}
    for i in range(count):
        experiment, run_id = f"exp-{i % 4}", f"20260101-{i:06d}-{i:06x}"
        manifest = {"schema": 1, "run_id": run_id, "experiment": experiment,
                    "status": "Completed", "created": f"2026-01-01T00:00:{i % 60:02d}+00:00",
                    "user": "ann", "revision": 1, "status_history": [],
                    "final_metrics": {"acc": i / count}, "params": {"lr": 0.1}}
        folder = root / experiment / run_id
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps(manifest))
        lines.setdefault(experiment, []).append(
            json.dumps(index.summarize(manifest), separators=(",", ":")).encode())
    for experiment, page in lines.items():
        path = root / index.PAGES / experiment / "00000000.jsonl"
        path.parent.mkdir(parents=True)
        header = json.dumps({"page": 0, "experiment": experiment, "runs": len(page)}).encode()
        path.write_bytes(b"\n".join([header, *sorted(page)]) + b"\n")


def capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def sagebook_capped(*args: str) -> subprocess.CompletedProcess[str]:
    """`sagebook ARGS` in a child under LIMIT, killed (SIGKILL) after two minutes."""
    return subprocess.run([sys.executable, "-m", "sagebook.cli", *args], capture_output=True,
                          text=True, timeout=120, preexec_fn=capped)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scale") / "records"
    write_records(root, RUNS)
    return root


def test_fsck_of_thousands_of_records_says_its_progress(records):
    result = sagebook_capped("fsck", "--store", str(records))
    assert result.returncode == 0, result.stderr
    assert f"fsck: checked: {RUNS:,} of {RUNS:,} records" in result.stderr
    assert f"0 damaged files among {RUNS} runs" in result.stderr


def test_reindex_rebuilds_a_lost_index_batch_by_batch_saying_how_far(records, tmp_path):
    store_root = tmp_path / "records"
    shutil.copytree(records, store_root)
    shutil.rmtree(store_root / index.ROOT)  # the index lost: every record indexed again
    result = sagebook_capped("list", "--store", str(store_root), "--reindex")
    assert result.returncode == 0, result.stderr
    assert f"reindex: read: {RUNS:,} of {RUNS:,} records" in result.stderr
    assert f"indexed {RUNS} records, dropped 0" in result.stderr
    assert f"50 of {RUNS} runs shown" in result.stderr  # every run listed again


def test_a_rebuild_holds_one_batch_of_manifests_at_a_time(records, monkeypatch):
    store = open_store(str(records))
    batches: list[int] = []
    fetch = index.fetch

    def counted(store_, keys, damaged=None):
        keys = list(keys)
        if keys and keys[0].endswith("/manifest.json"):
            batches.append(len(keys))
        return fetch(store_, keys, damaged)

    monkeypatch.setattr(index, "fetch", counted)
    monkeypatch.setattr(index, "REBUILD_BATCH", 1000)
    said: list[tuple[int, int]] = []
    rebuilt = index.rebuild(store, progress=lambda done, total: said.append((done, total)))
    assert rebuilt.added == 0 and rebuilt.removed == 0 and not rebuilt.damaged
    assert batches == [1000, 1000, 500]
    assert said == [(1000, RUNS), (2000, RUNS), (RUNS, RUNS)]
