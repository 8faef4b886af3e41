"""`sagebook export mlflow` against a real MLflow tracking server (sqlite backend) started on
127.0.0.1, read back through the MLflow client; and `mlflow:` in the job config as the
request's MlflowConfig, checked against the SageMaker model."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sagebook.apicheck import check_request
from sagebook.runs.details import annotate
from sagebook.runs.listing import parse_time
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
    server, uri = start_server(tmp_path_factory.mktemp("mlflow"))
    try:
        yield uri
    finally:
        server.terminate()
        server.wait(timeout=30)


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    """`mlflow server` keeping its runs and artifacts in `folder` (a second one on the same
    folder finds what the first held); returned once it accepts connections."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (folder / "server.log").open("a") as log:
        server = subprocess.Popen(
            [str(SDK / "mlflow"), "server", "--backend-store-uri",
             f"sqlite:///{folder}/mlflow.db", "--artifacts-destination", str(folder / "artifacts"),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 240  # a cold start migrates the new database
    while True:
        with socket.socket() as attempt:
            if attempt.connect_ex(("127.0.0.1", port)) == 0:
                return server, f"http://127.0.0.1:{port}"
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise AssertionError("mlflow server did not start: "
                                 + (folder / "server.log").read_text()[-3000:])
        time.sleep(0.5)


def export(uri: str, store, *args: str, memory: int | None = None
           ) -> subprocess.CompletedProcess:
    """The command as a user with mlflow installed runs it (this checkout's code); with
    `memory`, in at most that many bytes of address space."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}

    def bounded() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run([str(SDK / "python"), "-m", "sagebook.cli", "export", "mlflow",
                           "--tracking-uri", uri, "--store", store.uri, *args],
                          capture_output=True, text=True, timeout=300, env=env,
                          preexec_fn=bounded)


def server_holds(uri: str) -> dict:
    done = subprocess.run([str(SDK / "python"), str(REPO / "tests/mlflow_check.py"), uri],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@needs_mlflow
@pytest.mark.slow
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
@pytest.mark.slow
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


# --------------------------------------------------------------------------------------------
# A tracking server that stops answering, Ctrl-C, and records planted in the store


# Every MLflow run of the server: how many carry each sagebook run id, and all the text it holds
# (tags, parameters, metric names, artifacts), to look for what must not have been sent.
HELD = """
import json, sys, tempfile, pathlib
from mlflow.tracking import MlflowClient

client = MlflowClient(tracking_uri=sys.argv[1])
copies, text = {}, []
for experiment in client.search_experiments():
    for run in client.search_runs([experiment.experiment_id]):
        key = run.data.tags.get("sagebook.run_id", run.info.run_id)
        copies[key] = copies.get(key, 0) + 1
        text += [*run.data.tags.items(), *run.data.params.items(), *run.data.metrics]
        with tempfile.TemporaryDirectory() as folder:
            local = client.download_artifacts(run.info.run_id, "sagebook", folder)
            text += [p.read_text() for p in pathlib.Path(local).rglob("*") if p.is_file()]
print(json.dumps({"copies": copies, "text": json.dumps(text)}))
"""


def held_runs(uri: str) -> dict:
    done = subprocess.run([str(SDK / "python"), "-c", HELD, uri], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def exporting(uri: str, store) -> subprocess.Popen:
    """`sagebook export mlflow` in the background, its output read line by line."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    return subprocess.Popen([str(SDK / "python"), "-m", "sagebook.cli", "export", "mlflow",
                             "--tracking-uri", uri, "--store", store.uri],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@needs_mlflow
@pytest.mark.slow
def test_a_server_that_dies_mid_export_stops_it_in_one_line_and_the_next_export_finishes(
        tmp_path):
    store = open_store(str(tmp_path / "records"))
    made = [add_run(store, metrics={"loss": 0.5}).run_id for _ in range(24)]
    folder = tmp_path / "mlflow"
    folder.mkdir()
    server, uri = start_server(folder)
    try:
        proc = exporting(uri, store)
        assert proc.stderr is not None
        created = []
        for line in proc.stderr:
            if line.endswith(": created\n"):
                created.append(line)
            if len(created) == 4:
                os.killpg(server.pid, signal.SIGKILL)  # the server and its workers, at once
                break
        try:  # bounded: mlflow's own retries keep one run of a dead server busy for minutes
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("the export went on for minutes with the server gone") from None
    finally:
        stop_server(server)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    exported = len(created) + sum(1 for line in err.splitlines() if line.endswith(": created"))
    assert exported < 24
    assert err.splitlines()[-1] == (f"sagebook: the tracking server at {uri} does not answer; "
                                    f"{exported} of 24 runs exported, run again to finish")

    server, uri = start_server(folder)  # back, with what it held
    try:
        again = export(uri, store)
        assert again.returncode == 0, again.stderr
        created_now, updated, unchanged = map(int, re.findall(r"\d+", again.stdout)[:3])
        assert unchanged == exported and created_now + updated == 24 - exported, again.stdout
        # runs cut short (created, not finished) were found again by their tag
        assert held_runs(uri)["copies"] == {run_id: 1 for run_id in made}
    finally:
        stop_server(server)


def stop_server(server: subprocess.Popen) -> None:
    """The server and the workers it started (its own process group)."""
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.wait(timeout=30)


@needs_mlflow
@pytest.mark.slow
def test_ctrl_c_ends_an_export_at_once_and_the_next_finishes_it(tracking_server, tmp_path):
    store = open_store(str(tmp_path / "records"))
    made = [add_run(store, "interrupted").run_id for _ in range(12)]
    proxy = FaultProxy(tracking_server).start()
    try:
        gates = [proxy.hold(r"POST /api/2\.0/mlflow/runs/create") for _ in made]
        proc = exporting(proxy.url, store)
        deadline = time.monotonic() + 120
        while not proxy.seen("runs/create"):  # a run is being created: the server is slow
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        try:  # bounded: the requests in flight are held for 2 minutes
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("Ctrl-C did not end the export while requests were in "
                                 "flight") from None
    finally:
        for gate in gates:
            gate.set()
        proxy.stop()
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "sagebook: interrupted" and "Traceback" not in err

    again = export(tracking_server, store)
    assert again.returncode == 0, again.stderr
    copies = held_runs(tracking_server)["copies"]
    assert {run_id: copies.get(run_id) for run_id in made} == {run_id: 1 for run_id in made}


@needs_mlflow
@pytest.mark.slow
def test_a_planted_record_neither_crashes_the_export_nor_leaks_its_credentials(
        tracking_server, tmp_path):

    key_id = "AKIAIOSFODNN7EXAMPLE"  # an access key id: what every masking masks
    store = open_store(str(tmp_path / "records"))
    good = add_run(store, "planted", metrics={"acc": 0.5})
    odd = add_run(store, "planted", tags={"owner": key_id}, metrics={"acc": 0.7})
    # odd values of the right types: the export sends what it can, masked
    store.write_text(f"{odd.prefix}/manifest.json", json.dumps({
        **odd.manifest, "params": {"x": [[[[1]]]], "y": {}}, "ended": "sometime",
        "user": f"user {key_id}", "job_name": key_id, "instance_type": None}))
    # a billion laughs as a job setting the export sends: 8**9 values once expanded
    odd.put_text("sagemaker_config.yaml", "a: &a [x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)) + "instance_type: *i\n")
    # a name and a note with a key in them, as only a store writer can leave them (sagebook's
    # own `note` refuses one)
    store.write_text(f"{odd.prefix}/annotations/20261130T000000.000000Z-00000000.json",
                     json.dumps({"time": "2026-11-30T00:00:00+00:00", "user": "mallory",
                                 "set": {"name": f"run of {key_id}", "note": f"keys: {key_id}"}}))
    # an annotation written by hand: values of every type, keys MLflow would refuse
    store.write_text(f"{odd.prefix}/annotations/20261201T000000.000000Z-00000000.json",
                     json.dumps({"time": 5, "user": None, "set": {
                         "tags.nested": {"deep": [1, {"k": key_id}]}, "note": {"n": 1},
                         "tags.k" * 100: "a long key"}}))
    # what mlflow stores verbatim (the configs, the notebook) with a credential in it
    store.write_bytes(f"{odd.prefix}/failure.txt",
                      f"aws_secret_access_key = {key_id}\n\xff".encode("latin-1"))
    broken = add_run(store, "planted")
    # fields of the wrong types: a damaged record, named and not exported
    store.write_text(f"{broken.prefix}/manifest.json", json.dumps({
        **broken.manifest, "tags": "not a mapping", "params": ["not", "a", "mapping"],
        "git": "main", "cost": 5, "final_metrics": [1, 2], "created": float("inf")}))

    done = export(tracking_server, store, memory=4 << 30)  # the laughs would take far more
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert f"planted/{good.run_id}: created" in lines and f"planted/{odd.run_id}: created" \
        in lines, done.stderr
    assert f"planted/{broken.run_id}: failed" in lines and done.returncode == 1
    assert f"  planted/{broken.run_id}: {broken.url('manifest.json')}: its created is not a " \
        "text" in lines
    held = held_runs(tracking_server)
    assert held["copies"][odd.run_id] == 1
    assert key_id not in held["text"]
