"""`sagebook launch --detach`: a local run outlives the command that launched it, is not Lost
while its detached launcher lives, `attach` follows it to the end its record says (Ctrl-C
only leaves it), and `stop` stops it. Real processes; the training waits for a file, so each
step sees the run in the state it checks."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import alive, manifest, runs, sagebook, wait_for

GATED = textwrap.dedent("""
    import os, pathlib, time
    pathlib.Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))
    print("training starts", flush=True)
    for _ in range(6000):  # at most 5 min: a test that fails cannot leave it running for ever
        if pathlib.Path(os.environ["GO_FILE"]).exists():
            break
        time.sleep(0.05)
    print("epoch=1 val_accuracy=0.5", flush=True)
    print("epoch=2 val_accuracy=0.75", flush=True)
    pathlib.Path(os.environ["SM_MODEL_DIR"], "weights.txt").write_text("weights")
""")


@pytest.fixture
def gated(make_config, tmp_path, monkeypatch):
    monkeypatch.setenv("SAGEBOOK_HEARTBEAT_SECONDS", "0.5")
    monkeypatch.setenv("SAGEBOOK_WORK_DIR", str(tmp_path / "work"))
    code = tmp_path / "gated"
    code.mkdir()
    (code / "train.py").write_text(GATED)
    return make_config(source_dir=str(code), training_schema=None,
                       environment={"PID_FILE": str(tmp_path / "training.pid"),
                                    "GO_FILE": str(tmp_path / "go")})


def launch_detached(config: Path, tmp_path: Path) -> tuple[Path, int]:
    """Launch with --detach; return the run's folder and its training's pid once it trains."""
    launched = sagebook("launch", str(config), "--detach")
    assert launched.returncode == 0, launched.stderr
    [run] = runs(tmp_path / "experiments")
    assert f"sagebook attach {manifest(run)['record_uri']}" in launched.stdout
    wait_for(lambda: "training starts" in (run / "logs/algo-1.log").read_text()
             if (run / "logs/algo-1.log").exists() else False, what="the training to start")
    return run, int((tmp_path / "training.pid").read_text())


def attach(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sagebook.cli", "attach", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_detached_run_outlives_its_launch_and_attach_follows_it_to_its_end(gated, tmp_path):
    run, training = launch_detached(gated, tmp_path)
    store = str(tmp_path / "experiments")
    # the command has returned; the run trains on under its own launcher, which is not Lost
    heartbeat = json.loads((run / "heartbeat.json").read_text())
    assert alive(heartbeat["pid"]) and alive(training)
    [entry] = [json.loads(line) for line in
               sagebook("list", "--store", store, "--json").stdout.splitlines()]
    assert entry["status"] == "InProgress"

    viewer = attach(run.name, "--store", store)  # Ctrl-C leaves the run running
    assert viewer.stdout is not None
    assert viewer.stdout.readline() == "training starts\n"  # its log from the start
    viewer.send_signal(signal.SIGINT)
    out, err = viewer.communicate(timeout=30)
    assert viewer.returncode == 130, err
    assert f"detached from run {run.name}, which runs on" in out
    assert alive(training) and manifest(run)["status"] == "InProgress"

    viewer = attach(run.name, "--store", store)
    assert viewer.stdout is not None and viewer.stdout.readline() == "training starts\n"
    (tmp_path / "go").touch()
    out, err = viewer.communicate(timeout=60)
    assert viewer.returncode == 0, err
    record = manifest(run)
    assert record["status"] == "Completed"
    assert record["final_metrics"]["val_accuracy"] == 0.75
    assert "epoch=2 val_accuracy=0.75\n" in out
    assert f"run:    {run.name} (Completed)" in out and "val_accuracy=0.75" in out
    assert f"model:  {record['model_artifact']}" in out
    assert Path(record["model_artifact"].removeprefix("file://")).is_file()
    wait_for(lambda: not alive(heartbeat["pid"]), what="the detached launcher to end")
    # a run that has ended is summed up at once, from its record
    again = sagebook("attach", run.name, "--store", store)
    assert again.returncode == 0 and f"run:    {run.name} (Completed)" in again.stdout


@pytest.mark.slow
def test_stop_stops_a_detached_run_and_its_record_says_stopped(gated, tmp_path):
    run, training = launch_detached(gated, tmp_path)
    stopped = sagebook("stop", run.name, "--store", str(tmp_path / "experiments"))
    assert stopped.returncode == 0, stopped.stderr
    assert "asked its launcher" in stopped.stdout
    assert f"run:    {run.name} (Stopped)" in stopped.stdout
    assert not alive(training)
    assert manifest(run)["status"] == "Stopped"


def test_detach_refuses_a_terminal_only_option_and_relays_bad_input(gated, tmp_path):
    refused = sagebook("launch", str(gated), "--detach", "--pdb")
    assert refused.returncode == 2 and "--detach runs without a terminal" in refused.stderr
    bad = sagebook("launch", str(gated), "--detach", "-o", "job.no_such_key=1")
    assert bad.returncode == 2 and "no_such_key" in bad.stderr, bad.stderr
    assert not runs(tmp_path / "experiments")
