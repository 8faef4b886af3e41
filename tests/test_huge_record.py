"""A huge record cannot make `show` slow or heavy: metrics are summarised while metrics.jsonl
is streamed (a line of megabytes is skipped and named), the failure text and a long failure
reason are cut to their start and end with the path of the whole text, a config too large to
be one is named, not printed. `show` and `show --json` run in a child under an address-space
limit and a timeout that kills it, over a local folder and over S3 on the local endpoint."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from sagebook.record import Record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_huge_record import write_record  # noqa: E402

# The shape of benchmarks/bench_huge_record.py's record at a tenth of its size, and a child
# whose whole address space is a few times what the cut output needs: the record's texts alone
# (5 MB each, and a manifest holding a 2 MB reason) read whole and decoded would exceed it.
POINTS, LINE_MB, FAILURE_MB = 60_000, 5, 5
MEMORY_LIMIT = 400 << 20
RUN_ID = "20260101-000000-huge01"


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def show_limited(store, *args: str) -> subprocess.CompletedProcess:
    """`sagebook show RUN ARGS` in a child under MEMORY_LIMIT, SIGKILLed after 120 s."""
    return subprocess.run([sys.executable, "-m", "sagebook.cli", "show", RUN_ID, "--store",
                           store.uri, *args], capture_output=True, text=True, timeout=120,
                          preexec_fn=_limited)


@pytest.fixture
def huge(store):
    """The huge record, and more of what a store writer can make huge: a 2 MB failure reason
    in the manifest, a 5 MB line among the metric points, a 2 MB job config."""
    write_record(store.uri, RUN_ID, POINTS, LINE_MB, FAILURE_MB)
    record = Record.open(store, "exp-huge", RUN_ID)
    record.update(failure_reason="RuntimeError: first line\n" + "z" * (2 << 20)
                  + "\nthe reason's last line")
    points = store.read_bytes(f"{record.prefix}/metrics.jsonl")
    half = points.index(b"\n", len(points) // 2) + 1
    store.write_bytes(f"{record.prefix}/metrics.jsonl",
                      points[:half] + b"w" * (LINE_MB << 20) + b"\n" + points[half:])
    store.write_text(f"{record.prefix}/sagemaker_config.yaml", "x: " + "y" * (2 << 20))
    return store, record


def test_show_of_a_huge_record_is_cut_and_summarised_in_bounded_memory(huge):
    store, record = huge
    shown = show_limited(store)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "Traceback" not in shown.stderr
    out = shown.stdout
    assert len(out) < 200_000  # the 2 MB reason cut to its start and end
    lines = out.splitlines()
    assert "  RuntimeError: first line" in lines and "  the reason's last line" in lines
    assert any(line.startswith("  [… ") and "characters left out here: the whole text is "
               f"{record.url('manifest.json')} …]" in line for line in lines)
    rows = {line.split()[0]: line.split() for line in lines[lines.index(
        "metrics:        final      min      max   points") + 1:][:3]}
    assert {name: int(row[-1]) for name, row in rows.items()} == \
        {"loss": POINTS // 3, "val_loss": POINTS // 3, "accuracy": POINTS // 3}
    assert f"unreadable:  metrics.jsonl: lines over 4,096 bytes, skipped as not points: 1 " \
           f"(the longest {LINE_MB << 20:,} bytes)" in lines
    assert any(line.startswith("unreadable:  sagemaker_config.yaml: ") and
               "too large (more than 1,048,576 bytes)" in line for line in lines)
    assert "job config (sagemaker_config.yaml):" not in out
    for name in ("failure.txt", "logs/algo-1.log", "metrics.jsonl"):
        assert record.url(name) in out  # where the whole of each is


def test_show_json_of_a_huge_record_is_cut_and_summarised_in_bounded_memory(huge):
    store, record = huge
    shown = show_limited(store, "--json")
    assert shown.returncode == 0, shown.stderr[-3000:]
    data = json.loads(shown.stdout)
    assert len(shown.stdout) < 2 * (2 << 20) + 200_000  # the manifest's reason, and the cut
    assert data["metrics"]["loss"]["points"] == POINTS // 3
    assert data["metrics"]["accuracy"]["high"] == pytest.approx(1 / 3)
    failure = data["failure"]
    assert len(failure) < 100_000
    assert failure.startswith("Traceback (most recent call last):\n")
    assert failure.endswith("RuntimeError: CUDA out of memory\n")
    assert f"bytes left out here: the whole text is {record.url('failure.txt')} …]" in failure
    assert data["job_config"] is None
    assert any("too large" in item for item in data["unreadable"])
