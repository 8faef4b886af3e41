"""`max_runtime` and spot's `max_wait` end a local run as SageMaker ends a job at its limit:
SIGTERM, SIGKILL after the grace period, Stopped with the limit as secondary status, and the
model and output the code saved uploaded."""

from __future__ import annotations

import json
import os
import signal
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from sagebook.backends.limits import (
    RUNTIME_EXCEEDED,
    WAIT_EXCEEDED,
    TimeLimits,
    stop_grace,
)
from sagebook.errors import ConfigError

from conftest import manifest, runs, sagebook, start_launch

# Saves a model and an output at once, then sleeps far past any limit of these tests; on
# SIGTERM it saves once more and ends, as the example's training code does.
SAVES_ON_SIGTERM = textwrap.dedent("""
    import os, pathlib, signal, sys, time
    base = pathlib.Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
    (base / "model/early.txt").write_text("early")
    (base / "output/data/partial.txt").write_text("partial")
    def on_term(signum, frame):
        print(f"SIGTERM at {time.time()}", flush=True)
        (base / "model/final.txt").write_text("saved in the grace period")
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    print(f"started at {time.time()}", flush=True)
    time.sleep(60)
    print("slept to the end", flush=True)
""")

# Says it got SIGTERM and goes on sleeping: only SIGKILL ends it.
IGNORES_SIGTERM = textwrap.dedent("""
    import signal, time
    signal.signal(signal.SIGTERM, lambda signum, frame: print(f"SIGTERM at {time.time()}",
                                                              flush=True))
    print(f"started at {time.time()}", flush=True)
    for _ in range(600):
        time.sleep(0.1)
    print("slept to the end", flush=True)
""")


def limited_config(make_config, tmp_path: Path, program: str, **changes):
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "train.py").write_text(program)
    return make_config(source_dir=str(code), training_schema=None, metric_definitions=[],
                       **changes)


def stamps(log: str, what: str) -> list[float]:
    return [float(line.split(" at ")[1]) for line in log.splitlines() if line.startswith(what)]


def timed_launch(path: Path, grace: float) -> tuple[float, object]:
    began = time.monotonic()
    result = sagebook("launch", str(path), env={**os.environ,
                                                "SAGEBOOK_STOP_GRACE_SECONDS": str(grace)})
    return time.monotonic() - began, result


@pytest.mark.slow
def test_max_runtime_stops_the_run_and_keeps_what_it_saved(make_config, tmp_path):
    # retries: 2 as well: the limit ends the job, it does not start another attempt
    path = limited_config(make_config, tmp_path, SAVES_ON_SIGTERM, max_runtime=3, retries=2)
    took, result = timed_launch(path, grace=20)
    assert result.returncode == 1, result.stderr
    assert took < 20, took  # the code alone would sleep 60 s; it ended at SIGTERM
    assert "max_runtime (3 s) reached: the job stops (MaxRuntimeExceeded)" in result.stdout
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Stopped" and m["secondary_status"] == "MaxRuntimeExceeded"
    assert m["exit_code"] == 0
    history = m["status_history"]
    assert [h["status"] for h in history] == ["Starting", "InProgress", "Stopping", "Stopped"]
    assert [h.get("secondary_status") for h in history] == [
        None, None, "MaxRuntimeExceeded", "MaxRuntimeExceeded"]
    log = (run / "logs/algo-1.log").read_text()
    [started], [stopped] = stamps(log, "started"), stamps(log, "SIGTERM")
    assert 2.5 <= stopped - started < 6  # from the start of the process, Python's own included
    assert log.count("started at") == 1 and "slept to the end" not in log
    with tarfile.open(m["model_artifact"]) as tar:
        assert sorted(tar.getnames()) == ["early.txt", "final.txt"]
        assert tar.extractfile("final.txt").read() == b"saved in the grace period"
    with tarfile.open(m["output_artifact"]) as tar:
        assert tar.getnames() == ["partial.txt"]
    shown = sagebook("show", m["run_id"], "--store", str(tmp_path / "experiments"))
    assert "Stopping (MaxRuntimeExceeded)" in shown.stdout, shown.stderr
    report = sagebook("report", "--store", str(tmp_path / "experiments"))
    assert report.returncode == 0, report.stderr
    page = tmp_path / "experiments/_report/runs" / m["experiment"] / f"{m['run_id']}.html"
    assert "Stopping (MaxRuntimeExceeded)</td>" in page.read_text()


@pytest.mark.slow
def test_a_stop_by_hand_uploads_the_model_too_without_a_limit_named(make_config, tmp_path):
    path = limited_config(make_config, tmp_path, SAVES_ON_SIGTERM)
    proc = start_launch(str(path), until="started at")
    proc.send_signal(signal.SIGTERM)  # as Ctrl-C or `sagebook stop` reach the launcher
    proc.communicate(timeout=60)
    m = manifest(runs(tmp_path / "experiments")[0])
    assert m["status"] == "Stopped" and "secondary_status" not in m
    with tarfile.open(m["model_artifact"]) as tar:
        assert sorted(tar.getnames()) == ["early.txt", "final.txt"]


@pytest.mark.slow
def test_code_that_ignores_sigterm_is_killed_after_the_grace(make_config, tmp_path):
    path = limited_config(make_config, tmp_path, IGNORES_SIGTERM, max_runtime=2)
    took, result = timed_launch(path, grace=3)
    assert result.returncode == 1, result.stderr
    assert took < 30, took  # not the program's 60 s
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Stopped" and m["secondary_status"] == "MaxRuntimeExceeded"
    assert m["exit_code"] == 137  # SIGKILL
    log = (run / "logs/algo-1.log").read_text()
    [started], [sigterm] = stamps(log, "started"), stamps(log, "SIGTERM")
    ended = (run / "manifest.json").stat().st_mtime
    assert 1.5 <= sigterm - started < 5
    assert ended - sigterm >= 3  # the whole grace, then SIGKILL
    assert "slept to the end" not in log


@pytest.mark.slow
def test_max_wait_stops_a_spot_run_on_every_host(make_config, tmp_path):
    # max_wait counts from the job's start, max_runtime from the training's: with both at
    # 3 s, the spot job's wait runs out first, as when SageMaker waited for capacity.
    path = limited_config(make_config, tmp_path, SAVES_ON_SIGTERM, max_runtime=3, max_wait=3,
                          spot=True, checkpoint_uri=str(tmp_path / "checkpoints"),
                          instance_count=2)
    took, result = timed_launch(path, grace=20)
    assert result.returncode == 1, result.stderr
    assert took < 25, took
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Stopped" and m["secondary_status"] == "MaxWaitTimeExceeded"
    assert m["status_history"][-2] == {**m["status_history"][-2], "status": "Stopping",
                                       "secondary_status": "MaxWaitTimeExceeded"}
    for host in ("algo-1", "algo-2"):
        assert len(stamps((run / f"logs/{host}.log").read_text(), "SIGTERM")) == 1
    with tarfile.open(m["model_artifact"]) as tar:
        assert "final.txt" in tar.getnames()


@pytest.mark.slow
def test_a_run_within_its_limit_completes_as_before(make_config, tmp_path):
    path = limited_config(make_config, tmp_path, "print('done')\n", max_runtime=30)
    took, result = timed_launch(path, grace=1)
    assert result.returncode == 0, result.stderr
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Completed" and "secondary_status" not in m
    assert all(set(h) == {"status", "time"} for h in m["status_history"])


# A `docker` that records its calls; its `run` sleeps as a long training would.
DOCKER = textwrap.dedent("""\
    #!{python}
    import json, os, sys, time
    with open(os.environ["DOCKER_STUB_LOG"], "a") as log:
        log.write(json.dumps(sys.argv[1:]) + "\\n")
    if sys.argv[1] == "run":
        print("container started", flush=True)
        time.sleep(60)
""")


@pytest.mark.slow
def test_max_runtime_stops_a_local_docker_run_with_docker_stop(make_config, tmp_path,
                                                               monkeypatch):
    stub = tmp_path / "bin/docker"
    stub.parent.mkdir()
    stub.write_text(DOCKER.format(python=sys.executable))
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_STUB_LOG", str(tmp_path / "docker.log"))
    path = make_config(instance_type="local-docker", image_uri="img:1", max_runtime=2)
    took, result = timed_launch(path, grace=2.5)
    assert result.returncode == 1, result.stderr
    assert took < 30, took
    m = manifest(runs(tmp_path / "experiments")[0])
    assert m["status"] == "Stopped" and m["secondary_status"] == "MaxRuntimeExceeded"
    calls = [json.loads(line) for line in (tmp_path / "docker.log").read_text().splitlines()]
    assert calls[-1] == ["stop", "--time", "3", f"sagebook-{m['job_name']}"]


def test_attempts_share_the_runtime_and_the_wait_counts_between_them():
    limits = TimeLimits(runtime=0.6, wait=None)
    for _ in range(2):  # two attempts of 0.25 s: 0.5 s of the 0.6 s used
        limits.begin_attempt()
        time.sleep(0.25)
        assert limits.exceeded() is None
        limits.end_attempt()
    time.sleep(0.3)  # between attempts: not training time
    assert limits.exceeded() is None and 0.5 <= limits.runtime_used() < 0.6
    limits.begin_attempt()
    time.sleep(0.15)  # the third attempt gets only what is left
    assert limits.exceeded() == RUNTIME_EXCEEDED
    spot = TimeLimits(runtime=10, wait=0.3)
    time.sleep(0.35)  # waiting for capacity: no attempt yet, the wait runs out all the same
    assert spot.exceeded() == WAIT_EXCEEDED and spot.describe() == "max_wait (0.3 s)"


def test_limits_come_from_the_request():
    request = {"StoppingCondition": {"MaxRuntimeInSeconds": 8, "MaxWaitTimeInSeconds": 20}}
    assert (TimeLimits.of(request).runtime, TimeLimits.of(request).wait) == (8, None)
    spot = TimeLimits.of({**request, "EnableManagedSpotTraining": True})
    assert (spot.runtime, spot.wait) == (8, 20)


@pytest.mark.parametrize("value", ["121", "-1", "soon", "nan", ""])
def test_a_grace_sagemaker_would_not_give_is_refused(monkeypatch, value):
    monkeypatch.setenv("SAGEBOOK_STOP_GRACE_SECONDS", value)
    with pytest.raises(ConfigError, match="SAGEBOOK_STOP_GRACE_SECONDS: a number of seconds "
                                          "from 0 to 120"):
        stop_grace()


def test_grace_is_sagemakers_unless_set(monkeypatch):
    monkeypatch.delenv("SAGEBOOK_STOP_GRACE_SECONDS", raising=False)
    assert stop_grace() == 120
    monkeypatch.setenv("SAGEBOOK_STOP_GRACE_SECONDS", "2.5")
    assert stop_grace() == 2.5


def test_launch_with_a_bad_grace_fails_before_the_record(make_config, tmp_path):
    path = limited_config(make_config, tmp_path, "print('done')\n")
    result = sagebook("launch", str(path),
                      env={**os.environ, "SAGEBOOK_STOP_GRACE_SECONDS": "600"})
    assert result.returncode == 2
    assert "SAGEBOOK_STOP_GRACE_SECONDS: a number of seconds from 0 to 120" in result.stderr
    assert not (tmp_path / "experiments").exists()
