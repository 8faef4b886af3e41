"""`sagebook iam-policy`: README's policies with a job config's bucket, account and region."""

from __future__ import annotations

import json

from conftest import REPO, sagebook

CLOUD = REPO / "configs" / "sagemaker_config.yaml"


def test_execution_policy_names_the_configs_bucket_account_and_region(tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text(CLOUD.read_text().replace("my-ml-bucket", "team-bucket")
                      .replace("123456789012", "210987654321").replace("eu-west-1", "ap-south-1")
                      .replace("training_config: training_config.yaml",
                               f"training_config: {REPO / 'configs' / 'training_config.yaml'}")
                      .replace("source_dir: ../sagemaker_container",
                               f"source_dir: {REPO / 'sagemaker_container'}"))
    result = sagebook("iam-policy", "-c", str(config))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    text = json.dumps(json.loads(result.stdout))
    assert "arn:aws:s3:::team-bucket/datasets/*" in text
    assert "arn:aws:logs:ap-south-1:210987654321:log-group:" in text
    assert "BUCKET" not in text and "ACCOUNT" not in text and "REGION" not in text


def test_a_location_outside_the_policy_is_noted_with_its_line(tmp_path):
    config = tmp_path / "job.yaml"
    text = CLOUD.read_text().replace("train: s3://my-ml-bucket/datasets/digits/train.csv",
                                     "train: s3://elsewhere/digits/train.csv")
    config.write_text(text.replace("training_config: training_config.yaml",
                                   f"training_config: {REPO / 'configs' / 'training_config.yaml'}")
                      .replace("source_dir: ../sagemaker_container",
                               f"source_dir: {REPO / 'sagemaker_container'}"))
    line = text.splitlines().index("  train: s3://elsewhere/digits/train.csv") + 1
    result = sagebook("iam-policy", "-c", str(config))
    assert result.returncode == 0
    assert result.stderr.startswith(f"sagebook: note: {config}:{line}: channels.train.uri: "
                                    "s3://elsewhere/digits/train.csv is outside what the "
                                    "execution role may read"), result.stderr


def test_trust_policy_needs_no_config():
    result = sagebook("iam-policy", "--trust")
    assert result.returncode == 0
    [statement] = json.loads(result.stdout)["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}


def test_a_policy_with_placeholders_without_a_config_is_an_argument_error():
    result = sagebook("iam-policy", "--launcher")
    assert result.returncode == 2
    assert result.stderr.startswith("sagebook: invalid argument:\n  iam-policy: the launcher "
                                    "policy names your bucket, account and region: give the "
                                    "job config with -c CONFIG")


def test_a_local_config_is_refused_naming_each_key_to_set():
    config = REPO / "configs" / "sagemaker_config.local.yaml"
    result = sagebook("iam-policy", "-c", str(config))
    assert result.returncode == 2 and result.stdout == ""
    for key in ("experiments_uri", "role_arn", "region"):
        assert f"{config}: {key}: " in result.stderr, result.stderr


def test_a_region_that_is_no_region_name_is_refused_before_it_enters_an_arn(tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text(CLOUD.read_text().replace("region: eu-west-1", 'region: "eu-west-1\\""')
                      .replace("training_config: training_config.yaml",
                               f"training_config: {REPO / 'configs' / 'training_config.yaml'}")
                      .replace("source_dir: ../sagemaker_container",
                               f"source_dir: {REPO / 'sagemaker_container'}"))
    result = sagebook("iam-policy", "-c", str(config))
    assert result.returncode == 2 and result.stdout == ""
    assert f"{config}: region: 'eu-west-1\"' is not an AWS region name" in result.stderr, \
        result.stderr
