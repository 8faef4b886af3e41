"""The bad-request corpus (tests/bad_requests.yaml): requests CreateTrainingJob would reject,
each built from a config or an override. `launch --dry-run` and `launch` give the same verdict
and the same message, naming file and line (or the override) and the key, with the limit and
the actual size; nothing is written, uploaded or created."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sagebook.cli import main

from conftest import IMAGE, REPO, ROLE, sagebook

CASES = yaml.safe_load((REPO / "tests" / "bad_requests.yaml").read_text())
BUCKET = "sagebook-test"
CLOUD = {
    "instance_type": "ml.m5.large", "image_uri": IMAGE, "role_arn": ROLE,
    "experiments_uri": f"s3://{BUCKET}/records",
    "channels": {"train": f"s3://{BUCKET}/data/train/"},
}
# every problem line: where (file:line, or the override), then the key
WHERE_AND_KEY = re.compile(r"^  (/\S[^:]*:\d+|override '[^']*'): (job|training)[.:]")
RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")


def test_the_corpus_covers_every_kind_of_constraint():
    assert len(CASES) >= 40
    assert len({c["name"] for c in CASES}) == len(CASES)
    text = " ".join(str(c["expect"]) for c in CASES)
    for kind in ("at most", "characters allowed", "items allowed", "entries allowed",
                 "at least", "does not match the pattern", "is not one of",
                 "reserved for AWS use", "appears twice", "required member is missing",
                 "expected true or false", "unknown member", "is set by"):
        assert kind in text, kind


def write_case(case: dict[str, Any], make_config, tmp_path: Path) -> Path:
    path = make_config(**(CLOUD if case.get("cloud") else {}))
    job = yaml.safe_load(path.read_text())
    training_path = Path(job["training_config"])
    training = yaml.safe_load(training_path.read_text())
    job.update(case.get("job", {}))
    training.update(case.get("training", {}))
    for dotted, expression in case.get("generate", {}).items():
        value = eval(expression, {"REPO": REPO, "tmp_path": tmp_path})  # test data only
        section, _, key = dotted.partition(".")
        if section == "training" and not key:
            training = value
        else:
            (job if section == "job" else training)[key] = value
    path.write_text(yaml.safe_dump(job, sort_keys=False, allow_unicode=True, width=10**6))
    training_path.write_text(yaml.safe_dump(training, allow_unicode=True, width=10**6))
    return path


def refusal(args: list[str], capsys) -> str:
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_request_is_refused_alike_by_dry_run_and_launch(case, make_config, bucket,
                                                            tmp_path, capsys):
    import boto3

    path = write_case(case, make_config, tmp_path)
    args = ["launch", str(path)]
    for override in case.get("overrides", []):
        args += ["-o", override]
    dry_run = refusal([*args, "--dry-run"], capsys)
    launched = refusal(args, capsys)
    assert RUN_ID.sub("RUN", dry_run) == RUN_ID.sub("RUN", launched)
    expected = case["expect"] if isinstance(case["expect"], list) else [case["expect"]]
    for text in expected:
        assert text in launched, launched
    assert launched.startswith("sagebook: invalid configuration:\n")
    assert "Traceback" not in launched
    for line in launched.splitlines()[1:]:
        assert WHERE_AND_KEY.match(line), line
    # nothing written, uploaded or created
    assert not any(tmp_path.glob("**/manifest.json"))
    assert boto3.client("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


@pytest.mark.parametrize("name", ["55 tags, 5 of them sagebook's", "instance type with a typo",
                                  "request map setting a field a config key owns"])
def test_the_real_command_refuses_alike(name, make_config, bucket, tmp_path):
    case = next(c for c in CASES if c["name"] == name)
    args = ["launch", str(write_case(case, make_config, tmp_path))]
    for override in case.get("overrides", []):
        args += ["-o", override]
    dry_run, launched = sagebook(*args, "--dry-run"), sagebook(*args)
    assert dry_run.returncode == launched.returncode == 2
    assert RUN_ID.sub("RUN", dry_run.stderr) == RUN_ID.sub("RUN", launched.stderr)
    assert case["expect"] in launched.stderr and "Traceback" not in launched.stderr
