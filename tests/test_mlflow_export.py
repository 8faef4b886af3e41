"""`sagebook export mlflow` against a real MLflow tracking server (sqlite backend) started on
127.0.0.1, read back through the MLflow client; and `mlflow:` in the job config as the
request's MlflowConfig, checked against the SageMaker model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sagebook.apicheck import check_request
from sagebook.runs import annotate, parse_time
from sagebook.stores import open_store

from conftest import REPO, add_run, sagebook
from faults import Answer, FaultProxy

SDK = REPO / ".venv-sdk" / "bin"
needs_mlflow = pytest.mark.skipif(not (SDK / "mlflow").exists(),
                                  reason="the SDK venv (make sdk-venv) brings mlflow")
ARN = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team"


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """`mlflow server` with a sqlite backend, on a free port of 127.0.0.1."""
    folder = tmp_path_factory.mktemp("mlflow")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [str(SDK / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240  # a cold start migrates the new database
    try:
        while True:
            with socket.socket() as attempt:
                if attempt.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None, (folder / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def export(uri: str, store, *args: str) -> subprocess.CompletedProcess:
    """The command as a user with mlflow installed runs it (this checkout's code)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    return subprocess.run([str(SDK / "python"), "-m", "sagebook.cli", "export", "mlflow",
                           "--tracking-uri", uri, "--store", store.uri, *args],
                          capture_output=True, text=True, timeout=300, env=env)


def server_holds(uri: str) -> dict:
    done = subprocess.run([str(SDK / "python"), str(REPO / "tests/mlflow_check.py"), uri],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@needs_mlflow
def test_export_writes_runs_and_a_second_export_adds_only_what_is_new(tracking_server,
                                                                       tmp_path):
    store = open_store(str(tmp_path / "records"))
    good = add_run(store, metrics={"val_accuracy": 0.9}, tags={"team": "ml"},
                   training={"learning_rate": 0.01, "optimizer": "adam",
                             "data": {"train_file": "train.csv"}})
    good.put_text("request.json", json.dumps({"TrainingJobName": good.manifest["job_name"]}))
    good.update(cost={"usd": 0.42})
    annotate(good, name="baseline", note="the one to beat", tags=["stage=best"])
    failed = add_run(store, status="Failed", failure="boom")
    running = add_run(store, status="InProgress", metrics={"loss": 0.5})

    first = export(tracking_server, store)
    assert first.returncode == 0, first.stderr
    assert "3 runs created, 0 updated, 0 unchanged" in first.stdout
    assert "View run" not in first.stdout  # mlflow's line for every run it ends
    held = server_holds(tracking_server)
    run = held[good.run_id]
    assert run["experiment"] == "exp-a" and run["status"] == "FINISHED"
    good.reload()
    assert run["end_time"] == int(parse_time(good.manifest["ended"]).timestamp() * 1000)
    assert run["params"] == {"learning_rate": "0.01", "optimizer": "adam",
                             "data.train_file": "train.csv", "job.instance_type": "local",
                             "job.max_runtime": "600"}
    tags = run["tags"]
    assert tags["mlflow.user"] == "ann" and tags["mlflow.source.git.commit"] == "0123456789abcdef"
    assert tags["sagebook.status"] == "Completed" and tags["sagebook.cost_usd"] == "0.42"
    assert tags["sagebook.record_uri"] == good.uri and tags["mlflow.runName"] == "baseline"
    assert tags["team"] == "ml" and tags["stage"] == "best"
    assert "the one to beat" in tags["mlflow.note.content"]
    # add_run's metrics: two points per metric, steps 0 and 1
    assert [(s, v) for s, v, _ in run["metrics"]["val_accuracy"]] == [(0, 0.45), (1, 0.9)]
    assert {"sagebook/request.json", "sagebook/sagemaker_config.yaml",
            "sagebook/config/training_config.yaml"} <= set(run["artifacts"])
    assert held[failed.run_id]["status"] == "FAILED"
    assert held[running.run_id]["status"] == "RUNNING"

    again = export(tracking_server, store)
    assert "0 runs created, 0 updated, 3 unchanged" in again.stdout, again.stderr

    # the running run goes on and ends; a note is added: only what is new is sent
    with store.local_path().joinpath(running.prefix, "metrics.jsonl").open("a") as metrics:
        metrics.write(json.dumps({"name": "loss", "value": 0.1, "step": 2,
                                  "timestamp": time.time()}) + "\n")
    running.set_status("Completed", final_metrics={"loss": 0.1})
    annotate(good, note="confirmed on the full data")
    third = export(tracking_server, store)
    assert "0 runs created, 2 updated, 1 unchanged" in third.stdout, third.stderr
    held = server_holds(tracking_server)
    assert [s for s, _, _ in held[running.run_id]["metrics"]["loss"]] == [0, 1, 2]  # no repeats
    assert held[running.run_id]["status"] == "FINISHED" and held[running.run_id]["end_time"]
    assert "confirmed on the full data" in held[good.run_id]["tags"]["mlflow.note.content"]
    assert len(held) == 3


@needs_mlflow
def test_an_export_that_fails_halfway_is_finished_by_the_next(tracking_server, tmp_path):
    store = open_store(str(tmp_path / "records"))
    ended = add_run(store, "halfway", metrics={"loss": 0.2})
    proxy = FaultProxy(tracking_server).start()
    try:  # the run is created and filled in, but ending it fails
        proxy.fail(r"POST /api/2\.0/mlflow/runs/update", answer=Answer(
            400, b'{"error_code": "INVALID_PARAMETER_VALUE", "message": "no"}',
            (("Content-Type", "application/json"),)))
        first = export(proxy.url, store)
    finally:
        proxy.stop()
    assert first.returncode == 1 and "1 runs not exported" in first.stderr, first.stderr
    assert server_holds(tracking_server)[ended.run_id]["status"] == "RUNNING"

    again = export(tracking_server, store)
    assert "0 runs created, 1 updated, 0 unchanged" in again.stdout, again.stderr
    held = server_holds(tracking_server)[ended.run_id]
    assert held["status"] == "FINISHED" and held["params"]["epochs"] == "2"
    assert [s for s, _, _ in held["metrics"]["loss"]] == [0, 1]  # no point sent twice
    assert "0 runs created, 0 updated, 1 unchanged" in export(tracking_server, store).stdout


def test_export_without_mlflow_says_how_to_get_it(tmp_path):
    store = open_store(str(tmp_path / "records"))
    add_run(store)
    done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['mlflow'] = None; "
                           "from sagebook.cli import main; sys.exit(main(sys.argv[1:]))",
                           "export", "mlflow", "--store", store.uri],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "pip install 'sagebook[mlflow]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_mlflow_in_the_job_config_is_the_requests_mlflow_config(cloud_config, fake, bucket):
    config = cloud_config(mlflow={"arn": ARN, "experiment": "digits"})
    result = sagebook("launch", str(config), "--dry-run")
    assert result.returncode == 0, result.stderr
    request = json.loads(result.stdout)
    assert request["MlflowConfig"] == {"MlflowResourceArn": ARN, "MlflowExperimentName": "digits",
                                       "MlflowRunName": request["TrainingJobName"]}
    assert check_request("CreateTrainingJob", request) == []  # the whole model agrees

    bad = cloud_config("bad.yaml", mlflow={"arn": "arn:aws:sagemaker:us-east-1:1234:mlflow/x"})
    result = sagebook("launch", str(bad))
    assert result.returncode == 2 and "bad.yaml:" in result.stderr, result.stderr
    assert "job.mlflow" in result.stderr and "MlflowResourceArn" in result.stderr
    assert "Traceback" not in result.stderr and fake.created == []

    problems = check_request("CreateTrainingJob", {**request, "MlflowConfig": {
        "MlflowResourceArn": "not-an-arn"}})
    assert [p.kind for p in problems] == ["pattern"]
    assert "MlflowResourceArn" in str(problems[0].path)


def test_mlflow_settings_are_checked_with_file_and_key(make_config, tmp_path):
    path = make_config(mlflow={"arn": ARN, "experiment_name": "x"})
    result = sagebook("launch", str(path), "--dry-run")
    assert result.returncode == 2 and "mlflow.experiment_name" in result.stderr
    assert yaml.safe_load(Path(path).read_text())["mlflow"]["arn"] == ARN
