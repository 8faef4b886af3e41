"""The whole-model request check: every constraint of the loaded SageMaker model, Java regexes
evaluated as Java evaluates them, and the few documented rules the model lacks."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from typing import Any

import botocore.session
import pytest
from botocore.model import ServiceModel

from sagebook import apicheck
from sagebook.apicheck import check_request, java_pattern

from conftest import REPO, ROLE

MODEL = botocore.session.get_session().get_service_model("sagemaker")


def good_request() -> dict[str, Any]:
    return {
        "TrainingJobName": "digits-mlp-20261201-a3f9c1",
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": "img:1", "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                           "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "HyperParameters": {"epochs": "10"},
        "Environment": {"MY_VAR": "1"},
        "Tags": [{"Key": "team", "Value": "ml"}],
    }


def problems(request: dict[str, Any], model: Any = None) -> dict[tuple, str]:
    return {p.path: p.message for p in check_request("CreateTrainingJob", request, model)}


def test_a_good_request_has_no_problems():
    assert check_request("CreateTrainingJob", good_request()) == []
    assert check_request("CreateTrainingJob", good_request(), MODEL) == []


PATTERNS = sorted({MODEL.shape_for(n).metadata.get("pattern") for n in MODEL.shape_names}
                  - {None})
# ASCII values that probe each pattern: every printable character alone, and some shapes
ASCII_PROBES = [chr(c) for c in range(128)] + [
    "", "ml.m5.large", "arn:aws:iam::123456789012:role/R", "s3://bucket/key", "a b", "a-",
    "MY_VAR", "1VAR", "a\nb", "x" * 70, "subnet-0abc", "https://x/y", "fs-0123abcd", "1.2.3",
    "arn:aws:sagemaker:us-east-1:123456789012:training-job/job-1", "alias/my key", "10K",
]


def test_every_pattern_in_the_sagemaker_model_translates_and_compiles():
    assert len(PATTERNS) > 100
    assert [p for p in PATTERNS if java_pattern(p).full is None] == []
    # most have a translation for Python's re as well, which answers for ASCII values
    assert sum(java_pattern(p).ascii is not None for p in PATTERNS) > 0.9 * len(PATTERNS)


def test_the_ascii_translation_agrees_with_the_full_one_on_ascii_values():
    for pattern in PATTERNS:
        compiled = java_pattern(pattern)
        if compiled.ascii is None:
            continue
        for value in ASCII_PROBES:
            assert (compiled.ascii.fullmatch(value) is not None) == \
                (compiled.full.fullmatch(value) is not None), (pattern, value)


@pytest.mark.parametrize(("pattern", "value", "java_matches"), [
    (r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*", "équipe 三 ٣", True),  # Unicode letters, spaces, digits
    (r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*", "a#b", False),
    (r"\w+", "é", False),            # Java's \w is ASCII
    (r"\d+", "٣", False),            # so is \d
    (r"[\p{Alnum}\-]+", "aé", False),  # and the POSIX classes
    (r"[\p{Alnum}\-]+", "a-1", True),
    (r".*", "two\nlines", False),    # Java's . refuses every line terminator
    (r".*", "a\u2028b", False),
    (r".*", "a\tb", True),
    (r"[\S\s]*", "two\nlines", True),
    (r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\t]*", "ok \U0001F600", True),
    (r"(arn:aws:x:[a-z]*/)?([a-zA-Z0-9]([a-zA-Z0-9-]){0,62})(?<!-)", "job-", False),
])
def test_java_regexes_keep_their_java_meaning(pattern, value, java_matches):
    compiled = java_pattern(pattern)
    assert compiled.fullmatch(value) == java_matches
    assert (compiled.full.fullmatch(value) is not None) == java_matches


def test_every_kind_of_constraint_is_reported_with_limit_and_actual():
    request = good_request()
    request["Tags"] = [{"Key": f"k{i}", "Value": "v"} for i in range(55)]
    request["HyperParameters"] = {"lr": "x" * 3000}
    request["Environment"] = {"MY-VAR": "1"}
    request["ResourceConfig"].update(InstanceType="ml.m5.xlarg", KeepAlivePeriodInSeconds=30000,
                                     InstanceCount="2")
    request["RoleArn"] = "arn:aws:iam::123456789012:role/Rôle"
    del request["OutputDataConfig"]
    request["Bogus"] = 1
    found = problems(request)
    assert found[("Tags",)] == "at most 50 items allowed, got 55"
    assert found[("HyperParameters", "lr")].startswith("at most 2,500 characters allowed, got "
                                                       "3,000")
    assert "does not match the pattern [a-zA-Z_][a-zA-Z0-9_]*" in found[("Environment", "MY-VAR")]
    assert found[("Environment", "MY-VAR")].startswith("key: ")
    assert "refused from character 3: '-'" in found[("Environment", "MY-VAR")]
    assert found[("ResourceConfig", "KeepAlivePeriodInSeconds")] == \
        "at most 21,600 allowed, got 30,000"
    assert found[("ResourceConfig", "InstanceCount")] == "expected an integer, got str '2'"
    assert "nearest: ml.m5.xlarge" in found[("ResourceConfig", "InstanceType")]
    assert "refused from character 33: 'ô'" in found[("RoleArn",)]
    assert found[("OutputDataConfig",)] == "required member is missing"
    assert found[("Bogus",)].startswith("unknown member")
    kinds = {p.kind for p in check_request("CreateTrainingJob", request)}
    assert kinds == {"items", "length", "pattern", "range", "type", "enum", "required", "unknown"}


def test_limits_follow_the_model_not_a_copy_of_it():
    """Raise one limit in a copy of the model: the check moves with it."""
    loader = botocore.session.get_session().get_component("data_loader")
    data = copy.deepcopy(loader.load_service_model("sagemaker", "service-2"))
    data["shapes"]["KeepAlivePeriodInSeconds"]["max"] = 40000
    request = good_request()
    request["ResourceConfig"]["KeepAlivePeriodInSeconds"] = 30000
    assert problems(request, ServiceModel(data, "sagemaker")) == {}
    assert ("ResourceConfig", "KeepAlivePeriodInSeconds") in problems(request, MODEL)


def test_documented_tag_rules_the_model_lacks_cite_their_source():
    request = good_request()
    request["Tags"] = [{"Key": "AWS:team", "Value": "ml"}, {"Key": "team", "Value": "a"},
                       {"Key": "team", "Value": "b"}]
    found = problems(request)
    assert "reserved for AWS use" in found[("Tags", 0, "Key")]
    assert "appears twice (first as item 1)" in found[("Tags", 2, "Key")]
    assert all(source.startswith("https://docs.aws.amazon.com/")
               for _, _, source in apicheck.DOCUMENTED)


def test_tuning_job_requests_are_checked_too():
    request = {
        "HyperParameterTuningJobName": "sweep-1",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 10, "MaxParallelTrainingJobs": 2},
        },
        "TrainingJobDefinition": {
            "AlgorithmSpecification": {"TrainingImage": "img:1", "TrainingInputMode": "File"},
            "RoleArn": ROLE,
            "OutputDataConfig": {"S3OutputPath": "s3://bucket/out"},
            "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                               "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            "StaticHyperParameters": {"epochs": "10"},
        },
    }
    assert check_request("CreateHyperParameterTuningJob", request) == []
    request["HyperParameterTuningJobConfig"]["Strategy"] = "Clever"
    request["TrainingJobDefinition"]["StaticHyperParameters"] = {f"h{i}": "1" for i in range(101)}
    found = {p.path: p.message for p in
             check_request("CreateHyperParameterTuningJob", request, MODEL)}
    assert found[("HyperParameterTuningJobConfig", "Strategy")].startswith("'Clever' is not one of")
    assert found[("TrainingJobDefinition", "StaticHyperParameters")] == \
        "at most 100 entries allowed, got 101"


def test_the_cache_is_rebuilt_when_the_model_botocore_would_load_changes(tmp_path):
    """A model file on AWS_DATA_PATH (as botocore's loader reads it) changes the verdict in
    the next process, through the cache."""
    loader = botocore.session.get_session().get_component("data_loader")
    data = loader.load_service_model("sagemaker", "service-2")
    version = loader.determine_latest_version("sagemaker", "service-2")
    script = ("import json, sys; from sagebook.apicheck import check_request; "
              "print(json.dumps([p.message for p in check_request('CreateTrainingJob', "
              "json.loads(sys.argv[1]))]))")
    request = good_request()
    request["ResourceConfig"]["KeepAlivePeriodInSeconds"] = 30000
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(REPO / "lib"), "HOME": str(tmp_path)}

    def verdict(**extra: str) -> list[str]:
        out = subprocess.run([sys.executable, "-c", script, json.dumps(request)], env={
            **env, **extra}, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    assert verdict() == ["at most 21,600 allowed, got 30,000"]
    assert len(list((tmp_path / "cache/sagebook").glob("sagemaker-CreateTrainingJob-*.json"))) == 1
    assert verdict() == ["at most 21,600 allowed, got 30,000"]  # from the cache
    data["shapes"]["KeepAlivePeriodInSeconds"]["max"] = 40000
    model_dir = tmp_path / "models/sagemaker" / version
    model_dir.mkdir(parents=True)
    (model_dir / "service-2.json").write_text(json.dumps(data))
    assert verdict(AWS_DATA_PATH=str(tmp_path / "models")) == []
    assert len(list((tmp_path / "cache/sagebook").glob("sagemaker-CreateTrainingJob-*.json"))) == 2
    assert verdict() == ["at most 21,600 allowed, got 30,000"]  # each model keeps its entry
