"""The bad-input corpus (tests/bad_inputs.yaml): every case gets one clear message naming the
file, line or override and the key, exit code 2, no traceback, no record and no upload; and
`launch --dry-run` gives the same verdict and message as the launch."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from sagebook.cli import main

from conftest import REPO

CASES = yaml.safe_load((REPO / "tests" / "bad_inputs.yaml").read_text())
RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")


def test_the_corpus_is_large_and_names_are_unique():
    assert len(CASES) >= 40
    assert len({c["name"] for c in CASES}) == len(CASES)


def _deep_update(target: dict, changes: dict) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def _with_tmp(value, tmp_path: Path):
    if isinstance(value, dict):
        return {k: _with_tmp(v, tmp_path) for k, v in value.items()}
    return value.replace("{tmp}", str(tmp_path)) if isinstance(value, str) else value


def make_paths(case: dict, tmp_path: Path) -> None:
    for kind in case.get("make", []):
        if kind == "loop":
            (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
            (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
        elif kind == "fifo":
            os.mkfifo(tmp_path / "fifo")
        elif kind == "folder":
            (tmp_path / "folder").mkdir()


def write_case(case: dict, make_config, tmp_path: Path) -> Path:
    make_paths(case, tmp_path)
    path = make_config()
    job = yaml.safe_load(path.read_text())
    job.update(_with_tmp(case.get("job", {}), tmp_path))
    for key in case.get("drop", []):
        job.pop(key)
    text = yaml.safe_dump(job, sort_keys=False)
    if "raw_job" in case:
        text = case["raw_job"]
    text += case.get("raw_job_append", "")
    text += "#" * case.get("pad_job", 0)
    path.write_text(text)
    training = Path(job.get("training_config", tmp_path / "none"))
    if "job_path" in case:
        return Path(_with_tmp(case["job_path"], tmp_path))
    if "raw_training" in case:
        training.write_text(case["raw_training"])
    elif "training" in case:
        data = yaml.safe_load(training.read_text())
        _deep_update(data, case["training"])
        training.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_input_gets_one_clear_message(case, make_config, tmp_path, capsys):
    path = write_case(case, make_config, tmp_path)
    args = ["launch", str(path)]
    for override in case.get("overrides", []):
        args += ["-o", override]
    dry_run_code = main([*args, "--dry-run"])
    dry_run = capsys.readouterr().err
    code = main(args)
    err = capsys.readouterr().err
    assert code == dry_run_code == 2, err
    assert RUN_ID.sub("RUN", err) == RUN_ID.sub("RUN", dry_run)  # the launch's verdict
    assert case["expect"] in err
    assert "Traceback" not in err
    assert err.startswith("sagebook: invalid configuration:\n")
    # every problem line says where: a file and line, or the override
    for line in err.splitlines()[1:]:
        assert re.match(r"^  (/\S+?(:\d+)?|override '[^']*'|CreateTrainingJob request): ",
                        line), line
    assert not (tmp_path / "experiments").exists()


def test_bad_cloud_config_uploads_nothing(make_config, bucket, capsys):
    import boto3

    path = make_config(
        instance_type="ml.m5.large", image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1",
        role_arn="arn:aws:iam::123456789012:role/SageMaker",
        experiments_uri=f"s3://{bucket}/records", training={"epochz": 3},
    )
    assert main(["launch", str(path)]) == 2
    assert "did you mean 'epochs'?" in capsys.readouterr().err
    assert boto3.client("s3").list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


@pytest.mark.parametrize("config, overrides, wait, expect", [
    (None, [], None, "parameter config: expected the path of a job config"),
    (5, [], None, "parameter config: expected the path of a job config"),
    ("  ", [], None, "parameter config: expected the path of a job config"),
    ("job.yaml", 7, None, "parameter overrides: expected a list"),
    ("job.yaml", "epochs", None, "parameter overrides: expected a list"),
    ("job.yaml", [3], None, "parameter overrides: expected a list"),
    ("job.yaml", '{"a": 1}', None, "parameter overrides: expected a list"),
    ("job.yaml", [], "yes", "parameter wait: expected true or false"),
])
def test_papermill_parameters_of_the_wrong_type_are_refused(config, overrides, wait, expect):
    from sagebook.errors import ConfigError
    from sagebook.notebooks import check_parameters

    with pytest.raises(ConfigError) as info:
        check_parameters(config, overrides, wait)
    assert str(info.value).startswith(expect)


def test_papermill_parameters_accept_what_papermill_passes():
    from sagebook.notebooks import check_parameters

    assert check_parameters("job.yaml", '["training.epochs=3"]', True) == (
        "job.yaml", ["training.epochs=3"], True)
    assert check_parameters("job.yaml", "training.epochs=3", None) == (
        "job.yaml", ["training.epochs=3"], None)
    assert check_parameters("job.yaml", None, False) == ("job.yaml", [], False)
