"""Parity with AWS's own library: for the same settings, sagebook's CreateTrainingJob equals,
field by field, what the SageMaker SDK v3 `ModelTrainer` sends, both captured from botocore's
before-call event; the differences that are deliberate are listed (and checked) here.

The SDK lives in its own venv (`make sdk-venv`, which `make test` runs): it runs there as a
subprocess, against the same local endpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, push_image

SDK_PYTHON = REPO / ".venv-sdk" / "bin" / "python"
BUCKET = "sagebook-test"

# Why sagebook's request differs from the SDK's, field by field; every other field is equal.
DELIBERATE = {
    "TrainingJobName": "sagebook names the job <experiment>-<run id>: unique per run, and the "
                       "run finds its job again after a crash; the SDK appends a timestamp, "
                       "unique only to the second",
    "HyperParameters": "sagebook flattens sections to dotted keys (data.train_file), each "
                       "visible and searchable in the console; the SDK JSON-encodes a section "
                       "into one value. Top-level values are the same strings",
    "Environment": "sagebook adds SAGEBOOK_RUN_ID, SAGEBOOK_EXPERIMENT and "
                   "SAGEBOOK_RECORD_URI, so the training code can find its record",
    "Tags": "sagebook adds sagebook:run-id, :experiment, :user, :git-commit and :record, so the "
            "job points to its record",
    "OutputDataConfig": "the SDK also sends CompressionType GZIP, the API's default",
    "AlgorithmSpecification": "sagebook runs the image by the digest its tag had at launch "
                              "(ECR DescribeImages), so the record says which bytes ran; the "
                              "SDK sends the tag",
    "CheckpointConfig": "sagebook gives each run a prefix of its own below checkpoint_uri, so "
                        "runs never restore each other's checkpoints; the SDK syncs the "
                        "location as given",
}
RUN_VARIABLES = {"SAGEBOOK_RUN_ID", "SAGEBOOK_EXPERIMENT", "SAGEBOOK_RECORD_URI"}

pytestmark = pytest.mark.skipif(not SDK_PYTHON.exists(),
                                reason="the SDK venv is missing: `make sdk-venv` creates it")


@pytest.fixture
def role_checks_allowed(monkeypatch):
    """Answer iam:SimulatePrincipalPolicy, which moto lacks, as AWS does for a role that may
    write to S3: the SDK asks before uploading a local input, and would otherwise wait through
    botocore's retries of moto's 500s."""
    from moto.core.responses import ActionResult
    from moto.iam.responses import IamResponse

    def simulate_principal_policy(response):
        actions = response._get_param("ActionNames") or []
        resources = response._get_param("ResourceArns") or ["*"]
        return ActionResult({"EvaluationResults": [
            {"EvalActionName": a, "EvalResourceName": r, "EvalDecision": "allowed"}
            for a in actions for r in resources]})

    monkeypatch.setattr(IamResponse, "simulate_principal_policy", simulate_principal_policy,
                        raising=False)


@pytest.fixture
def parity_config(make_config, bucket):
    """The settings of tests/sdk_parity.py's hand-written ModelTrainer, as a job config."""
    push_image()
    return make_config(
        experiment="parity", instance_type="ml.m5.xlarge", image_uri=(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagebook-training:latest"),
        role_arn="arn:aws:iam::123456789012:role/SageMakerExecutionRole",
        instance_count=2, volume_size_gb=50, volume_kms_key="alias/volumes", max_runtime="2h",
        spot=True, max_wait="3h", checkpoint_uri=f"s3://{bucket}/checkpoints/parity",
        keep_alive="10m", subnets=["subnet-0abc"], security_group_ids=["sg-0abc"],
        network_isolation=True, inter_container_encryption=True,
        environment={"LOG_LEVEL": "DEBUG"}, tags={"team": "ml"},
        channels={"train": {"uri": f"s3://{bucket}/data/train/", "input_mode": "FastFile",
                            "distribution": "ShardedByS3Key", "content_type": "text/csv"},
                  "validation": f"s3://{bucket}/data/validation.csv"},
        output_uri=f"s3://{bucket}/outputs", output_kms_key="alias/outputs",
        experiments_uri=f"s3://{bucket}/records", retries=3, max_pending_time="2h",
        tensorboard_uri=f"s3://{bucket}/tensorboard", tensorboard_local_path="/opt/ml/tb",
    )


def sagebook_sends(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Launch in this process and capture the CreateTrainingJob payload as botocore sends it."""
    import sagebook.aws as aws
    from sagebook.launch import launch

    sent: list[dict] = []
    original = aws.session

    def session(profile=None):
        boto_session = original(profile)
        boto_session.register(
            "before-call.sagemaker.CreateTrainingJob",
            lambda params, **_: sent.append(json.loads(params["body"])),
            unique_id="sagebook-parity")
        return boto_session

    monkeypatch.setattr(aws, "session", session)
    launch(path, wait=False, echo=lambda line: None)
    [request] = sent
    return request


def sdk_sends(path: Path, config_channel: str, training: dict, tmp_path: Path) -> dict:
    opt_out = tmp_path / "sagemaker-config.yaml"  # no telemetry calls to AWS from tests
    opt_out.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n"
                       "      TelemetryOptOut: true\n")
    env = {**os.environ, "SAGEMAKER_USER_CONFIG_OVERRIDE": str(opt_out),
           "SAGEMAKER_VALIDATE_ROLE": "false"}
    result = subprocess.run(
        [str(SDK_PYTHON), str(REPO / "tests/sdk_parity.py"), str(path), config_channel,
         json.dumps(training)], capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_sagebook_sends_what_the_sdk_sends_but_for_the_listed_differences(
        parity_config, role_checks_allowed, monkeypatch, tmp_path):
    ours = sagebook_sends(parity_config, monkeypatch)
    config_channel = ours["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    training = yaml.safe_load(Path(yaml.safe_load(parity_config.read_text())[
        "training_config"]).read_text())
    sdk = sdk_sends(parity_config, config_channel, training, tmp_path)
    theirs, converted = sdk["by_hand"], sdk["converted"]

    for field in sorted(set(ours) | set(theirs)):
        if field not in DELIBERATE:
            assert ours.get(field) == theirs.get(field), field
    # ...and the deliberate differences are exactly these:
    assert ours["TrainingJobName"].startswith("parity-2")
    assert len(ours["TrainingJobName"]) == len("parity-") + len("20261126-031502-a3f9c1")
    assert theirs["TrainingJobName"].startswith("parity-")
    assert {k: v for k, v in ours["Environment"].items() if k not in RUN_VARIABLES} \
        == theirs["Environment"]
    assert set(ours["Environment"]) - set(theirs["Environment"]) == RUN_VARIABLES
    assert [t for t in ours["Tags"] if not t["Key"].startswith("sagebook:")] == theirs["Tags"]
    assert {t["Key"] for t in ours["Tags"]} - {t["Key"] for t in theirs["Tags"]} == {
        "sagebook:run-id", "sagebook:experiment", "sagebook:user", "sagebook:git-commit",
        "sagebook:record"}
    assert theirs["OutputDataConfig"] == {**ours["OutputDataConfig"], "CompressionType": "GZIP"}
    image = theirs["AlgorithmSpecification"]["TrainingImage"]
    assert ours["AlgorithmSpecification"] == {
        **theirs["AlgorithmSpecification"],
        "TrainingImage": image.rsplit(":", 1)[0] + "@" + push_image()}
    run_id = ours["Environment"]["SAGEBOOK_RUN_ID"]
    assert ours["CheckpointConfig"] == {
        **theirs["CheckpointConfig"], "S3Uri": f"{theirs['CheckpointConfig']['S3Uri']}/{run_id}"}
    flattened = {k: v for k, v in ours["HyperParameters"].items() if "." not in k}
    assert {k: v for k, v in theirs["HyperParameters"].items() if k != "data"} == flattened
    assert {f"data.{k}": json.dumps(v) if not isinstance(v, str) else v
            for k, v in json.loads(theirs["HyperParameters"]["data"]).items()} == {
        k: v for k, v in ours["HyperParameters"].items() if k.startswith("data.")}

    # sagebook.sdk.model_trainer() hands the same job to SDK users: the same request, without
    # what belongs to a sagebook run, and with the training config uploaded by the SDK.
    assert converted["Environment"] == theirs["Environment"]
    assert converted["Tags"] == theirs["Tags"]
    assert converted["HyperParameters"] == ours["HyperParameters"]
    assert converted["CheckpointConfig"]["S3Uri"].startswith(
        theirs["CheckpointConfig"]["S3Uri"] + "/2")  # a prefix of its own, as a run's
    for field in ("AlgorithmSpecification", "ResourceConfig", "StoppingCondition", "VpcConfig",
                  "RoleArn", "EnableNetworkIsolation",
                  "EnableInterContainerTrafficEncryption", "EnableManagedSpotTraining",
                  "OutputDataConfig"):
        assert converted[field] == theirs[field], field
    [config, *data] = converted["InputDataConfig"]
    assert data == ours["InputDataConfig"][1:]
    assert config["ChannelName"] == "config" and config["ContentType"] == "application/x-yaml"
    assert config["DataSource"]["S3DataSource"]["S3Uri"].startswith(
        "s3://sagemaker-parity/parity/")


@pytest.mark.parametrize("changes, named", [
    ({"profiler": False}, "job.profiler"),
    ({"request": {"InfraCheckConfig": {"EnableInfraCheck": True}}}, "job.request.InfraCheckConfig"),
])
def test_settings_the_sdk_cannot_take_are_refused_not_dropped(make_config, changes, named):
    from sagebook.errors import ConfigError
    from sagebook.sdk import model_trainer

    path = make_config(instance_type="ml.m5.xlarge", image_uri="img:1",
                       role_arn="arn:aws:iam::123456789012:role/R", **changes)
    with pytest.raises(ConfigError) as info:
        model_trainer(path)
    assert named in str(info.value) and "ModelTrainer has no setting" in str(info.value)
