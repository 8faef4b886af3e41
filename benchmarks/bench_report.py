"""`sagebook report` over 100,000 runs in a local folder: the full report, then the report after
100 new runs (what changed, and the index page).

Set-up, not timed: the 100,000 records are written as a finished store holds them — each run's
manifest.json, and the index compacted into one page per experiment — by plain file writes
(the real write path fsyncs every file: ~11 ms a run here, over 18 minutes for the store); the
100 new runs go through the real write path (`Record.create`, index events). Each figure is a
fresh `sagebook report` process: its wall time and its own peak memory.

Baselines, in the same run: the full report's time for the report after 100 new runs (target
<= 10 %); for memory, a process that only imports what `report` imports.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_list import EPOCH, EXPERIMENTS, PEAK, write_runs
from measure import Peak
from run import Row

RUNS = int(os.environ.get("SAGEBOOK_BENCH_REPORT_RUNS", "100000"))
NEW = 100
PROBE = ("import sys; from sagebook.cli import main; code = main(sys.argv[1:]); "
         f"print('PEAK_KB', {PEAK}, file=sys.stderr); sys.exit(code)")


def write_store(root: Path, count: int) -> None:
    """`count` finished runs (tags, notes, parameters, metrics, 5 % unfinished), their index
    compacted: what a year of a team's launches leaves once `list` has run."""
    from sagebook import index

    pages: dict[str, list[bytes]] = {}
    for i in range(count):
        experiment = f"exp-{i % EXPERIMENTS:02d}"
        run_id = f"2025{1 + i // 400_000:02d}{1 + i // 14_400 % 28:02d}-{i % 86400:06d}-{i:06x}"
        unfinished = i % 20 == 0
        status = "InProgress" if unfinished else ("Completed", "Completed", "Failed")[i % 3]
        created = (EPOCH - dt.timedelta(days=400) + dt.timedelta(minutes=i)).isoformat(
            timespec="milliseconds")
        manifest = {
            "schema": 1, "run_id": run_id, "experiment": experiment, "status": status,
            "status_history": [{"status": "Starting", "time": created},
                               {"status": status, "time": created}],
            "created": created, "user": f"user{i % 7}", "host": "bench",
            "instance_type": "ml.m5.large", "backend": "LocalBackend", "revision": 1,
            "job_name": f"{experiment}-{i:06x}",
            "git": {"commit": f"{i:040x}", "dirty": False, "branch": "main"},
            "config": {"overrides": [f"training.epochs={i % 20}"], "digest": f"{i:016x}"},
            "params": {"learning_rate": 10 ** -(i % 4), "optimizer": ("adam", "sgd")[i % 2],
                       "epochs": i % 20, "batch_size": 64},
            **({} if unfinished else {
                "ended": created,
                "final_metrics": {"train_loss": 1 / (i + 1), "val_loss": 2 / (i + 1),
                                  "val_accuracy": (i % 100) / 100}}),
            **({"failure_reason": "AlgorithmError: out of memory"} if status == "Failed" else {}),
            "record_uri": str(root / experiment / run_id)}
        folder = root / experiment / run_id
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
        entry = index.summarize(manifest)
        entry["annotations"] = {"tags.team": ["ml", "2026-01-01T00:00:00.000000Z-0000"],
                                "note": [f"note {i}", "2026-01-01T00:00:00.000000Z-0000"]}
        pages.setdefault(experiment, []).append(json.dumps(entry, separators=(",", ":")).encode())
    for experiment, lines in pages.items():
        header = json.dumps({"page": 0, "experiment": experiment, "runs": len(lines)}).encode()
        path = root / index.PAGES / experiment / f"{0:08d}.jsonl"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"\n".join([header, *sorted(lines)]) + b"\n")


def measure_report(uri: str, env: dict[str, str]) -> tuple[float, Peak, str]:
    """Wall seconds, own peak memory and the summary line of `sagebook report` in a fresh
    process."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PROBE, "report", "--store", uri], env=env,
                            capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    peak_kb = int(result.stderr.rsplit("PEAK_KB", 1)[1].split()[0])
    said = next((line for line in result.stderr.splitlines() if "run pages rendered" in line),
                "")
    return seconds, Peak.vmhwm(peak_kb), said


def bare_process(env: dict[str, str]) -> Peak:
    """A process that imports what `report` imports, no more."""
    probe = f"import sagebook.cli, sagebook.report, jinja2, nh3; print({PEAK})"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                         text=True, check=True).stdout
    return Peak.vmhwm(int(out))


def run() -> list[Row]:
    scratch = Path(tempfile.mkdtemp(prefix="sagebook-bench-report-"))
    env = {**os.environ}
    try:
        root = scratch / "store"
        start = time.perf_counter()
        print(f"  writing {RUNS:,} runs …", file=sys.stderr, flush=True)
        write_store(root, RUNS)
        print(f"  written in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        full, full_peak, said = measure_report(str(root), env)
        print(f"  full report: {full:.1f} s ({said})", file=sys.stderr, flush=True)
        write_runs(str(root), NEW, RUNS)
        again, again_peak, said_again = measure_report(str(root), env)
        print(f"  after {NEW} new runs: {again:.1f} s ({said_again})", file=sys.stderr,
              flush=True)
        page_mb = (root / "_report" / "index.html").stat().st_size / 1e6
        bare = bare_process(env)
        label = f"report {RUNS:,} runs, local"
        return [
            Row(f"{label}: after {NEW} new runs vs full (index {page_mb:.0f} MB)", again, full,
                "s", "<= 10 % of the full report", again <= 0.1 * full),
            Row(f"{label}: full report peak memory", full_peak, bare, "MB",
                "measured (no target)", True),
            Row(f"{label}: after {NEW} new runs peak memory", again_peak, bare, "MB",
                "measured (no target)", True)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
