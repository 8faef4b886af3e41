"""`sagebook doctor` against the local endpoint: each check passes when AWS grants what a launch
needs, and fails with what to do when it does not."""

from __future__ import annotations

import json

import boto3

from conftest import sagebook

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
    assert [line.split()[1] for line in lines] == [
        "credentials", "region", "execution", "record", "training"]
    assert all(line.startswith("ok ") for line in lines)
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
