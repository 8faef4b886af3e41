"""Loading, overriding and validating the job and training configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sagebook import config
from sagebook.errors import ConfigError

from conftest import REPO, sagebook


def problems(path: Path, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        config.load(path, overrides)
    return str(info.value)


def test_example_configs_load_with_paths_resolved_against_the_config_file():
    cfg = config.load(REPO / "configs" / "sagemaker_config.local.yaml")
    assert cfg.job.instance_type == "local"
    assert cfg.job.max_runtime == 30 * 60
    assert Path(cfg.job.source_dir) == REPO / "sagemaker_container"
    assert Path(cfg.job.channels["train"].uri) == REPO / "data/digits/train.csv"
    assert Path(cfg.job.experiments_uri) == REPO / "experiments"
    assert cfg.training["epochs"] == 10

    cloud = config.load(REPO / "configs" / "sagemaker_config.yaml")
    assert cloud.job.is_cloud and cloud.job.spot
    assert cloud.job.max_wait == 4 * 3600
    assert cloud.job.channels["train"].uri == "s3://my-ml-bucket/datasets/digits/train.csv"
    assert cloud.job.channels["validation"].content_type == "text/csv"


@pytest.mark.parametrize("text, seconds", [
    (5400, 5400), ("90m", 5400), ("2h", 7200), ("1h30m", 5400), ("45s", 45), ("1d", 86400),
    ("3600", 3600),
])
def test_durations_accept_minutes_hours_and_seconds(text, seconds):
    assert config.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5m", "0", "1.5h", "", True])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        config.parse_duration(text)


def test_overrides_are_typed_by_the_schema(make_config):
    path = make_config(image_uri="img")
    cfg = config.load(path, ["training.epochs=3", "training.learning_rate=0.5",
                             "job.image_uri=12345", "job.max_runtime=2h",
                             "training.data.train_file=other.csv", "job.tags.owner=me"])
    assert cfg.training["epochs"] == 3
    assert cfg.training["learning_rate"] == 0.5
    assert cfg.training["data"]["train_file"] == "other.csv"
    assert cfg.job.image_uri == "12345"  # a text field stays text
    assert cfg.job.max_runtime == 7200
    assert cfg.job.tags == {"team": "ml", "owner": "me"}
    assert "# override: training.epochs=3" in cfg.training_yaml()
    assert yaml.safe_load(cfg.training_yaml())["epochs"] == 3


def test_training_config_without_overrides_is_recorded_verbatim(make_config):
    cfg = config.load(make_config())
    assert cfg.training_yaml() == cfg.training_path.read_text()


def test_typo_in_job_key_names_file_line_and_nearest_option(make_config, tmp_path):
    path = make_config()
    text = path.read_text().replace("instance_type:", "instanse_type:")
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("instanse_type"))
    message = problems(path)
    assert f"{path}:{line}: job.instanse_type: unknown key; did you mean 'instance_type'?" in (
        message
    )


def test_typo_in_training_key_names_nearest_option(make_config):
    path = make_config(training={"learning_rat": 0.1})
    message = problems(path)
    assert "training.learning_rat: unknown key; did you mean 'learning_rate'?" in message
    assert str(path.parent / "training-job.yaml") in message


def test_wrong_type_says_what_was_expected_and_what_it_got(make_config):
    path = make_config(training={"epochs": "many"})
    message = problems(path)
    assert "training.epochs" in message and "valid integer" in message and "'many'" in message


def test_closed_choice_lists_the_valid_values(make_config):
    message = problems(make_config(), ("training.optimizer=adagrad",))
    assert "override 'training.optimizer=adagrad': training.optimizer" in message
    assert "'adam' or 'sgd'" in message


def test_every_problem_is_reported_at_once(make_config):
    path = make_config(instance_count=0, volume_size_gb="big")
    message = problems(path)
    assert "job.instance_count" in message and "job.volume_size_gb" in message


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("experiment: x\ninstance_type: [local\nmax_runtime: 1h\n")
    message = problems(path)
    assert message.startswith(f"{path}:") and "not valid YAML" in message


def test_duplicate_keys_are_refused(tmp_path, make_config):
    path = make_config()
    path.write_text(path.read_text() + "instance_type: ml.m5.large\n")
    assert "duplicate key" in problems(path)


@pytest.mark.parametrize("changes, expected", [
    ({"experiments_uri": "s3://Bad_Bucket/x"}, "expected s3://bucket/prefix"),
    ({"experiments_uri": "gs://bucket/x"}, "expected s3://bucket/prefix"),
    ({"instance_type": "gpu"}, "job.instance_type: no backend runs 'gpu': use local, "
                               "local-docker, local-gpu, ml.<family>.<size>"),
    ({"instance_type": "ml.m5.large", "image_uri": "i"},
     "job.role_arn: required for instance_type ml.m5.large"),
    ({"instance_type": "local-docker"}, "job.image_uri: required for instance_type local-docker"),
    ({"instance_type": "local-gpu", "image_uri": "i", "instance_count": 2},
     "job.instance_count: instance_type local-gpu runs at most 1 host, got 2"),
    ({"max_runtime": "-5m"}, "duration"),
    ({"max_runtime": "40d"}, "less than or equal to 2419200"),
    ({"spot": True}, "job.spot: spot needs checkpoint_uri"),
    ({"spot": True, "checkpoint_uri": "/tmp/c", "max_wait": "10m", "max_runtime": "1h"},
     "job.max_wait: must be at least max_runtime (3600s), got 600s"),
    ({"experiment": "bad name!"}, "job.experiment"),
    ({"metric_definitions": [{"name": "loss", "regex": "loss=[0-9.]+"}]}, "capture group"),
    ({"channels": {"config": "/tmp"}}, "job.channels.config: channel name 'config' is reserved"),
    ({"channels": {"train": "/no/such/folder"}}, "path not found: /no/such/folder"),
    ({"source_dir": "/no/such/code"}, "folder not found"),
    ({"training_config": "/no/such.yaml"}, "job.training_config: file not found"),
])
def test_bad_job_settings_are_refused_with_the_key(make_config, changes, expected):
    assert expected in problems(make_config(**changes))


@pytest.mark.parametrize("override, expected", [
    ("epochs=3", "must start with job. or training."),
    ("training.epochs", "expected key.path=value"),
    ("job.no_such_key=1", "job.no_such_key: unknown key"),
    ("training.data.train_fil=x.csv", "did you mean 'train_file'?"),
    ("training.epochs.deep=1", "is a int, not a section"),
])
def test_bad_overrides_name_the_override(make_config, override, expected):
    message = problems(make_config(), (override,))
    assert expected in message


def test_training_schema_that_does_not_import_is_reported(make_config, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("")
    (code / "schema.py").write_text("raise RuntimeError('broken schema')\n")
    assert "importing the training schema failed" in problems(make_config(source_dir=str(code)))


def test_cli_reports_invalid_config_without_traceback_and_writes_nothing(make_config, tmp_path):
    path = make_config(training={"epocs": 3})
    result = sagebook("launch", str(path))
    assert result.returncode == 2
    assert "did you mean 'epochs'?" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "experiments").exists()


def test_dry_run_prints_a_valid_request_for_the_cloud_example():
    result = sagebook("launch", str(REPO / "configs/sagemaker_config.yaml"), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert '"TrainingJobName": "digits-mlp-2' in result.stdout  # the launch's own names
    assert "nothing was written" in result.stderr


def test_a_job_error_does_not_hide_the_training_errors(make_config):
    message = problems(make_config(instance_type="gpu", training={"epocs": 3}))
    assert "job.instance_type: no backend runs 'gpu'" in message
    assert "training.epocs: unknown key; did you mean 'epochs'?" in message


def test_digest_names_the_settings_not_the_files(make_config):
    first = config.load(make_config("a.yaml"))
    second = config.load(make_config("b.yaml"))
    assert first.job_path != second.job_path and first.training_path != second.training_path
    assert first.digest() == second.digest()
    assert first.digest() != config.load(make_config("c.yaml"), ["training.epochs=5"]).digest()
