"""Sweeps: the sweep block's validation (tests/bad_sweeps.yaml), local grids in parallel with a
record per trial, Ctrl-C in the middle, resume with linking, and list/show of a sweep.

The local trials run a tiny training script (a fraction of a second each), so that a grid of
six trials costs seconds; the example's real training is what the benchmark sweeps.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import yaml

from sagebook.cli import main

from conftest import REPO, manifest, runs, sagebook, wait_for

CASES = yaml.safe_load((REPO / "tests" / "bad_sweeps.yaml").read_text())

SCHEMA = '''
from typing import Literal
from pydantic import BaseModel, ConfigDict, Field

class TrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    units: int = Field(8, ge=1, le=1024)
    lr: float = Field(0.01, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"
    epochs: int = Field(2, ge=1)
    pause: float = Field(0, ge=0)
'''

TRAIN = '''
import math, os, pathlib, sys, time, yaml
config_dir = pathlib.Path(os.environ["SM_CHANNEL_CONFIG"])
config = yaml.safe_load(next(config_dir.glob("*.yaml")).read_text())
hold = os.environ.get("HOLD_FILE")
print(f"started units={config['units']} lr={config['lr']}", flush=True)
print(f"cpus={sorted(os.sched_getaffinity(0))}", flush=True)
while hold and os.path.exists(hold):
    time.sleep(0.05)
for epoch in range(1, config["epochs"] + 1):
    accuracy = 1 - abs(math.log10(config["lr"]) + 2) / 10 - 1 / (config["units"] * epoch)
    time.sleep(config.get("pause", 0))
    print(f"epoch={epoch} val_accuracy={accuracy:.4f}", flush=True)
'''


@pytest.fixture
def tiny(tmp_path):
    """A job config for a tiny training script (and its schema) with records in tmp_path."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "schema.py").write_text(SCHEMA)
    (code / "train.py").write_text(TRAIN)
    training = tmp_path / "training.yaml"
    training.write_text("units: 8\nlr: 0.01\nepochs: 2\n")
    job = {
        "experiment": "tiny", "training_config": str(training), "source_dir": str(code),
        "instance_type": "local", "max_runtime": "10m",
        "metric_definitions": [{"name": "val_accuracy", "regex": r"val_accuracy=([0-9.]+)"}],
        "environment": {"HOLD_FILE": str(tmp_path / "hold")},
        "experiments_uri": str(tmp_path / "experiments"),
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def write_sweep(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# --------------------------------------------------------------------------------------------
# Validation


def test_the_corpus_is_large_and_names_are_unique():
    assert len(CASES) >= 15
    assert len({c["name"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_sweep_gets_a_message_with_file_line_and_key(case, tiny, tmp_path, capsys):
    args = ["sweep", str(tiny)]
    if "in_job" in case:
        with tiny.open("a") as handle:
            handle.write(case["in_job"])
        source = tiny
    else:
        source = write_sweep(tmp_path, case["sweep"])
        args += ["--sweep", str(source)]
    for override in case.get("overrides", []):
        args += ["-o", override]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith("sagebook: invalid configuration:\n")
    assert case["expect"] in err, err
    line = case["line"]
    if isinstance(line, str) and line.startswith("in_job+"):
        job_lines = tiny.read_text().splitlines()
        line = job_lines.index("sweep:") + 1 + int(line.split("+")[1])
    matching = [p for p in err.splitlines()[1:] if case["expect"] in p]
    where = f"  {source}:{line}: " if line is not None else "  "
    key = f"{case['key']}: " if case["key"] else ""
    assert any(p.startswith(where) and key in p for p in matching), (where, key, err)
    assert not (tmp_path / "experiments").exists()


def test_dry_run_prints_the_trial_table_and_writes_nothing(tiny, tmp_path):
    sweep = write_sweep(tmp_path, """
        objective: {metric: val_accuracy, goal: maximize}
        strategy: random
        max_trials: 3
        seed: 7
        parameters:
          training.lr: {min: 0.001, max: 0.1, scale: log}
          training.units: {min: 4, max: 64}
          training.optimizer: [adam, sgd]
    """)
    first = sagebook("sweep", str(tiny), "--sweep", str(sweep), "--dry-run")
    assert first.returncode == 0, first.stderr
    rows = first.stdout.splitlines()
    assert rows[0] == ("sweep of tiny: random, maximize val_accuracy; 3 trials, 1 at a time on "
                       "local")
    assert rows[1].split() == ["trial", "training.lr", "training.units", "training.optimizer"]
    values = [row.split() for row in rows[2:5]]
    assert [v[0] for v in values] == ["0", "1", "2"]
    for _, lr, units, optimizer in values:
        assert 0.001 <= float(lr) <= 0.1 and 4 <= int(units) <= 64 and optimizer in ("adam", "sgd")
    again = sagebook("sweep", str(tiny), "--sweep", str(sweep), "--dry-run")
    assert again.stdout == first.stdout  # the same seed draws the same trials
    assert not (tmp_path / "experiments").exists()


# --------------------------------------------------------------------------------------------
# Running locally


def test_local_grid_runs_six_trials_two_at_a_time_each_a_record_of_the_sweep(tiny, tmp_path):
    sweep = write_sweep(tmp_path, """
        objective: {metric: val_accuracy, goal: maximize}
        parameters:
          training.lr: [0.001, 0.01, 0.1]
          training.units: [4, 32]
        max_parallel: 2
    """)
    # each trial trains for a second, so that trials started together overlap for sure
    result = sagebook("sweep", str(tiny), "--sweep", str(sweep), "-o", "training.epochs=1",
                      "-o", "training.pause=1")
    assert result.returncode == 0, result.stderr + result.stdout
    experiments = tmp_path / "experiments"
    sweep_dir = next((experiments / "_sweeps" / "tiny").iterdir())
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert record["status"] == "Completed" and record["counts"] == {"Completed": 6}
    assert (sweep_dir / "sweep.yaml").read_text() == sweep.read_text()
    trial_runs = runs(experiments)
    assert len(trial_runs) == 6
    by_id = {run.name: manifest(run) for run in trial_runs}
    assert sorted(t["run_id"] for t in record["trials"]) == sorted(by_id)
    for trial in record["trials"]:
        run = by_id[trial["run_id"]]
        assert run["status"] == "Completed"
        assert run["sweep"]["id"] == record["sweep_id"] == sweep_dir.name
        assert run["sweep"]["trial"] == trial["trial"]
        assert run["sweep"]["parameters"] == trial["parameters"]
        assert run["sweep"]["record"] == str(sweep_dir)
        assert run["config"]["overrides"][-2:] == trial["overrides"]
        assert run["config"]["overrides"][:2] == ["training.epochs=1", "training.pause=1"]
        launched = yaml.safe_load(
            (experiments / "tiny" / trial["run_id"] / "config/training_config.yaml").read_text())
        assert launched["lr"] == trial["parameters"]["training.lr"]
        assert launched["units"] == trial["parameters"]["training.units"]
        assert launched["epochs"] == 1
        assert trial["objective"] == run["final_metrics"]["val_accuracy"]
    assert record["best"]["parameters"] == {"training.lr": 0.01, "training.units": 32}
    # two at a time: some trials overlapped, never more than two
    spans = sorted((_time(r, "InProgress"), _time(r, "Completed")) for r in by_id.values())
    overlaps = [sum(1 for s, e in spans if s < t < e) for t, _ in spans]
    assert max(overlaps) <= 1  # a trial started while at most one other ran
    assert any(overlaps)
    # each trial ran on its own share of the CPUs: two trials at once, two halves
    cpus = len(os.sched_getaffinity(0))
    seen = {re.search(r"cpus=(\[[0-9, ]*\])", (experiments / "tiny" / run_id /
                                                  "logs/algo-1.log").read_text()).group(1)
            for run_id in by_id}
    if cpus >= 2:
        assert len(seen) == 2 and all(len(json.loads(s)) == cpus // 2 for s in seen), seen

    listing = sagebook("list", "--store", str(experiments), "--sweep", sweep_dir.name)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert "training.lr" in lines[0] and "training.units" in lines[0]
    assert "VAL_ACCURACY" in lines[0]
    assert record["best"]["run_id"] in lines[1]  # best first
    assert len(lines) == 7

    shown = sagebook("show", sweep_dir.name[-6:], "--store", str(experiments))
    assert shown.returncode == 0, shown.stderr
    assert f"sweep:    {sweep_dir.name}" in shown.stdout
    assert "6 completed" in shown.stdout
    assert re.search(r"best:\s+trial \d .*val_accuracy=0\.\d+", shown.stdout)
    assert "training.lr=0.01" in shown.stdout


def _time(run: dict, status: str) -> str:
    return next(h["time"] for h in run["status_history"] if h["status"] == status)


def _training_processes(script: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if str(script) in (proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_ctrl_c_stops_every_trial_then_resume_runs_only_the_rest(tiny, tmp_path):
    experiments = tmp_path / "experiments"
    grid = """
        objective: {metric: val_accuracy, goal: maximize}
        parameters:
          training.units: %s
        max_parallel: 2
    """
    # A finished run with the very config, code and data of trial 3 of the sweep below.
    earlier = write_sweep(tmp_path, grid % "[64]", "earlier.yaml")
    done = sagebook("sweep", str(tiny), "--sweep", str(earlier))
    assert done.returncode == 0, done.stderr + done.stdout
    (earlier_run,) = runs(experiments)

    hold = tmp_path / "hold"
    hold.write_text("the tiny script waits while this file exists")
    sweep = write_sweep(tmp_path, grid % "[8, 16, 32, 64]")
    proc = subprocess.Popen([sys.executable, "-m", "sagebook.cli", "sweep", str(tiny),
                             "--sweep", str(sweep)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    started = set()
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.match(r"\[trial (\d)\] started", line)
        if match:
            started.add(match.group(1))
        if len(started) == 2:
            break
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "stopping 2 running trials" in out
    script = tiny.parent / "code" / "train.py"
    assert _training_processes(script) == []
    sweep_dir = next(p for p in (experiments / "_sweeps" / "tiny").iterdir()
                     if len(json.loads((p / "sweep.json").read_text())["trials"]) == 4)
    record = json.loads((sweep_dir / "sweep.json").read_text())
    statuses = {t["trial"]: t["status"] for t in record["trials"]}
    assert statuses == {0: "Stopped", 1: "Stopped", 2: "Pending", 3: "Pending"}
    for trial in record["trials"][:2]:
        run = manifest(experiments / "tiny" / trial["run_id"])
        assert run["status"] == "Stopped"
        assert run["sweep"]["id"] == sweep_dir.name
    stopped_runs = {t["run_id"] for t in record["trials"][:2]}

    hold.unlink()
    resumed = sagebook("sweep", "--resume", sweep_dir.name, "--store", str(experiments))
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert f"same config, code and data as run {earlier_run.name}: linked" in resumed.stdout
    assert "3 trials to run" in resumed.stdout
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert record["status"] == "Completed"
    assert all(t["status"] == "Completed" for t in record["trials"])
    assert record["trials"][3]["run_id"] == earlier_run.name and record["trials"][3]["linked"]
    assert not stopped_runs & {t["run_id"] for t in record["trials"]}  # stopped ones re-ran
    # 1 earlier + 2 stopped + 3 resumed; the linked trial did not run again
    assert len(runs(experiments)) == 6

    again = sagebook("sweep", "--resume", sweep_dir.name, "--store", str(experiments))
    assert again.returncode == 0 and "nothing to resume" in again.stdout
    wait_for(lambda: not _training_processes(script), 5, "no training process left")
