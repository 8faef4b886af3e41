"""One place resolves AWS profile and region: where a run's job, a bucket, an image lives."""

from __future__ import annotations

import json
import os

import boto3
import pytest

from sagebook import aws as access
from sagebook.errors import ConfigError

ARN = "arn:aws:sagemaker:eu-west-1:123456789012:training-job/exp-a-1"


def test_a_jobs_region_is_the_recorded_one_then_its_arns_then_the_configs(aws):
    assert access.job_location({"aws": {"region": "us-west-2"}, "job_arn": ARN}) == (
        "us-west-2", None)
    assert access.job_location({"aws_region": "ap-south-1"}) == ("ap-south-1", None)
    assert access.job_location({"job_arn": ARN}) == ("eu-west-1", None)
    assert access.job_location({}, {"region": "sa-east-1"}) == ("sa-east-1", None)
    assert access.region_from_arn("not an arn") is None


def test_a_profile_this_machine_lacks_falls_back_to_the_default_chain(aws, tmp_path,
                                                                      monkeypatch):
    config = tmp_path / "config"
    config.write_text("[profile team]\nregion = eu-central-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # it would win over the profile's
    assert access.job_location({"aws": {"profile": "team"}}) == (None, "team")
    assert access.job_location({"aws": {"profile": "someone-elses"}}) == (None, None)
    assert access.region("team") == "eu-central-1"


def test_no_region_is_a_config_problem_naming_the_key(aws, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ConfigError, match=r"job.region: no AWS region"):
        access.client("sagemaker")


def test_bucket_region_and_ecr_image_parts(aws):
    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket="in-ireland", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert access.bucket_region("in-ireland") == "eu-west-1"
    assert access.bucket_region("no-such-bucket-here") is None
    digest = "sha256:" + "a" * 64
    assert access.ecr_image(f"123456789012.dkr.ecr.us-east-2.amazonaws.com/team/img@{digest}") == {
        "account": "123456789012", "region": "us-east-2", "repo": "team/img", "tag": None,
        "digest": digest}
    assert access.ecr_image("python:3.12-slim") is None


def test_service_models_load_from_a_cache_that_a_corrupt_entry_cannot_break(tmp_path,
                                                                          monkeypatch):
    """botocore's large model files are kept decoded (marshal) and give the same model; a
    damaged cache entry is read from the JSON again and rewritten, never an error."""
    import botocore.session

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def create_training_job(cached: bool):
        core = botocore.session.get_session()
        if cached:
            core.get_component("data_loader").file_loader = access._model_file_loader()
        shape = core.get_service_model("sagemaker").operation_model("CreateTrainingJob")
        return {name: (member.type_name, member.metadata)
                for name, member in shape.input_shape.members.items()}

    plain = create_training_job(cached=False)
    assert create_training_job(cached=True) == plain  # parsed, then written to the cache
    entries = sorted((tmp_path / "sagebook" / "botocore").glob("*.marshal"))
    assert entries, "the SageMaker model was not cached"
    real_loads = json.loads

    def small_only(text, *args, **kwargs):
        assert len(text) < 16_384, "a cached model file was parsed again"
        return real_loads(text, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(json, "loads", small_only)
        assert create_training_job(cached=True) == plain  # read from the cache
    for entry in entries:
        entry.write_bytes(b"\x00not marshal")
    assert create_training_job(cached=True) == plain
    assert all(entry.read_bytes()[:1] != b"\x00" for entry in entries)  # rewritten


def test_a_model_file_changed_by_an_upgrade_replaces_its_cache_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = tmp_path / "service-2.json"
    other = tmp_path / "other-2.json"
    for path in (model, other):
        path.write_text(json.dumps({"shapes": {f"S{n}": {"type": "string"} for n in range(999)}}))
    loader = access._model_file_loader()
    entries = tmp_path / "cache" / "sagebook" / "botocore"
    assert loader._load_file(str(model), open) == json.loads(model.read_text())
    assert loader._load_file(str(other), open) == json.loads(other.read_text())
    before = sorted(entries.glob("*.marshal"))
    assert len(before) == 2

    model.write_text(json.dumps({"shapes": {"New": {"type": "string"}}, "pad": "x" * 20_000}))
    os.utime(model, ns=(1, 1))  # as a new botocore version's file
    assert loader._load_file(str(model), open)["shapes"] == {"New": {"type": "string"}}
    after = sorted(entries.glob("*.marshal"))
    assert len(after) == 2 and len(set(before) & set(after)) == 1  # the old entry went

    def parsed_again(*args, **kwargs):
        raise AssertionError("the other file's entry should have stayed")

    monkeypatch.setattr(json, "loads", parsed_again)
    assert loader._load_file(str(other), open)["shapes"]["S0"] == {"type": "string"}
