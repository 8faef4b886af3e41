"""A local run whose launcher dies (SIGKILL, an OOM kill, a closed laptop): its training does
not train on unseen, `list` and `show` mark the run Lost and say how to clean up, and
`sagebook stop` closes its record. A live local run stops through its launcher."""

from __future__ import annotations

import json
import textwrap

import pytest

from conftest import alive, manifest, runs, sagebook, start_launch, wait_for

pytestmark = pytest.mark.slow  # full launches, their launchers killed

SLOW = textwrap.dedent("""
    import os, pathlib, signal, sys, time
    pathlib.Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print("training starts", flush=True)
    for _ in range(600):
        time.sleep(0.1)
""")


@pytest.fixture
def slow_config(make_config, tmp_path, monkeypatch):
    monkeypatch.setenv("SAGEBOOK_HEARTBEAT_SECONDS", "0.5")
    code = tmp_path / "slow"
    code.mkdir()
    (code / "train.py").write_text(SLOW)
    return make_config(source_dir=str(code), training_schema=None,
                       environment={"PID_FILE": str(tmp_path / "training.pid")})


def test_a_killed_launcher_takes_its_training_along_and_the_run_shows_lost_until_stopped(
        slow_config, tmp_path):
    launcher = start_launch(str(slow_config), until="training starts")
    training = int((tmp_path / "training.pid").read_text())
    assert alive(training)
    launcher.kill()  # SIGKILL: the launcher writes nothing more
    launcher.communicate(timeout=30)
    wait_for(lambda: not alive(training), timeout=20, what="the training to stop")

    [run] = runs(tmp_path / "experiments")
    assert manifest(run)["status"] == "InProgress"  # all the record could be told
    heartbeat = json.loads((run / "heartbeat.json").read_text())
    assert heartbeat["pid"] == launcher.pid and heartbeat["processes"]
    store = str(tmp_path / "experiments")
    listed = sagebook("list", "--store", store, "--json")
    [entry] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert entry["status"] == "Lost"
    assert entry["lost"] == f"its launcher (pid {launcher.pid} on {heartbeat['host']}) is gone"
    assert f"`sagebook stop digits-mlp/{run.name}` stops what is left" in listed.stderr
    only_lost = sagebook("list", "--store", store, "--status", "Lost", "--json")
    assert only_lost.returncode == 0 and len(only_lost.stdout.splitlines()) == 1
    shown = sagebook("show", run.name, "--store", store)
    assert (f"status:      Lost: its launcher (pid {launcher.pid} on {heartbeat['host']}) is "
            "gone (the record says InProgress)") in shown.stdout

    attached = sagebook("attach", run.name, "--store", store)
    assert attached.returncode == 1
    assert attached.stderr == (
        f"sagebook: run {run.name} cannot be followed again: its launcher (pid {launcher.pid} "
        f"on {heartbeat['host']}) is gone, and its training stopped with it; `sagebook stop "
        f"digits-mlp/{run.name}` stops what is left of it and closes its record\n")

    stopped = sagebook("stop", run.name, "--store", store)
    assert stopped.returncode == 0, stopped.stderr
    record = manifest(run)
    assert record["status"] == "Stopped" and "ended" in record
    assert "launcher was lost" in record["failure_reason"]
    assert "Lost" not in sagebook("list", "--store", store).stdout
    none_lost = sagebook("list", "--store", store, "-s", "Lost", "--json")
    assert none_lost.returncode == 0 and none_lost.stdout == "", none_lost.stderr


def test_stop_asks_a_live_launcher_to_stop_its_run(slow_config, tmp_path):
    launcher = start_launch(str(slow_config), until="training starts")
    training = int((tmp_path / "training.pid").read_text())
    [run] = runs(tmp_path / "experiments")
    stopped = sagebook("stop", run.name, "--store", str(tmp_path / "experiments"))
    assert stopped.returncode == 0, stopped.stderr
    assert f"asked its launcher (pid {launcher.pid}) to stop run {run.name}" in stopped.stdout
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 130, err  # interrupted, as by Ctrl-C
    assert not alive(training)
    assert manifest(run)["status"] == "Stopped"


def test_a_launcher_killed_before_its_training_starts_shows_its_run_lost(
        slow_config, tmp_path, proxy, bucket, s3, make_config):
    # the run's data comes from S3, where the launcher is kept waiting while it lays out /opt/ml
    s3.put_object(Bucket=bucket, Key="data/train.csv", Body=b"1\n")
    gate = proxy.hold(r"GET /sagebook-test/data/train\.csv")
    config = make_config(source_dir=str(tmp_path / "slow"), training_schema=None,
                         channels={"train": f"s3://{bucket}/data/"})
    launcher = start_launch(str(config), until="[sagebook] run ")
    try:
        wait_for(lambda: proxy.seen(r"GET /sagebook-test/data/train\.csv"), timeout=60,
                 what="the launcher to fetch the training data")
        launcher.kill()
        launcher.communicate(timeout=30)
    finally:
        gate.set()
    [run] = runs(tmp_path / "experiments")
    assert manifest(run)["status"] == "Starting"  # all the record could be told
    listed = sagebook("list", "--store", str(tmp_path / "experiments"), "--json")
    [entry] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert entry["status"] == "Lost"
    assert entry["lost"].startswith(f"its launcher (pid {launcher.pid} on ")
