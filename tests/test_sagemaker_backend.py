"""`instance_type: ml.*`: real boto3 calls over HTTP to moto, records in (local) S3.

Job lifecycles, log events and failure reasons come from `FakeSageMaker`, which scripts moto's
in-process backend (moto alone creates every job Completed and has no logs or StopTrainingJob).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from sagebook.backends import uploads
from sagebook.record import job_name, new_run_id

from conftest import IMAGE, REPO, ROLE, push_image, sagebook, start_launch, wait_for
from faults import SLOW_DOWN, THROTTLING

PROBE = textwrap.dedent("""
    import os
    print("the shipped code ran from", os.getcwd())
""")


def keys(s3, bucket: str, prefix: str = "") -> dict[str, dict]:
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.update({o["Key"]: o for o in page.get("Contents", [])})
    return found


def text(s3, bucket: str, key: str) -> str:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def the_record(s3, bucket: str) -> str:
    """The prefix of the one record in the bucket."""
    [found] = [k.removesuffix("/manifest.json") for k in keys(s3, bucket, "records/")
               if k.endswith("/manifest.json")]
    return found


def manifest_of(s3, bucket: str, prefix: str) -> dict:
    return json.loads(text(s3, bucket, f"{prefix}/manifest.json"))


# --------------------------------------------------------------------------------------------
# The request


@pytest.mark.slow
def test_every_job_option_reaches_create_training_job(cloud_config, fake, bucket, s3):
    path = cloud_config(
        instance_count=2, volume_size_gb=50, volume_kms_key="alias/volumes", max_runtime="2h",
        spot=True, max_wait="3h", checkpoint_uri=f"s3://{bucket}/checkpoints/digits",
        checkpoint_local_path="/opt/ml/checkpoints", keep_alive="10m",
        subnets=["subnet-0abc"], security_group_ids=["sg-0abc"], network_isolation=True,
        inter_container_encryption=True, environment={"LOG_LEVEL": "DEBUG"},
        tags={"team": "ml"},
        channels={"train": {"uri": f"s3://{bucket}/data/train/", "input_mode": "FastFile",
                            "distribution": "ShardedByS3Key", "content_type": "text/csv"},
                  "validation": f"s3://{bucket}/data/validation.csv"},
        output_uri=f"s3://{bucket}/outputs", output_kms_key="alias/outputs",
    )
    result = sagebook("launch", str(path), "-o", "training.epochs=3")
    assert result.returncode == 0, result.stderr
    record = the_record(s3, bucket)
    m = manifest_of(s3, bucket, record)
    request = json.loads(text(s3, bucket, f"{record}/request.json"))
    record_uri = f"s3://{bucket}/{record}"
    name = m["job_name"]
    pinned = IMAGE.replace(":latest", "@" + push_image())  # the tag, resolved at launch
    assert m["image"] == {"uri": pinned, "digest": pinned.split("@")[1], "tag": "latest"}
    assert m["image_uri"] == IMAGE
    assert request["AlgorithmSpecification"] == {
        "TrainingInputMode": "File", "TrainingImage": pinned,
        "MetricDefinitions": [{"Name": "train_loss", "Regex": "train_loss=([0-9.eE+-]+)"},
                              {"Name": "val_loss", "Regex": "val_loss=([0-9.eE+-]+)"},
                              {"Name": "val_accuracy", "Regex": "val_accuracy=([0-9.eE+-]+)"}]}
    assert request["RoleArn"] == ROLE
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 50,
        "VolumeKmsKeyId": "alias/volumes", "KeepAlivePeriodInSeconds": 600}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200,
                                            "MaxWaitTimeInSeconds": 10800}
    assert request["EnableManagedSpotTraining"] is True
    assert request["CheckpointConfig"] == {
        "S3Uri": f"s3://{bucket}/checkpoints/digits/{m['run_id']}",
        "LocalPath": "/opt/ml/checkpoints"}
    assert m["checkpoints"] == {"uri": request["CheckpointConfig"]["S3Uri"]}
    assert request["VpcConfig"] == {"Subnets": ["subnet-0abc"], "SecurityGroupIds": ["sg-0abc"]}
    assert request["EnableNetworkIsolation"] is True
    assert request["EnableInterContainerTrafficEncryption"] is True
    assert request["OutputDataConfig"] == {"S3OutputPath": f"s3://{bucket}/outputs",
                                           "KmsKeyId": "alias/outputs"}
    assert request["InputDataConfig"] == [
        {"ChannelName": "config", "InputMode": "File", "ContentType": "application/x-yaml",
         "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                         "S3Uri": f"{record_uri}/config",
                                         "S3DataDistributionType": "FullyReplicated"}}},
        {"ChannelName": "train", "InputMode": "FastFile", "ContentType": "text/csv",
         "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                         "S3Uri": f"s3://{bucket}/data/train/",
                                         "S3DataDistributionType": "ShardedByS3Key"}}},
        {"ChannelName": "validation", "InputMode": "File",
         "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                         "S3Uri": f"s3://{bucket}/data/validation.csv",
                                         "S3DataDistributionType": "FullyReplicated"}}}]
    assert request["HyperParameters"]["epochs"] == "3"
    assert request["Environment"] == {
        "LOG_LEVEL": "DEBUG", "SAGEBOOK_RUN_ID": m["run_id"],
        "SAGEBOOK_EXPERIMENT": m["experiment"], "SAGEBOOK_RECORD_URI": record_uri}
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags == {"team": "ml", "sagebook:run-id": m["run_id"],
                    "sagebook:experiment": m["experiment"], "sagebook:user": m["user"],
                    "sagebook:git-commit": m["git"]["commit"], "sagebook:record": record_uri}
    # what arrived over HTTP is what the record says was sent
    job = fake.job(name)
    assert job.resource_config == request["ResourceConfig"]
    assert job.input_data_config == request["InputDataConfig"]
    assert job.hyper_parameters == request["HyperParameters"]
    assert job.stopping_condition == request["StoppingCondition"]
    assert job.checkpoint_config == request["CheckpointConfig"]
    assert job.output_data_config == request["OutputDataConfig"]
    assert job.vpc_config == request["VpcConfig"]
    assert job.tags == request["Tags"]
    assert (job.enable_network_isolation, job.enable_inter_container_traffic_encryption,
            job.enable_managed_spot_training) == (True, True, True)
    # the record points to the job, the job to its record; the config channel is in S3
    assert m["status"] == "InProgress" and m["job_arn"] == job.arn
    assert m["aws"]["region"] == "us-east-1"
    assert "epochs: 3" in text(s3, bucket, f"{record}/config/training_config.yaml")
    assert f"sagebook attach {record_uri}" in result.stdout


@pytest.mark.slow
def test_runs_never_share_checkpoints_and_resume_from_copies_before_the_job(
        cloud_config, fake, bucket, s3):
    base = f"s3://{bucket}/checkpoints/digits"
    path = cloud_config(spot=True, checkpoint_uri=base)
    for _ in range(2):
        result = sagebook("launch", str(path))
        assert result.returncode == 0, result.stderr
    first, second = [manifest_of(s3, bucket, k.removesuffix("/manifest.json"))
                     for k in sorted(keys(s3, bucket, "records/")) if k.endswith("manifest.json")]
    prefixes = [fake.job(m["job_name"]).checkpoint_config["S3Uri"] for m in (first, second)]
    assert prefixes == [f"{base}/{first['run_id']}", f"{base}/{second['run_id']}"]
    assert [m["checkpoints"] for m in (first, second)] == [{"uri": p} for p in prefixes]

    # What the first job saved (moto runs nothing: put it there as SageMaker would)
    saved = {"checkpoint.joblib": b"epoch 2", "extra/state.json": b"{}"}
    for name, body in saved.items():
        s3.put_object(Bucket=bucket, Key=f"checkpoints/digits/{first['run_id']}/{name}",
                      Body=body)
    result = sagebook("launch", str(path), "-o", f"job.resume_from={first['run_id']}")
    assert result.returncode == 0, result.stderr
    [third] = [manifest_of(s3, bucket, k.removesuffix("/manifest.json"))
               for k in keys(s3, bucket, "records/") if k.endswith("manifest.json")
               and first["run_id"] not in k and second["run_id"] not in k]
    own = f"checkpoints/digits/{third['run_id']}"
    assert third["checkpoints"] == {"uri": f"s3://{bucket}/{own}",
                                    "resumed_from": prefixes[0],
                                    "resumed_from_run": f"digits-mlp/{first['run_id']}"}
    assert fake.job(third["job_name"]).checkpoint_config["S3Uri"] == f"s3://{bucket}/{own}"
    assert {k.removeprefix(own + "/"): s3.get_object(Bucket=bucket, Key=k)["Body"].read()
            for k in keys(s3, bucket, own + "/")} == saved
    assert "2 checkpoint files copied" in result.stdout
    assert len(keys(s3, bucket, f"checkpoints/digits/{first['run_id']}/")) == 2  # untouched

    # Asked to resume from nothing: refused before any record, upload or job
    jobs = len(fake.created)
    result = sagebook("launch", str(path), "-o", f"job.resume_from={second['run_id']}")
    assert result.returncode == 2
    assert f"override 'job.resume_from={second['run_id']}': job.resume_from: no checkpoints " \
           f"at {prefixes[1]}" in result.stderr
    assert len(fake.created) == jobs


def test_job_names_are_valid_for_sagemaker_and_unique_per_run():
    experiment = "a" * 40  # the longest experiment name a config accepts
    names = {job_name(experiment, new_run_id()) for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert len(name) <= 63 and re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name)


def test_malformed_request_fails_on_the_laptop_before_any_upload(cloud_config, fake, bucket, s3):
    path = cloud_config(tags={"": "no key"})
    result = sagebook("launch", str(path))
    assert result.returncode == 2, result.stderr
    assert re.search(r"job.yaml:\d+: job.tags.: at least 1 character needed, got 0 "
                     r"\(CreateTrainingJob Tags.0.Key\)", result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert keys(s3, bucket) == {} and fake.created == []


def test_config_channel_must_reach_s3(cloud_config, fake, bucket, s3, tmp_path):
    local_records = str(tmp_path / "records")
    s3_data = {"train": f"s3://{bucket}/data/train/"}
    result = sagebook("launch", str(cloud_config(experiments_uri=local_records,
                                                 channels=s3_data)))
    assert result.returncode == 2
    assert "SageMaker reads its `config` channel from S3" in result.stderr
    assert "config_uri" in result.stderr and "output_uri" in result.stderr
    # local data folders are fine, as long as they can be uploaded somewhere in S3
    result = sagebook("launch", str(cloud_config(experiments_uri=local_records)))
    assert result.returncode == 2
    assert "must be uploaded to S3" in result.stderr and "uploads_uri" in result.stderr
    assert not Path(local_records).exists() and keys(s3, bucket) == {}
    assert fake.created == []


@pytest.mark.slow
def test_records_local_configs_and_uploads_in_s3(cloud_config, fake, bucket, s3, tmp_path):
    path = cloud_config(experiments_uri=str(tmp_path / "records"),
                        config_uri=f"s3://{bucket}/configs", output_uri=f"s3://{bucket}/out")
    result = sagebook("launch", str(path))
    assert result.returncode == 0, result.stderr
    [record] = (tmp_path / "records").glob("*/*/manifest.json")
    m = json.loads(record.read_text())
    config_key = f"configs/{m['experiment']}/{m['run_id']}/training_config.yaml"
    assert text(s3, bucket, config_key) == (record.parent / "config/training_config.yaml"
                                            ).read_text()
    assert any(k.startswith("configs/_uploads/data/") for k in keys(s3, bucket))


# --------------------------------------------------------------------------------------------
# Code and data channels, content-addressed


@pytest.mark.slow
def test_code_and_local_data_upload_once_content_addressed(cloud_config, fake, bucket, s3,
                                                             tmp_path):
    code = tmp_path / "code"
    (code / "__pycache__").mkdir(parents=True)
    (code / "train.py").write_text(PROBE)
    (code / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    data = tmp_path / "data"
    (data / "part").mkdir(parents=True)
    (data / "a.csv").write_text("x\n1\n")
    (data / "part" / "b.csv").write_text("x\n2\n")
    path = cloud_config(source_dir=str(code), training_schema=None, upload_code=True,
                        channels={"train": str(data)})

    first = sagebook("launch", str(path))
    assert first.returncode == 0, first.stderr
    uploaded = {k: v for k, v in keys(s3, bucket, "records/_uploads/").items()}
    [code_key] = [k for k in uploaded if k.endswith("/sourcedir.tar.gz")]
    data_keys = sorted(k for k in uploaded if k.startswith("records/_uploads/data/")
                       and not k.endswith(".json"))
    digest = data_keys[0].split("/")[3]
    assert data_keys == [f"records/_uploads/data/{digest}/a.csv",
                         f"records/_uploads/data/{digest}/part/b.csv"]
    request = json.loads(text(s3, bucket, f"{the_record(s3, bucket)}/request.json"))
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                for c in request["InputDataConfig"]}
    assert channels["code"] == f"s3://{bucket}/{code_key.removesuffix('sourcedir.tar.gz')}"
    assert channels["train"] == f"s3://{bucket}/records/_uploads/data/{digest}/"

    second = sagebook("launch", str(path))
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("(0 bytes uploaded)") == 2
    assert keys(s3, bucket, "records/_uploads/") == uploaded  # nothing written again

    (code / "train.py").write_text(PROBE + "print('changed')\n")
    third = sagebook("launch", str(path))
    assert third.returncode == 0, third.stderr
    assert "train (data): unchanged" in third.stdout and "code (code): " in third.stdout
    assert len([k for k in keys(s3, bucket, "records/_uploads/code/")
                if k.endswith(".tar.gz")]) == 2

    # The image's `train` entry runs the shipped code from the code channel.
    base = tmp_path / "opt_ml"
    channel = base / "input/data/code"
    channel.mkdir(parents=True)
    s3.download_file(bucket, code_key, str(channel / "sourcedir.tar.gz"))
    with tarfile.open(channel / "sourcedir.tar.gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["train.py"]
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
    ran = subprocess.run([str(REPO / "sagemaker_container/train")], capture_output=True,
                         text=True, env={**os.environ, "SAGEMAKER_BASE_DIR": str(base),
                                         "SAGEBOOK_PYTHON": sys.executable}, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert "the shipped code ran from" in ran.stdout
    assert "sourcedir.tar.gz (unpacked to" in ran.stderr


@pytest.mark.slow
def test_a_rerun_sends_the_parents_code_data_and_image_though_all_changed_since(
        cloud_config, fake, bucket, s3, tmp_path):
    code, data = tmp_path / "code", tmp_path / "data"
    code.mkdir()
    data.mkdir()
    (code / "train.py").write_text(PROBE)
    (data / "a.csv").write_text("x\n1\n")
    path = cloud_config(source_dir=str(code), training_schema=None, upload_code=True,
                        channels={"train": str(data)}, spot=True,
                        checkpoint_uri=f"s3://{bucket}/checkpoints")
    first = sagebook("launch", str(path), "-o", "training.epochs=3")
    assert first.returncode == 0, first.stderr
    parent = manifest_of(s3, bucket, the_record(s3, bucket))
    parent_request = json.loads(text(s3, bucket, f"{the_record(s3, bucket)}/request.json"))
    [package] = [k for k in keys(s3, bucket, "records/_uploads/code/") if k.endswith(".gz")]
    package_bytes = s3.get_object(Bucket=bucket, Key=package)["Body"].read()
    [data_done] = [k for k in keys(s3, bucket, "records/_uploads/data/") if k.endswith(".json")]
    assert {e["kind"]: e["digest"] for e in parent["uploads"]} == {
        "code": package.split("/")[3], "data": data_done.split("/")[3].removesuffix(".json")}

    # Since then: an uncommitted edit, new data, and the tag moved to other bytes
    (code / "train.py").write_text(PROBE + "print('edited since')\n")
    (data / "a.csv").write_text("x\n2\n")
    push_image(IMAGE, layer="sha256:" + "1" * 64)
    store = f"s3://{bucket}/records"
    rerun = sagebook("rerun", parent["run_id"], "--store", store, "-c", str(path))
    assert rerun.returncode == 0, rerun.stderr
    assert f"the training code in {code} differs from the code run {parent['run_id']} ran; " \
           "this rerun runs the recorded code" in rerun.stdout
    assert "code (src): unchanged" in rerun.stdout  # the very package, 0 bytes sent
    [child_prefix] = [k.removesuffix("/manifest.json") for k in keys(s3, bucket, "records/")
                      if k.endswith("/manifest.json") and parent["run_id"] not in k]
    child = manifest_of(s3, bucket, child_prefix)
    child_request = json.loads(text(s3, bucket, f"{child_prefix}/request.json"))

    def run_neutral(request: dict, run_id: str) -> dict:
        """The request with the run's id (and so its job name, record and prefixes) blanked."""
        return json.loads(json.dumps(request).replace(run_id, "RUN-ID"))

    assert run_neutral(child_request, child["run_id"]) == run_neutral(parent_request,
                                                                      parent["run_id"])
    assert child_request["TrainingJobName"] != parent_request["TrainingJobName"]
    assert [k for k in keys(s3, bucket, "records/_uploads/code/") if k.endswith(".gz")] == [
        package]
    assert s3.get_object(Bucket=bucket, Key=package)["Body"].read() == package_bytes
    assert len([k for k in keys(s3, bucket, "records/_uploads/data/")
                if not k.endswith(".json")]) == 1  # the new data was never uploaded
    assert child["parent"]["code"] == "recorded"
    assert child["git"]["commit"] == parent["git"]["commit"]
    assert child["image"]["uri"] == parent["image"]["uri"]
    assert [e.get("reused_from") for e in child["uploads"]] == [
        None, f"digits-mlp/{parent['run_id']}"]

    current = sagebook("rerun", parent["run_id"], "--store", store, "-c", str(path),
                       "--code", "current")
    assert current.returncode == 0, current.stderr
    assert "--code current: this rerun runs today's" in current.stdout
    assert len([k for k in keys(s3, bucket, "records/_uploads/code/")
                if k.endswith(".gz")]) == 2


def test_buckets_and_images_outside_the_jobs_region_are_refused_before_any_upload(
        cloud_config, fake, bucket, s3, tmp_path):
    s3.create_bucket(Bucket="sagebook-far",
                     CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    far_image = IMAGE.replace("us-east-1", "eu-west-1")
    push_image(far_image)
    path = cloud_config(upload_code=True, image_uri=far_image,
                        channels={"train": "s3://sagebook-far/train/",
                                  "validation": str(REPO / "data/digits/validation.csv")},
                        output_uri="s3://sagebook-far/outputs",
                        tensorboard_uri="s3://sagebook-far/tensorboard")
    result = sagebook("launch", str(path))
    assert result.returncode == 2, result.stderr
    lines = path.read_text().splitlines()

    def line(prefix: str) -> int:
        [number] = [n for n, text in enumerate(lines, 1) if text.startswith(prefix)]
        return number

    far = "sagebook-far is in eu-west-1, but the job runs in us-east-1"
    problems = result.stderr.splitlines()[1:]
    assert problems == [
        f"  {path}:{line('  train:')}: job.channels.train: bucket {far}: SageMaker uses S3 and "
        "ECR only in its own region; move it to us-east-1, or set region: eu-west-1",
        f"  {path}:{line('output_uri:')}: job.output_uri: bucket {far}: SageMaker uses S3 and "
        "ECR only in its own region; move it to us-east-1, or set region: eu-west-1",
        f"  {path}:{line('tensorboard_uri:')}: job.tensorboard_uri: bucket {far}: SageMaker "
        "uses S3 and ECR only in its own region; move it to us-east-1, or set region: "
        "eu-west-1",
        f"  {path}:{line('image_uri:')}: job.image_uri: image {far_image} is in eu-west-1, but "
        "the job runs in us-east-1: SageMaker uses S3 and ECR only in its own region; move it "
        "to us-east-1, or set region: eu-west-1"]
    assert keys(s3, bucket) == {} and not fake.created  # nothing uploaded, written or created

    missing = IMAGE.replace(":latest", ":never-pushed")
    result = sagebook("launch", str(path), "-o", f"job.image_uri={missing}",
                      "-o", f"job.output_uri=s3://{bucket}/outputs",
                      "-o", f"job.channels.train=s3://{bucket}/train/",
                      "-o", f"job.tensorboard_uri=s3://{bucket}/tensorboard")
    assert result.returncode == 2
    assert f"override 'job.image_uri={missing}': job.image_uri: {missing} is not in ECR " \
           "(ImageNotFoundException): push it with ./build_and_push.sh" in result.stderr
    assert keys(s3, bucket) == {} and not fake.created


def test_packed_code_has_the_same_digest_whatever_the_times_and_modes(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("print(1)\n")
    (code / "run.sh").write_text("#!/bin/sh\n")
    (code / "run.sh").chmod(0o775)
    first = uploads.pack_code(code, tmp_path / "a.tar.gz")
    os.utime(code / "train.py", (1, 1))
    (code / "run.sh").chmod(0o700)
    (code / ".ipynb_checkpoints").mkdir()
    (code / ".ipynb_checkpoints" / "x.py").write_text("junk")
    assert uploads.pack_code(code, tmp_path / "b.tar.gz") == first
    (code / "train.py").write_text("print(2)\n")
    assert uploads.pack_code(code, tmp_path / "c.tar.gz") != first
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        modes = {m.name: m.mode for m in tar.getmembers()}
    assert modes == {"run.sh": 0o755, "train.py": 0o644}


# --------------------------------------------------------------------------------------------
# Watching


TRAINING_LOGS = {
    "algo-1": [(0.1, "epoch=1 train_loss=0.9 val_loss=0.8 val_accuracy=0.70"),
               (2.0, "epoch=2 train_loss=0.5 val_loss=0.4 val_accuracy=0.85")],
    "algo-2": [(1.0, "worker algo-2 ready"), (3.0, "worker algo-2 done")],
}


@pytest.mark.slow
def test_wait_shows_phases_and_every_hosts_logs_then_completes_the_record(
        cloud_config, fake, bucket, s3):
    fake.script(
        {"secondary": "Downloading", "message": "Downloading input data", "after": 125},
        {"secondary": "Training", "message": "Training in progress", "after": 41,
         "logs": TRAINING_LOGS},
        {"secondary": "Uploading", "message": "Uploading generated training model",
         "after": 600, "logs": {"algo-1": ["final val_accuracy=0.91"]}},
        {"status": "Completed", "secondary": "Completed", "message": "Training job completed",
         "after": 5, "billable": 771, "metrics": {"val_accuracy": 0.91}},
    )
    result = sagebook("launch", str(cloud_config(instance_count=2)), "--wait")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Downloading: Downloading input data (Starting took 2m05s)" in out
    assert "Training: Training in progress (Downloading took 41s)" in out
    assert "Uploading: Uploading generated training model (Training took 10m00s)" in out
    lines = [line for line in out.splitlines() if line.startswith("[algo-")]
    assert lines == [  # interleaved by time across hosts, as they arrived
        "[algo-1] epoch=1 train_loss=0.9 val_loss=0.8 val_accuracy=0.70",
        "[algo-2] worker algo-2 ready",
        "[algo-1] epoch=2 train_loss=0.5 val_loss=0.4 val_accuracy=0.85",
        "[algo-2] worker algo-2 done",
        "[algo-1] final val_accuracy=0.91",
    ]
    assert "billable time: 12m51s" in out
    record = the_record(s3, bucket)
    m = manifest_of(s3, bucket, record)
    assert m["status"] == "Completed"
    assert [h["status"] for h in m["status_history"]] == ["Starting", "InProgress", "Completed"]
    assert m["billable_seconds"] == 771
    assert m["final_metrics"] == {"train_loss": 0.5, "val_loss": 0.4, "val_accuracy": 0.91}
    assert m["model_artifact"].endswith(f"{m['job_name']}/output/model.tar.gz")
    assert [(p["status"], p["seconds"]) for p in m["phases"]][:4] == [
        ("Starting", 125), ("Downloading", 41), ("Training", 600), ("Uploading", 5)]
    assert "worker algo-2 done" in text(s3, bucket, f"{record}/logs/algo-2.log")
    metrics = [json.loads(x) for x in text(s3, bucket, f"{record}/metrics.jsonl").splitlines()]
    accuracy = [(x["value"], x["step"], x["host"]) for x in metrics
                if x["name"] == "val_accuracy"]
    # stepped by the log's own epochs; "final val_accuracy" is the final value, not a point
    assert accuracy == [(0.70, 1, "algo-1"), (0.85, 2, "algo-1")]


@pytest.mark.slow
def test_failed_job_explains_the_exit_code_and_keeps_each_hosts_last_lines(
        cloud_config, fake, bucket, s3):
    fake.script(
        {"secondary": "Training", "message": "Training in progress",
         "logs": {"algo-1": [f"step {i}" for i in range(1, 26)]}},
        {"status": "Failed", "secondary": "Failed", "billable": 90,
         "message": "Training job failed",
         "failure_reason": "AlgorithmError: ExecuteUserScriptError:\nExitCode 137\n"
                           "ErrorMessage \"\"\nCommand \"/usr/local/bin/python3 train.py\""},
    )
    result = sagebook("launch", str(cloud_config()), "--wait")
    assert result.returncode == 1
    assert "killed (SIGKILL): usually out of memory" in result.stdout
    assert "failure: AlgorithmError: ExecuteUserScriptError:" in result.stdout
    record = the_record(s3, bucket)
    m = manifest_of(s3, bucket, record)
    assert m["status"] == "Failed" and m["exit_code"] == 137
    assert m["failure_reason"].startswith("AlgorithmError: ExecuteUserScriptError")
    assert "out of memory" in m["exit_meaning"]
    failure = text(s3, bucket, f"{record}/failure.txt")
    assert "last lines of algo-1:" in failure
    assert "  step 25" in failure and "  step 6\n" in failure and "step 5\n" not in failure


@pytest.mark.slow
def test_ctrl_c_detaches_without_stopping_and_attach_finishes_the_record(
        cloud_config, fake, bucket, s3):
    fake.script({"secondary": "Training", "message": "Training in progress",
                 "logs": {"algo-1": ["epoch=1 val_accuracy=0.5"]}})
    proc = start_launch(str(cloud_config()), "--wait", until="epoch=1")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    record = the_record(s3, bucket)
    uri = f"s3://{bucket}/{record}"
    assert "the job keeps running" in out
    assert f"sagebook attach {uri}" in out and f"sagebook stop {uri}" in out
    assert fake.stop_calls == []
    assert fake.job().training_job_status == "InProgress"
    m = manifest_of(s3, bucket, record)
    assert m["status"] == "InProgress"
    assert "epoch=1" in text(s3, bucket, f"{record}/logs/algo-1.log")

    fake.script({"logs": {"algo-1": ["epoch=2 val_accuracy=0.75"]}},
                {"status": "Completed", "secondary": "Completed", "billable": 300,
                 "message": "Training job completed"})
    attached = sagebook("attach", uri)
    assert attached.returncode == 0, attached.stderr
    assert "epoch=2 val_accuracy=0.75" in attached.stdout
    m = manifest_of(s3, bucket, record)
    assert m["status"] == "Completed" and m["billable_seconds"] == 300
    assert m["final_metrics"] == {"val_accuracy": 0.75}
    log = text(s3, bucket, f"{record}/logs/algo-1.log").splitlines()
    assert log == ["epoch=1 val_accuracy=0.5", "epoch=2 val_accuracy=0.75"]


@pytest.mark.slow
def test_stop_sends_stop_training_job_and_follows_it_to_stopped(cloud_config, fake, bucket, s3):
    path = cloud_config()
    launched = sagebook("launch", str(path))
    assert launched.returncode == 0, launched.stderr
    record = the_record(s3, bucket)
    m = manifest_of(s3, bucket, record)
    result = sagebook("stop", m["run_id"], "-c", str(path), "--wait")
    assert result.returncode == 0, result.stderr
    assert fake.stop_calls == [m["job_name"]]
    assert "SIGKILL 120 s later" in result.stdout
    m = manifest_of(s3, bucket, record)
    assert [h["status"] for h in m["status_history"]] == [
        "Starting", "InProgress", "Stopping", "Stopped"]
    again = sagebook("stop", m["run_id"], "-c", str(path))
    assert again.returncode == 0 and "already Stopped" in again.stdout
    assert fake.stop_calls == [m["job_name"]]


# --------------------------------------------------------------------------------------------
# One job per run, and throttling


@pytest.mark.slow
def test_a_create_retried_after_a_lost_answer_attaches_instead_of_a_second_job(
        cloud_config, fake, proxy, bucket, s3):
    proxy.lose_answer("SageMaker.CreateTrainingJob")
    result = sagebook("launch", str(cloud_config()))
    assert result.returncode == 0, result.stderr
    assert [s.status for s in proxy.seen("CreateTrainingJob")] == [500, 400]
    m = manifest_of(s3, bucket, the_record(s3, bucket))
    assert fake.created == [m["job_name"]]
    assert "already exists (an earlier attempt of this launch created it)" in result.stdout
    assert m["status"] == "InProgress" and m["job_arn"] == fake.job().arn


@pytest.mark.slow
def test_attach_creates_the_job_of_a_launch_that_died_before_creating_it(
        cloud_config, fake, proxy, bucket, s3):
    s3.put_object(Bucket=bucket, Key="warm/checkpoint.joblib", Body=b"epoch 5")
    gate = proxy.hold("SageMaker.CreateTrainingJob")
    launch = start_launch(str(cloud_config(checkpoint_uri=f"s3://{bucket}/ckpt",
                                           resume_from=f"s3://{bucket}/warm/")))
    wait_for(lambda: proxy.seen("CreateTrainingJob"), what="the launch to call SageMaker")
    launch.kill()  # the laptop dies mid-call
    launch.communicate(timeout=30)
    gate.set()
    record = the_record(s3, bucket)
    assert manifest_of(s3, bucket, record)["status"] == "Starting"
    assert fake.created == []
    own = manifest_of(s3, bucket, record)["checkpoints"]["uri"].removeprefix(f"s3://{bucket}/")
    s3.delete_object(Bucket=bucket, Key=f"{own}/checkpoint.joblib")  # as if it died before

    result = sagebook("attach", f"s3://{bucket}/{record}", "--no-wait")
    assert result.returncode == 0, result.stderr
    assert "creating it from the record's request" in result.stdout
    assert result.stdout.count("(0 bytes uploaded)") == 2  # the dead launch had uploaded them
    assert s3.get_object(Bucket=bucket, Key=f"{own}/checkpoint.joblib")["Body"].read() == \
        b"epoch 5"  # the checkpoints it resumes from are in its own prefix before the job
    m = manifest_of(s3, bucket, record)
    assert fake.created == [m["job_name"]]
    assert m["status"] == "InProgress" and m["job_arn"] == fake.job().arn
    again = sagebook("attach", f"s3://{bucket}/{record}", "--no-wait")
    assert again.returncode == 0 and fake.created == [m["job_name"]]


@pytest.mark.slow
def test_attach_leaves_a_teammates_dead_launch_to_them(cloud_config, fake, proxy, bucket, s3):
    gate = proxy.hold("SageMaker.CreateTrainingJob")
    launch = start_launch(str(cloud_config()))
    wait_for(lambda: proxy.seen("CreateTrainingJob"), what="the launch to call SageMaker")
    launch.kill()
    launch.communicate(timeout=30)
    gate.set()
    record = the_record(s3, bucket)
    m = manifest_of(s3, bucket, record)
    # a record in the shared store that names a teammate, and a source folder of this machine
    m["user"] = "teammate"
    for upload in m["uploads"]:
        upload["source"] = "/"
    s3.put_object(Bucket=bucket, Key=f"{record}/manifest.json", Body=json.dumps(m).encode())
    puts_before = len(proxy.seen("^PUT "))

    result = sagebook("attach", f"s3://{bucket}/{record}", "--no-wait")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "was launched by teammate on" in result.stderr
    assert f"sagebook rerun {m['experiment']}/{m['run_id']}" in result.stderr
    assert fake.created == []
    assert len(proxy.seen("^PUT ")) == puts_before  # nothing uploaded from "/"


@pytest.mark.slow
def test_throttling_and_slow_downs_are_retried(cloud_config, fake, proxy, bucket, s3):
    proxy.fail("SageMaker.CreateTrainingJob", times=2, answer=THROTTLING)
    proxy.fail("SageMaker.DescribeTrainingJob", times=1, answer=THROTTLING)
    proxy.fail("Logs.*GetLogEvents", times=1, answer=THROTTLING)
    proxy.fail(r"^PUT /sagebook-test/records/_uploads/data/", times=1, answer=SLOW_DOWN)
    fake.script({"secondary": "Training", "logs": {"algo-1": ["epoch=1 val_accuracy=0.5"]}},
                {"status": "Completed", "secondary": "Completed", "billable": 60})
    result = sagebook("launch", str(cloud_config()), "--wait")
    assert result.returncode == 0, result.stderr
    creates = [s.status for s in proxy.seen("CreateTrainingJob")]
    assert creates == [400, 400, 200]
    assert [s.status for s in proxy.seen("^PUT /sagebook-test/records/_uploads/data/")][:2] \
        == [503, 200]
    m = manifest_of(s3, bucket, the_record(s3, bucket))
    assert m["status"] == "Completed" and fake.created == [m["job_name"]]
    assert m["final_metrics"] == {"val_accuracy": 0.5}


# --------------------------------------------------------------------------------------------
# Notebook and profile


@pytest.mark.slow
def test_launch_notebook_with_an_ml_config_leaves_its_record_in_s3(cloud_config, fake, bucket,
                                                                    s3, tmp_path):
    out = tmp_path / "launched.ipynb"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "papermill"), str(REPO / "notebooks/launch.ipynb"),
         str(out), "-p", "config", str(cloud_config())],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    record = the_record(s3, bucket)

    def captured():
        m = manifest_of(s3, bucket, record)
        return m if m.get("notebook", {}).get("status") not in (None, "pending") else None

    m = wait_for(captured, timeout=60, what="the executed notebook in the record")
    assert m["status"] == "InProgress" and m["launched_via"] == "notebook"
    assert m["notebook"]["status"] == "completed"
    stored = json.loads(text(s3, bucket, f"{record}/notebook.ipynb"))
    assert any("SageMaker job" in "".join(o.get("text", "")) for c in stored["cells"]
               for o in c.get("outputs", []))
    assert fake.job().arn == m["job_arn"]


@pytest.mark.slow
def test_profile_and_region_named_in_the_config_are_used(cloud_config, fake, bucket, s3,
                                                          tmp_path, monkeypatch):
    aws_config = tmp_path / "aws_config"
    aws_config.write_text("[profile team]\nregion = eu-west-1\naws_access_key_id = team\n"
                          "aws_secret_access_key = team\n")
    image = IMAGE.replace("us-east-1", "eu-west-1")  # SageMaker uses ECR and S3 in its region
    push_image(image)
    s3.create_bucket(Bucket="sagebook-eu",
                     CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_config))
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # the environment would win over the profile
    result = sagebook("launch", str(cloud_config(profile="team", image_uri=image,
                                                 experiments_uri="s3://sagebook-eu/records")))
    assert result.returncode == 0, result.stderr
    m = manifest_of(s3, "sagebook-eu", the_record(s3, "sagebook-eu"))
    assert m["aws"] == {"region": "eu-west-1", "profile": "team"}
    assert m["job_arn"].startswith("arn:aws:sagemaker:eu-west-1:")


def test_dry_run_of_an_ml_config_stages_and_validates_without_writing(cloud_config, fake, bucket,
                                                                       s3):
    result = sagebook("launch", str(cloud_config(upload_code=True)), "--dry-run")
    assert result.returncode == 0, result.stderr
    request = json.loads(result.stdout)
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                for c in request["InputDataConfig"]}
    assert channels["code"].startswith(f"s3://{bucket}/records/_uploads/code/")
    assert channels["train"].startswith(f"s3://{bucket}/records/_uploads/data/")
    assert keys(s3, bucket) == {} and fake.created == []

