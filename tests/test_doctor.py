"""`sagebook doctor` runs the checks a config needs: for a local run the code, data and /opt/ml
and no AWS at all; for SageMaker, against the local endpoint, each check passes when AWS grants
what a launch needs, and fails with what to do when it does not."""

from __future__ import annotations

import json

import boto3

from conftest import IMAGE, sagebook
from faults import xml_error

TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"},
    "Action": "sts:AssumeRole"}]}


def setup_account(trust=TRUST, push_image=True):
    boto3.client("iam").create_role(RoleName="SageMakerExecutionRole",
                                    AssumeRolePolicyDocument=json.dumps(trust))
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="sagebook-training")
    if push_image:
        manifest = json.dumps({"schemaVersion": 2, "mediaType":
                               "application/vnd.docker.distribution.manifest.v2+json",
                               "config": {}, "layers": []})
        ecr.put_image(repositoryName="sagebook-training", imageManifest=manifest,
                      imageTag="latest")


def test_doctor_passes_when_everything_is_in_place(cloud_config):
    setup_account()
    result = sagebook("doctor", str(cloud_config()))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line[5:].split("  ")[0] for line in lines] == [
        "training code", "environment", "channel train", "channel validation", "credentials",
        "region",
        "execution role", "record store", "training image", "capacity"]
    assert all(line.startswith("ok ") for line in lines)
    assert "uploaded, content-addressed, at launch" in result.stdout  # local channels
    assert "readable and writable" in result.stdout
    bucket_keys = boto3.client("s3").list_objects_v2(Bucket="sagebook-test").get("KeyCount")
    assert bucket_keys == 0  # the write check cleaned up after itself


def test_doctor_explains_each_failure(cloud_config):
    setup_account(trust={"Version": "2012-10-17", "Statement": []}, push_image=False)
    result = sagebook("doctor", str(cloud_config(experiments_uri="s3://no-such-bucket/x")))
    assert result.returncode == 1
    out = result.stdout
    assert "does not trust sagemaker.amazonaws.com" in out
    assert "bucket no-such-bucket does not exist" in out
    assert "is not in ECR" in out and "build_and_push.sh" in out


def test_doctor_without_credentials_says_how_to_get_them(cloud_config, monkeypatch):
    config = cloud_config()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    result = sagebook("doctor", str(config))
    assert result.returncode == 1
    assert "no AWS credentials found" in result.stdout and "aws sso login" in result.stdout


def test_doctor_reports_a_missing_role(cloud_config):
    result = sagebook("doctor", str(cloud_config()))
    assert "role SageMakerExecutionRole does not exist" in result.stdout


def test_doctor_of_a_local_run_of_local_data_asks_nothing_of_aws(make_config, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    result = sagebook("doctor", str(make_config()))
    assert result.returncode == 0, result.stdout + result.stderr
    names = [line[5:].split("  ")[0] for line in result.stdout.splitlines()]
    assert names == ["training code", "environment", "local /opt/ml", "channel train",
                     "channel validation"]
    assert "fits schema.py:TrainingConfig" in result.stdout


def test_doctor_takes_overrides_and_then_checks_what_they_name(make_config, bucket):
    config = str(make_config())
    result = sagebook("doctor", config, "-o", "job.experiments_uri=s3://no-such-bucket/x")
    assert result.returncode == 1
    assert "credentials" in result.stdout
    assert "bucket no-such-bucket does not exist" in result.stdout
    result = sagebook("doctor", config, "-o", f"job.checkpoint_uri=s3://{bucket}/checkpoints")
    assert result.returncode == 0, result.stdout
    # a local run writes its checkpoints itself: checked for writing
    assert f"s3://{bucket}/checkpoints readable and writable" in result.stdout
    result = sagebook("doctor", config, "-o", "job.no_such_key=1")
    assert result.returncode == 2 and "no_such_key" in result.stderr


def test_doctor_warns_of_an_empty_channel_and_fails_other_regions(cloud_config, bucket):
    setup_account()
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="far-away", CreateBucketConfiguration={
        "LocationConstraint": "eu-west-1"})
    boto3.client("s3").put_object(Bucket=bucket, Key="data/train/a.csv", Body=b"1,2\n")
    config = cloud_config(channels={"train": f"s3://{bucket}/data/train/",
                                    "validation": f"s3://{bucket}/data/nothing-here/"},
                          output_uri="s3://far-away/outputs",
                          tensorboard_uri="s3://far-away/tensorboard")
    result = sagebook("doctor", str(config))
    assert result.returncode == 1
    lines = {line[5:].split("  ")[0]: line for line in result.stdout.splitlines()}
    assert lines["channel train"].startswith("ok ")
    assert lines["channel validation"].startswith("warn")
    assert "holds no objects" in lines["channel validation"]
    assert "sagebook upload" in lines["channel validation"]
    assert lines["outputs"].startswith("FAIL")
    assert "far-away is in eu-west-1, but the job runs in us-east-1" in lines["outputs"]
    assert lines["tensorboard"].startswith("FAIL") and "far-away is in eu-west-1" in lines[
        "tensorboard"]

    far_image = IMAGE.replace("us-east-1", "eu-west-1")
    result = sagebook("doctor", str(config), "-o", "job.output_uri=null",
                      "-o", f"job.image_uri={far_image}")
    lines = {line[5:].split("  ")[0]: line for line in result.stdout.splitlines()}
    assert lines["training image"].startswith("FAIL") and "is in eu-west-1" in lines[
        "training image"]
    assert "outputs" not in lines


def test_doctor_checks_write_access_where_the_launch_writes(cloud_config, bucket, proxy):
    setup_account()
    proxy.fail(f"PUT /{bucket}/configs/", times=50,
               answer=xml_error(403, "AccessDenied", "Access Denied"))
    result = sagebook("doctor", str(cloud_config(config_uri=f"s3://{bucket}/configs")))
    assert result.returncode == 1
    lines = {line[5:].split("  ")[0]: line for line in result.stdout.splitlines()}
    assert lines["record store"].startswith("ok ") and "writable" in lines["record store"]
    assert lines["config upload"].startswith("FAIL")
    assert f"cannot write to s3://{bucket}/configs" in lines["config upload"]
    assert "s3:PutObject" in lines["config upload"]
