"""Capacity before and after CreateTrainingJob: quotas checked before any upload, fallback
instance types after ResourceLimitExceeded or a CapacityError failure, waiting for capacity.

moto answers no Service Quotas for SageMaker and always has capacity: `FakeCapacity`
(fake_capacity.py) makes it answer quotas and refuse or fail jobs per instance type.
"""

from __future__ import annotations

import json
import signal

import boto3
import pytest

from conftest import IMAGE, ROLE, sagebook, start_launch
from fake_capacity import CAPACITY_REASON, FakeCapacity


@pytest.fixture
def capacity(fake, monkeypatch) -> FakeCapacity:
    return FakeCapacity(monkeypatch, fake)


def keys(s3, bucket: str) -> list[str]:
    return [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]


def the_manifest(s3, bucket: str) -> dict:
    [key] = [k for k in keys(s3, bucket) if k.startswith("records/")
             and k.endswith("/manifest.json")]
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def busy(instance_type: str, count: int = 1) -> None:
    """Another training job of the account, in progress on `count` instances of the type."""
    boto3.client("sagemaker").create_training_job(
        TrainingJobName=f"someone-else-{instance_type.replace('.', '-')}",
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        RoleArn=ROLE, OutputDataConfig={"S3OutputPath": "s3://elsewhere/out"},
        ResourceConfig={"InstanceType": instance_type, "InstanceCount": count,
                        "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 3600})


COMPLETES = [{"secondary": "Training", "message": "Training in progress",
              "logs": {"algo-1": ["epoch=1 val_accuracy=0.8"]}},
             {"status": "Completed", "secondary": "Completed", "billable": 120,
              "message": "Training job completed"}]


def test_a_type_over_its_quota_is_refused_with_the_numbers_before_anything_is_uploaded(
        cloud_config, capacity, fake, bucket, s3):
    capacity.quotas.values = {"ml.m5.large": 2}
    busy("ml.m5.large", 2)
    result = sagebook("launch", str(cloud_config(upload_code=True)))
    assert result.returncode == 1, result.stdout
    assert "would exceed the account's SageMaker quota" in result.stderr
    assert ('ml.m5.large: 2 in use by training jobs + 1 for this run > 2, the quota '
            '"ml.m5.large for training job usage"') in result.stderr
    assert keys(s3, bucket) == []  # no record, no code package
    assert fake.created == ["someone-else-ml-m5-large"]


def test_a_type_over_its_quota_is_skipped_for_the_next_that_fits(
        cloud_config, capacity, fake, bucket, s3):
    capacity.quotas.values = {"ml.m5.large": 1, "ml.m5.xlarge": 4}
    busy("ml.m5.large")
    result = sagebook("launch", str(cloud_config(fallback_instance_types=["ml.m5.xlarge"])))
    assert result.returncode == 0, result.stderr
    assert "over quota, skipped: ml.m5.large: 1 in use" in result.stdout
    m = the_manifest(s3, bucket)
    assert m["instance_type"] == "ml.m5.xlarge"
    assert m["capacity"]["quotas"] == {"ml.m5.large": {"quota": 1, "in_use": 1},
                                       "ml.m5.xlarge": {"quota": 4, "in_use": 0}}
    assert fake.job(m["job_name"]).resource_config["InstanceType"] == "ml.m5.xlarge"


def test_quotas_that_cannot_be_read_are_a_warning_not_a_failure(
        cloud_config, capacity, fake, bucket, s3):
    capacity.quotas.deny = True
    result = sagebook("launch", str(cloud_config()))
    assert result.returncode == 0, result.stderr
    assert ("warning: the instance quotas were not checked (this identity lacks "
            "servicequotas:ListServiceQuotas)") in result.stdout
    m = the_manifest(s3, bucket)
    assert m["status"] == "InProgress" and capacity.quotas.calls == 1
    assert m["capacity"]["quota_check"].startswith("not checked")


def test_resource_limit_exceeded_at_create_falls_back_to_the_next_type(
        cloud_config, capacity, fake, bucket, s3):
    capacity.over_limit = {"ml.m5.large"}
    path = cloud_config(fallback_instance_types=["ml.m5.xlarge"])
    result = sagebook("launch", str(path))
    assert result.returncode == 0, result.stderr
    assert "no capacity for ml.m5.large (attempt 1): CreateTrainingJob" in result.stdout
    assert capacity.refused == ["ml.m5.large"]
    m = the_manifest(s3, bucket)
    [created] = fake.created
    assert m["job_name"] == created and created.endswith("-2")
    assert m["instance_type"] == "ml.m5.xlarge"
    assert [(a["instance_type"], a["outcome"]) for a in m["capacity"]["attempts"]] == [
        ("ml.m5.large", "NoCapacity"), ("ml.m5.xlarge", "InProgress")]
    assert "ResourceLimitExceeded" in m["capacity"]["attempts"][0]["reason"]
    assert {"status": "Starting", "secondary_status": "NoCapacity: ml.m5.large"}.items() <= \
        m["status_history"][1].items()
    shown = sagebook("show", m["run_id"], "-c", str(path))
    assert shown.returncode == 0, shown.stderr
    assert "capacity:    attempt 1 ml.m5.large" in shown.stdout
    assert f"capacity:    attempt 2 ml.m5.xlarge ({created}): InProgress" in shown.stdout
    assert "Starting (NoCapacity: ml.m5.large)" in shown.stdout


@pytest.mark.slow
def test_a_capacity_error_failure_relaunches_on_the_next_type_in_the_same_record(
        cloud_config, capacity, fake, bucket, s3):
    capacity.no_capacity = {"ml.m5.large"}
    fake.script(*COMPLETES)
    result = sagebook("launch", str(cloud_config(fallback_instance_types=["ml.m5.xlarge"])),
                      "--wait")
    assert result.returncode == 0, result.stderr
    assert "no capacity for ml.m5.large (attempt 1): CapacityError" in result.stdout
    first, second = fake.created
    assert fake.job(first).failure_reason == CAPACITY_REASON
    assert fake.job(second).resource_config["InstanceType"] == "ml.m5.xlarge"
    m = the_manifest(s3, bucket)
    assert m["status"] == "Completed" and m["job_name"] == second
    assert [(a["job_name"], a["outcome"]) for a in m["capacity"]["attempts"]] == [
        (first, "NoCapacity"), (second, "Completed")]
    request = json.loads(s3.get_object(
        Bucket=bucket, Key=f"records/{m['experiment']}/{m['run_id']}/request.json")["Body"].read())
    assert request["TrainingJobName"] == second
    assert request["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"


def test_waiting_for_capacity_retries_with_backoff_then_succeeds(
        cloud_config, capacity, fake, bucket, s3):
    capacity.over_limit, capacity.over_limit_creates = {"ml.m5.large"}, 2
    result = sagebook("launch", str(cloud_config(wait_for_capacity="10m", capacity_backoff=1)))
    assert result.returncode == 0, result.stderr
    waits = [line for line in result.stdout.splitlines() if "waiting for capacity" in line]
    assert len(waits) == 2
    assert "next try at" in waits[0] and "(in 1 s)" in waits[0] and "(in 2 s)" in waits[1]
    assert capacity.refused == ["ml.m5.large", "ml.m5.large"] and len(fake.created) == 1
    m = the_manifest(s3, bucket)
    assert m["status"] == "InProgress" and m["capacity"]["waiting"] is None
    assert [a["outcome"] for a in m["capacity"]["attempts"]] == [
        "NoCapacity", "NoCapacity", "InProgress"]
    assert [h.get("secondary_status") for h in m["status_history"]].count(
        "WaitingForCapacity") == 2


def test_ctrl_c_while_waiting_leaves_the_record_saying_it_was_waiting(
        cloud_config, capacity, fake, bucket, s3):
    capacity.over_limit = {"ml.m5.large"}
    proc = start_launch(str(cloud_config(wait_for_capacity="2h", capacity_backoff="5m")),
                        until="[sagebook] waiting for capacity")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    m = the_manifest(s3, bucket)
    assert m["status"] == "Stopped"
    assert "while waiting for capacity for ml.m5.large (next try was at" in m["failure_reason"]
    assert m["capacity"]["waiting"]["next_try"] > m["capacity"]["waiting"]["since"]
    assert fake.created == []


def test_without_waiting_no_capacity_anywhere_fails_naming_every_type(
        cloud_config, capacity, fake, bucket, s3):
    capacity.over_limit = {"ml.m5.large", "ml.m5.xlarge"}
    result = sagebook("launch", str(cloud_config(fallback_instance_types=["ml.m5.xlarge"])))
    assert result.returncode == 1
    assert "no capacity for ml.m5.large, ml.m5.xlarge after 2 attempts" in result.stderr
    assert the_manifest(s3, bucket)["status"] == "Failed"


def test_every_fallback_type_is_request_checked_and_priced_before_launch(cloud_config, fake):
    path = cloud_config(fallback_instance_types=["ml.m5.xlarge", "ml.nonesuch", "ml.g5.2xlarge"],
                        max_cost=1, max_runtime="1h")
    result = sagebook("launch", str(path), "--dry-run")
    assert result.returncode == 2
    assert "job.fallback_instance_types.1: ml.nonesuch:" in result.stderr
    assert "job.fallback_instance_types.2: ml.g5.2xlarge:" in result.stderr
    assert "above max_cost $1.00" in result.stderr
    assert "fallback_instance_types.0" not in result.stderr
    local = sagebook("launch", str(cloud_config("local.yaml", instance_type="local",
                                                fallback_instance_types=["ml.m5.large"])),
                     "--dry-run")
    assert local.returncode == 2
    assert "fallback types are SageMaker types (ml.*), for an ml.* instance_type" in local.stderr


def test_dry_run_and_doctor_say_what_a_launch_does_about_capacity(
        cloud_config, capacity, fake, bucket):
    capacity.quotas.values = {"ml.m5.large": 3}
    path = cloud_config(fallback_instance_types=["ml.m5.xlarge"], wait_for_capacity="2h")
    dry = sagebook("launch", str(path), "--dry-run", "-o", "job.capacity_backoff=30")
    assert dry.returncode == 0, dry.stderr
    assert ("capacity: tries ml.m5.large, then ml.m5.xlarge; waits up to 2h for capacity, "
            "trying again after 30s, doubling up to 15m") in dry.stderr
    doctor = sagebook("doctor", str(path))
    assert "ml.m5.large: 0 in use of 3, ml.m5.xlarge: no quota found" in doctor.stdout
