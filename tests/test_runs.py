"""Seeing the team's runs: list/filter/sort, show, diff, rerun, SageMaker status refresh and the
index under concurrent writers — over a local folder and over S3 on the local endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from sagebook import index
from sagebook.launch import launch
from sagebook.record import Record, job_name, new_run_id
from sagebook.stores import open_store

from conftest import add_run, listed, run_cli, sagebook

HOUR = 3600


def ago(hours: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - hours * HOUR))


# --------------------------------------------------------------------------------------------
# list


def test_list_filters_and_sorts_runs(store, capsys):
    a = add_run(store, user="ann", created=ago(50), metrics={"acc": 0.9}, tags={"team": "ml"})
    b = add_run(store, user="bob", created=ago(30), status="Failed", metrics={"acc": 0.5},
                failure="boom")
    c = add_run(store, "exp-b", user="ann", created=ago(2), metrics={"acc": 0.7},
                tags={"team": "cv"})
    d = add_run(store, "exp-b", user="bob", created=ago(1), status="InProgress")

    def ids(*args):
        return [r["run_id"] for r in listed(capsys, store, *args)]

    assert ids() == [d.run_id, c.run_id, b.run_id, a.run_id]  # newest first
    assert ids("-e", "exp-b") == [d.run_id, c.run_id]
    assert ids("--user", "bob") == [d.run_id, b.run_id]
    assert ids("--status", "failed,inprogress") == [d.run_id, b.run_id]
    assert ids("--tag", "team=ml") == [a.run_id]
    assert ids("--tag", "team") == [c.run_id, a.run_id]
    assert ids("--since", "1d") == [d.run_id, c.run_id]
    assert ids("--sort", "acc", "--desc") == [a.run_id, c.run_id, b.run_id, d.run_id]
    assert ids("--sort", "acc") == [b.run_id, c.run_id, a.run_id, d.run_id]  # none: last
    assert ids("--sort", "user", "--limit", "2") == [a.run_id, c.run_id]
    assert ids("--sort", "created", "--asc", "-n", "1") == [a.run_id]
    [failed] = listed(capsys, store, "--status", "Failed")
    assert failed["failure_reason"] == "boom" and failed["duration"] >= 0

    code, out, err = run_cli(capsys, "list", "--store", store.uri, "--limit", "3")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["RUN", "EXPERIMENT", "USER", "CREATED", "INSTANCE",
                                               "STATUS", "DURATION", "ACC", "COMMIT",
                                               "TAGS"]
    assert lines[1].startswith(d.run_id) and "InProgress" in lines[1]
    assert "Failed" in lines[3] and "0.5" in lines[3] and "01234567" in lines[3]
    assert "3 of 4 runs shown" in err


def test_dirty_commits_are_marked(store, capsys):
    add_run(store, commit="feedfacecafebeef", dirty=True)
    code, out, _ = run_cli(capsys, "list", "--store", store.uri)
    assert code == 0 and "feedface*" in out


def test_store_comes_from_flag_env_or_job_config(tmp_path, make_config, monkeypatch, capsys):
    add_run(open_store(str(tmp_path / "experiments")), run_id="20260101-000000-aaaaaa")
    add_run(open_store(str(tmp_path / "other")), run_id="20260101-000000-bbbbbb")
    config = make_config()  # its experiments_uri is tmp_path/experiments
    monkeypatch.delenv("SAGEBOOK_EXPERIMENTS_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert [r["run_id"] for r in listed_args(capsys, "-c", str(config))] == [
        "20260101-000000-aaaaaa"]
    assert [r["run_id"] for r in listed_args(capsys)] == ["20260101-000000-aaaaaa"]  # ./exp…
    monkeypatch.setenv("SAGEBOOK_EXPERIMENTS_URI", str(tmp_path / "other"))
    assert [r["run_id"] for r in listed_args(capsys, "-c", str(config))] == [
        "20260101-000000-bbbbbb"]
    assert [r["run_id"] for r in listed_args(capsys, "--store", str(tmp_path / "experiments"))
            ] == ["20260101-000000-aaaaaa"]


def listed_args(capsys, *args):
    code, out, err = run_cli(capsys, "list", "--json", *args)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_list_on_a_local_store_loads_no_aws_or_plotting_code(tmp_path):
    add_run(open_store(str(tmp_path / "records")))
    probe = textwrap.dedent(f"""
        import sys
        from sagebook.cli import main
        assert main(["list", "--store", {str(tmp_path / "records")!r}]) == 0
        heavy = [m for m in ("boto3", "botocore", "pandas", "matplotlib", "nbconvert",
                             "pydantic") if m in sys.modules]
        print("heavy:", heavy)
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "heavy: []" in result.stdout


def test_the_index_holds_what_the_manifest_holds_credentials_masked(tmp_path, capsys):
    store = open_store(str(tmp_path / "records"))
    add_run(store, status="Failed", failure="denied for AKIAABCDEFGHIJKLMNOP")
    [row] = listed(capsys, store)
    assert "AKIA" not in json.dumps(row) and "****" in row["failure_reason"]


def test_records_written_before_the_index_are_found_by_reindex(tmp_path, capsys):
    store = open_store(str(tmp_path / "records"))
    record = add_run(store)
    for key in list(store.list(index.ROOT)):
        store.delete([key])  # as if written by a sagebook without the index
    assert listed(capsys, store) == []
    code, _, err = run_cli(capsys, "list", "--store", store.uri, "--reindex")
    assert code == 0 and "indexed 1 records" in err
    assert [r["run_id"] for r in listed(capsys, store)] == [record.run_id]


# --------------------------------------------------------------------------------------------
# show and diff


def test_show_prints_everything_about_a_run(store, capsys):
    record = add_run(store, status="Failed", metrics={"loss": 0.25}, failure="CUDA out of memory")
    record.put_text("logs/algo-1.log", "hello\n")
    code, out, err = run_cli(capsys, "show", record.run_id[-6:], "--store", store.uri)
    assert code == 0, err
    for expected in (f"run:         {record.run_id}", "status:      Failed",
                     "CUDA out of memory", "InProgress", "loss", "0.25",
                     "training config (config/training_config.yaml):", "optimizer: adam",
                     "job config (sagemaker_config.yaml):", record.url("logs/algo-1.log"),
                     record.url("metrics.jsonl")):
        assert expected in out, expected
    code, out, _ = run_cli(capsys, "show", f"exp-a/{record.run_id}", "--store", store.uri,
                           "--json")
    data = json.loads(out)
    assert data["manifest"]["status"] == "Failed"
    assert data["metrics"]["loss"] == {"points": 2, "low": 0.125, "high": 0.25, "last": 0.25}


def test_show_names_unknown_and_ambiguous_runs_without_traceback(tmp_path):
    store = open_store(str(tmp_path / "records"))
    add_run(store, run_id="20260101-000000-aaaaaa")
    add_run(store, run_id="20260101-000000-aaaabb")
    result = sagebook("show", "nope", "--store", store.uri)
    assert result.returncode == 1 and "no run 'nope'" in result.stderr
    assert "Traceback" not in result.stderr
    result = sagebook("show", "aaaa", "--store", store.uri)
    assert result.returncode == 1 and "matches 2 runs" in result.stderr


def test_diff_shows_configs_key_by_key_and_metrics_side_by_side(store, capsys):
    a = add_run(store, training={"epochs": 2, "optimizer": "adam", "data": {"f": "a.csv"}},
                metrics={"acc": 0.8}, commit="aaaaaaaa1111")
    b = add_run(store, training={"epochs": 5, "optimizer": "adam", "data": {"f": "b.csv"}},
                metrics={"acc": 0.1 + 0.2}, commit="bbbbbbbb2222", dirty=True)
    code, out, err = run_cli(capsys, "diff", a.run_id, b.run_id, "--store", store.uri)
    assert code == 0, err
    rows = {line.split()[1]: line.split()[2:] for line in out.splitlines()
            if line.startswith("*")}
    assert rows["training.epochs"] == ["2", "5"]
    assert rows["training.data.f"] == ["a.csv", "b.csv"]
    assert rows["run.git"][:2] == ["commit", "aaaaaaaa1111"]
    assert "training.optimizer" not in out  # the same: shown with --all only
    assert "metrics.acc" in out and "2 config keys differ" in out
    assert rows["metrics.acc"] == ["0.8", "0.3"]  # 0.30000000000000004, as people read it
    code, out, _ = run_cli(capsys, "diff", a.run_id, b.run_id, "--store", store.uri, "--all",
                           "--json")
    same = {r["key"]: r["same"] for r in json.loads(out) if r["section"] == "training"}
    assert same == {"epochs": False, "optimizer": True, "data.f": False}


def test_diff_cuts_a_long_value_at_60_characters_with_an_ellipsis(store, capsys):
    a = add_run(store, training={"prompt": "a" * 100, "layers": [1] * 40})
    b = add_run(store, training={"prompt": "b" * 100, "layers": [2] * 40})
    code, out, err = run_cli(capsys, "diff", a.run_id, b.run_id, "--store", store.uri)
    assert code == 0, err
    rows = {line.split()[1]: line.split()[2:] for line in out.splitlines()
            if line.startswith("*")}
    assert rows["training.prompt"] == ["a" * 59 + "…", "b" * 59 + "…"]
    assert rows["training.layers.0"] == ["1", "2"]


@pytest.mark.parametrize("content, reason", [
    (b"experiment: [unclosed\n", "not valid YAML"),
    (b"x: " + b"y" * (2 << 20) + b"\n", "too large (more than 1,048,576 bytes)"),
    (bytes(range(256)) * 4, "not UTF-8 text"),
    (b"just a sentence\n", "not a YAML mapping (a str)"),
])
def test_diff_with_one_unreadable_config_shows_the_rest_and_names_it(store, capsys, content,
                                                                      reason):
    a = add_run(store, training={"epochs": 2, "optimizer": "adam"}, metrics={"acc": 0.8})
    b = add_run(store, training={"epochs": 5, "optimizer": "adam"}, metrics={"acc": 0.9},
                user="bob")
    store.write_bytes(f"{b.prefix}/sagemaker_config.yaml", content)
    where = b.url("sagemaker_config.yaml")
    code, out, err = run_cli(capsys, "diff", a.run_id, b.run_id, "--store", store.uri)
    assert code == 0, err
    rows = {line.split()[1]: line.split()[2:] for line in out.splitlines()
            if line.startswith("*")}
    assert rows["run.user"] == ["ann", "bob"] and rows["training.epochs"] == ["2", "5"]
    assert "metrics.acc" in out
    assert not any(key.startswith("job.") for key in rows)  # not compared with half of it
    [named] = [line for line in out.splitlines() if line.startswith("not compared: ")]
    assert named.startswith(f"not compared: {where}: {reason}")
    code, out, err = run_cli(capsys, "diff", a.run_id, b.run_id, "--store", store.uri, "--json")
    assert code == 0
    assert {r["key"] for r in json.loads(out) if r["section"] == "training"} == {"epochs"}
    assert err.startswith(f"sagebook: not compared: {where}: {reason}")
    assert "Traceback" not in err


# --------------------------------------------------------------------------------------------
# rerun


@pytest.mark.slow
def test_rerun_launches_identical_configs_and_names_its_parent(store, make_config, capsys):
    parent = launch(make_config(experiments_uri=store.uri),
                    ["training.epochs=1", "training.learning_rate=0.02"], echo=lambda _: None)
    assert parent.outcome.status == "Completed"

    code, out, err = run_cli(capsys, "rerun", parent.record.run_id, "--store", store.uri)
    assert code == 0, err
    [child] = [r for r in listed(capsys, store) if r["run_id"] != parent.record.run_id]
    assert child["parent"] == parent.record.run_id and child["status"] == "Completed"
    child_record = Record.open(store, child["experiment"], child["run_id"])
    assert child_record.manifest["parent"]["record_uri"] == parent.record.uri
    assert child_record.manifest["parent"]["git_commit"] == parent.record.manifest["git"][
        "commit"]
    for name in ("sagemaker_config.yaml", "config/training_config.yaml"):
        ours, theirs = (yaml.safe_load(r.store.read_text(f"{r.prefix}/{name}"))
                        for r in (parent.record, child_record))
        assert ours == theirs, name
    assert child_record.manifest["image_uri"] == parent.record.manifest["image_uri"]
    code, out, _ = run_cli(capsys, "diff", parent.record.run_id, child["run_id"], "--store",
                           store.uri)
    assert "configs identical" in out

    code, out, err = run_cli(capsys, "rerun", parent.record.run_id, "--store", store.uri,
                             "-o", "training.epochs=2")
    assert code == 0, err
    newest = listed(capsys, store)[0]
    assert newest["parent"] == parent.record.run_id and newest["overrides"] == [
        "training.epochs=2"]
    code, out, _ = run_cli(capsys, "diff", parent.record.run_id, newest["run_id"], "--store",
                           store.uri)
    assert [line.split()[1:4] for line in out.splitlines() if line.startswith("*")
            and line.split()[1].startswith("training.")] == [["training.epochs", "1", "2"]]


# --------------------------------------------------------------------------------------------
# SageMaker status refresh


def test_unfinished_cloud_runs_are_refreshed_in_batches_and_written_back(bucket, monkeypatch,
                                                                        capsys):
    import boto3

    import sagebook.aws as aws

    store = open_store(f"s3://{bucket}/records")
    sagemaker = boto3.client("sagemaker")
    cloud = []
    for experiment, count in (("exp-a", 3), ("exp-b", 2)):
        for _ in range(count):
            run_id = new_run_id()
            name = job_name(experiment, run_id)
            sagemaker.create_training_job(
                TrainingJobName=name, RoleArn="arn:aws:iam::123456789012:role/R",
                AlgorithmSpecification={"TrainingImage": "123456789012.dkr.ecr.us-east-1."
                                        "amazonaws.com/t:1", "TrainingInputMode": "File"},
                OutputDataConfig={"S3OutputPath": f"s3://{bucket}/out"},
                ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1,
                                "VolumeSizeInGB": 30},
                StoppingCondition={"MaxRuntimeInSeconds": 600},
                Tags=[{"Key": "sagebook:experiment", "Value": experiment},
                      {"Key": "sagebook:run-id", "Value": run_id}])
            cloud.append(add_run(store, experiment, run_id=run_id, status="InProgress",
                                 instance_type="ml.m5.large"))
    add_run(store, "exp-a", status="Completed", instance_type="ml.m5.large")  # not asked
    local = add_run(store, "exp-a", status="InProgress")  # not SageMaker's: not asked

    calls: list[str] = []
    real_client = aws.client

    def counting_client(service, profile=None, region=None):
        client = real_client(service, profile, region)
        client.meta.events.register("before-call.sagemaker.*",
                                    lambda model, **_: calls.append(model.name))
        return client

    monkeypatch.setattr(aws, "client", counting_client)
    rows = {r["run_id"]: r for r in listed(capsys, store)}
    assert calls == ["Search", "Search"]  # one per experiment, not one per run
    for record in cloud:
        assert rows[record.run_id]["status"] == "Completed"
        record.reload()
        assert record.status == "Completed"
        assert record.manifest["status_source"] == "sagemaker search"
        assert [h["status"] for h in record.manifest["status_history"]] == [
            "Starting", "InProgress", "Completed"]
    assert rows[local.run_id]["status"] == "InProgress"

    calls.clear()
    assert {r["status"] for r in listed(capsys, store, "-e", "exp-b")} == {"Completed"}
    assert calls == []  # written back: nothing left to ask


def test_refresh_failure_still_lists_what_the_store_says(tmp_path, monkeypatch, capsys):
    store = open_store(str(tmp_path / "records"))
    add_run(store, status="InProgress", instance_type="ml.m5.large")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
                 "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")  # a laptop without AWS credentials
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    code, out, err = run_cli(capsys, "list", "--store", store.uri)
    assert code == 0 and "InProgress" in out
    assert "statuses of 1 cloud runs not refreshed" in err


# --------------------------------------------------------------------------------------------
# The index under concurrent writers


WRITER = textwrap.dedent("""
    import sys, time
    from sagebook import index
    from sagebook.record import Record
    from sagebook.stores import open_store

    # As much contention as possible: every finished run and every read compacts.
    index.COMPACT_ONE_IN = 1
    index.COMPACT_AT = 0
    store, worker, count, start = open_store(sys.argv[1]), sys.argv[2], int(sys.argv[3]), \\
        float(sys.argv[4])
    time.sleep(max(0.0, start - time.time()))
    for i in range(count):
        run_id = f"2026{worker}-{i:03d}"
        record = Record.create(store, "race", run_id, {"instance_type": "local"})
        record.set_status("InProgress")
        record.set_status("Completed", final_metrics={"i": i})
        seen = {e["run_id"]: e["status"] for e in index.entries(store, "race")}
        mine = [f"2026{worker}-{j:03d}" for j in range(i + 1)]
        lost = [r for r in mine if seen.get(r) != "Completed"]
        if lost:
            sys.exit(f"worker {worker} lost {lost} after run {i}")
""")


@pytest.mark.slow
def test_concurrent_writers_never_lose_each_others_runs(store, capsys):
    writers, each = 6, 4
    start = time.time() + 1.5  # all processes begin together, after their imports
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, store.uri, f"w{n}", str(each),
                               str(start)], stderr=subprocess.PIPE, text=True)
             for n in range(writers)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    rows = listed(capsys, store, "--limit", "0")
    assert len(rows) == writers * each
    assert {r["status"] for r in rows} == {"Completed"} and {r["revision"] for r in rows} == {3}
    index.compact(store, "race")
    assert len(list(index.entries(store, "race"))) == writers * each
    assert [k for k in store.list(index.EVENTS)] == []  # all folded into the page
