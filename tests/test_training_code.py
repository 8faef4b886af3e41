"""The example training code under the emulated SageMaker container contract.

`train.py` runs as a real subprocess with `SAGEMAKER_BASE_DIR` pointing at a container tree
built in a temp folder, exactly as the local backend runs it, so these tests prove the
contract the launcher relies on: paths, config channel, metric lines, checkpoints, SIGTERM
and the failure file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[1]
CONTAINER_CODE = REPO / "sagemaker_container"
TRAIN_SCRIPT = CONTAINER_CODE / "train.py"
DIGITS = REPO / "data" / "digits"
EXAMPLE_CONFIG = REPO / "configs" / "training_config.yaml"

# What a job config gives SageMaker to scrape metrics from the training log.
METRIC_DEFINITIONS = [
    {"Name": "epoch", "Regex": r"epoch=([0-9]+)"},
    {"Name": "train_loss", "Regex": r"train_loss=([0-9.eE+-]+)"},
    {"Name": "val_loss", "Regex": r"val_loss=([0-9.eE+-]+)"},
    {"Name": "val_accuracy", "Regex": r"val_accuracy=([0-9.eE+-]+)"},
    {"Name": "final_val_accuracy", "Regex": r"final val_accuracy=([0-9.eE+-]+)"},
]
EPOCH_LINE = re.compile(
    r"^epoch=(\d+) train_loss=(\S+) val_loss=(\S+) val_accuracy=(\S+)$", re.MULTILINE
)
# Small, fast settings for tests that are about behaviour, not accuracy.
QUICK = {"epochs": 3, "batch_size": 256, "hidden_units": 16}


def load_schema() -> ModuleType:
    """Load schema.py by path, as the launcher does; unregistered in sys.modules on purpose,
    since the models must build without it."""
    spec = importlib.util.spec_from_file_location("container_schema", CONTAINER_CODE / "schema.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_container(
    base: Path, config: dict[str, Any] | None, *, validation_channel: bool = True
) -> Path:
    """Lay out /opt/ml as SageMaker does: channels under input/data, config as a channel."""
    train = base / "input" / "data" / "train"
    train.mkdir(parents=True)
    shutil.copy(DIGITS / "train.csv", train)
    if validation_channel:
        validation = base / "input" / "data" / "validation"
        validation.mkdir(parents=True)
        shutil.copy(DIGITS / "validation.csv", validation)
    if config is not None:
        config_channel = base / "input" / "data" / "config"
        config_channel.mkdir(parents=True)
        (config_channel / "training_config.yaml").write_text(yaml.safe_dump(config))
    return base


def container_env(base: Path, **extra: str) -> dict[str, str]:
    """The caller's environment minus any container variables, plus the emulated base dir."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("SM_", "SAGEMAKER_"))
    }
    env.update(SAGEMAKER_BASE_DIR=str(base), PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def run_training(base: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT)],
        env=container_env(base, **extra_env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_training(base: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(TRAIN_SCRIPT)],
        env=container_env(base),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def scrape_metrics(line: str) -> dict[str, float]:
    """What SageMaker records from one log line: the first group of every matching regex."""
    found = {}
    for metric in METRIC_DEFINITIONS:
        match = re.search(metric["Regex"], line)
        if match:
            found[metric["Name"]] = float(match.group(1))
    return found


def epoch_lines(stdout: str) -> list[str]:
    return [match.group(0) for match in EPOCH_LINE.finditer(stdout)]


def epochs_trained(stdout: str) -> list[int]:
    return [int(match.group(1)) for match in EPOCH_LINE.finditer(stdout)]


@pytest.fixture(scope="module")
def example_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One run of the example config, shared: a finished container tree is costly to make."""
    base = make_container(
        tmp_path_factory.mktemp("example"), yaml.safe_load(EXAMPLE_CONFIG.read_text())
    )
    return base, run_training(base)


@pytest.mark.slow  # trains the example
def test_example_config_writes_model_and_one_metric_line_per_epoch(
    example_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    base, result = example_run

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert epochs_trained(result.stdout) == list(range(1, 11))
    lines = result.stdout.splitlines()
    assert lines[0].startswith("starting training: epochs=10 ")
    for line in lines[:-1]:
        values = EPOCH_LINE.match(line)
        expected = (
            {
                "epoch": float(values.group(1)),
                "train_loss": float(values.group(2)),
                "val_loss": float(values.group(3)),
                "val_accuracy": float(values.group(4)),
            }
            if values
            else {}
        )
        assert scrape_metrics(line) == expected, line
    final = scrape_metrics(lines[-1])
    assert final.keys() == {"val_accuracy", "final_val_accuracy"}
    assert final["final_val_accuracy"] >= 0.93

    metrics = json.loads((base / "model" / "metrics.json").read_text())
    assert metrics["epochs"] == 10 and len(metrics["history"]) == 10
    assert metrics["val_accuracy"] == pytest.approx(final["final_val_accuracy"], abs=5e-5)
    config = json.loads((base / "model" / "training_config.json").read_text())
    assert config == load_schema().TrainingConfig.model_validate(config).model_dump()
    predictions = (base / "output" / "data" / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "label,prediction" and len(predictions) == 361
    assert (base / "checkpoints" / "checkpoint.joblib").is_file()
    assert not (base / "output" / "failure").exists()

    import joblib
    import numpy as np

    model = joblib.load(base / "model" / "model.joblib")
    validation = np.loadtxt(DIGITS / "validation.csv", delimiter=",", skiprows=1)
    accuracy = float(np.mean(model.predict(validation[:, :-1]) == validation[:, -1]))
    assert accuracy == pytest.approx(metrics["val_accuracy"])


def test_sm_variables_take_precedence_over_base_dir(tmp_path: Path) -> None:
    base = make_container(tmp_path / "base", {"epochs": 5})
    (base / "input" / "data" / "train" / "train.csv").write_text("not,a,digits,file\n")
    elsewhere = make_container(tmp_path / "elsewhere", {**QUICK, "epochs": 1})

    result = run_training(
        base,
        SM_CHANNEL_TRAIN=str(elsewhere / "input" / "data" / "train"),
        SM_CHANNEL_CONFIG=str(elsewhere / "input" / "data" / "config"),
        SM_MODEL_DIR=str(tmp_path / "sm-model"),
        SM_OUTPUT_DATA_DIR=str(tmp_path / "sm-output-data"),
    )

    assert result.returncode == 0, result.stderr
    assert epochs_trained(result.stdout) == [1]
    assert (tmp_path / "sm-model" / "model.joblib").is_file()
    assert (tmp_path / "sm-output-data" / "predictions.csv").is_file()
    assert not (base / "model").exists()
    assert not (base / "output" / "data").exists()
    assert (base / "checkpoints" / "checkpoint.joblib").is_file()


@pytest.mark.slow  # trains the example three times
def test_resumed_run_trains_only_remaining_epochs_exactly_as_one_run(tmp_path: Path) -> None:
    resumed = make_container(tmp_path / "resumed", {**QUICK, "epochs": 3})
    straight = make_container(tmp_path / "straight", {**QUICK, "epochs": 6})
    straight_run = start_training(straight)

    first = run_training(resumed)
    (resumed / "input" / "data" / "config" / "training_config.yaml").write_text(
        yaml.safe_dump({**QUICK, "epochs": 6})
    )
    second = run_training(resumed)
    straight_out, straight_err = straight_run.communicate(timeout=120)

    assert first.returncode == 0, first.stderr
    assert epochs_trained(first.stdout) == [1, 2, 3]
    assert second.returncode == 0, second.stderr
    assert "resuming from checkpoint at epoch 3" in second.stdout.splitlines()
    assert epochs_trained(second.stdout) == [4, 5, 6]
    assert straight_run.returncode == 0, straight_err
    assert epoch_lines(first.stdout + second.stdout) == epoch_lines(straight_out)
    history = json.loads((resumed / "model" / "metrics.json").read_text())["history"]
    assert [entry["epoch"] for entry in history] == [1, 2, 3, 4, 5, 6]


def test_checkpoint_written_with_other_options_is_refused(
    example_run: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    base = make_container(tmp_path, {**yaml.safe_load(EXAMPLE_CONFIG.read_text()), "epochs": 12})
    shutil.copytree(example_run[0] / "checkpoints", base / "checkpoints")
    config_file = base / "input" / "data" / "config" / "training_config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config_file.write_text(yaml.safe_dump({**config, "hidden_units": 32}))

    result = run_training(base)

    assert result.returncode == 1
    first_line = (base / "output" / "failure").read_text().splitlines()[0]
    assert first_line.startswith(f"ConfigError: {base / 'checkpoints' / 'checkpoint.joblib'}")
    assert "hidden_units: 64 in the checkpoint, 32 now" in first_line
    assert not (base / "model").exists()


@pytest.mark.slow  # trains the example, stops it, trains again
def test_sigterm_saves_checkpoint_exits_143_and_the_next_run_resumes(tmp_path: Path) -> None:
    # Only the SIGTERM handler writes a checkpoint here; small batches make an epoch last
    # ~0.2 s, so the signal, sent shortly after an epoch ends, lands mid-epoch.
    config = {**QUICK, "batch_size": 8, "checkpoint_every": 1_000_000}
    base = make_container(tmp_path / "stopped", {**config, "epochs": 100_000})
    process = start_training(base)
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("epoch="):
            break
    time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    rest, stderr = process.communicate(timeout=30)
    stdout = "".join(seen) + rest

    assert process.returncode == 143, stderr
    last_epoch = epochs_trained(stdout)[-1]
    assert stdout.splitlines()[-1] == f"received SIGTERM: checkpoint saved at epoch {last_epoch}"
    assert (base / "checkpoints" / "checkpoint.joblib").is_file()
    assert not (base / "model" / "model.joblib").exists()
    assert not (base / "output" / "failure").exists()

    # The interrupted epoch is redone from the last finished one, as if never interrupted.
    (base / "input" / "data" / "config" / "training_config.yaml").write_text(
        yaml.safe_dump({**config, "epochs": last_epoch + 1})
    )
    straight = make_container(tmp_path / "straight", {**config, "epochs": last_epoch + 1})
    straight_run = start_training(straight)
    resumed = run_training(base)
    straight_out, straight_err = straight_run.communicate(timeout=120)

    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from checkpoint at epoch {last_epoch}" in resumed.stdout
    assert epochs_trained(resumed.stdout) == [last_epoch + 1]
    assert straight_run.returncode == 0, straight_err
    assert epoch_lines(resumed.stdout) == epoch_lines(straight_out)[-1:]


def test_non_numeric_cell_fails_with_message_first_then_traceback(tmp_path: Path) -> None:
    base = make_container(tmp_path, QUICK)
    train_csv = base / "input" / "data" / "train" / "train.csv"
    lines = train_csv.read_text().splitlines()
    cells = lines[4].split(",")
    cells[12] = "twelve"
    lines[4] = ",".join(cells)
    train_csv.write_text("\n".join(lines) + "\n")

    result = run_training(base)

    assert result.returncode == 1
    failure = (base / "output" / "failure").read_text()
    assert failure.startswith(
        f"DataError: {train_csv} line 5, column 'pixel_12': 'twelve' is not a number\n"
    )
    assert "Traceback (most recent call last):" in failure
    assert 'train.py", line' in failure
    assert "Traceback (most recent call last):" in result.stderr
    assert not (base / "model" / "model.joblib").exists()


def test_missing_target_column_fails_naming_the_column(tmp_path: Path) -> None:
    base = make_container(tmp_path, {**QUICK, "target_column": "digit"})

    result = run_training(base)

    assert result.returncode == 1
    failure = (base / "output" / "failure").read_text()
    first_line = failure.splitlines()[0]
    assert first_line.startswith("DataError: ")
    assert "target column 'digit' not found" in first_line
    assert "label" in first_line


def test_invalid_training_config_names_each_key_and_the_nearest_option(tmp_path: Path) -> None:
    base = make_container(
        tmp_path, {"learning_rat": 0.1, "epochs": 0, "data": {"train_fil": "x.csv"}}
    )

    result = run_training(base)

    assert result.returncode == 1
    assert "starting training" not in result.stdout
    failure = (base / "output" / "failure").read_text()
    first_line = failure.splitlines()[0]
    config_file = base / "input" / "data" / "config" / "training_config.yaml"
    assert first_line.startswith(f"ConfigError: invalid training config {config_file}: ")
    assert "learning_rat: unknown option (did you mean 'learning_rate'?)" in first_line
    assert "data.train_fil: unknown option (did you mean 'train_file'?)" in first_line
    assert "epochs: Input should be greater than or equal to 1 (got 0)" in first_line
    assert "Traceback (most recent call last):" in failure


def test_hyperparameters_json_is_used_when_there_is_no_config_channel(tmp_path: Path) -> None:
    base = make_container(tmp_path, None, validation_channel=False)
    hyperparameters = {
        "epochs": "2",
        "batch_size": "256",
        "hidden_units": "0",
        "optimizer": '"sgd"',
        "learning_rate": "0.05",
        "data.validation_fraction": "0.25",
        "sagemaker_program": '"train.py"',
        "_tuning_objective_metric": "val_accuracy",  # SageMaker's, in a tuning job's trials
    }
    config_dir = base / "input" / "config"
    config_dir.mkdir(parents=True)
    (config_dir / "hyperparameters.json").write_text(json.dumps(hyperparameters))

    # one trial of a sweep's tuning job: its checkpoints in a folder of its own
    result = run_training(base, SAGEBOOK_SWEEP_ID="sweep-1", TRAINING_JOB_NAME="sweep-1-001-ab")

    assert result.returncode == 0, result.stderr
    start = result.stdout.splitlines()[0]
    assert "hidden_units=0 optimizer=sgd batch_size=256" in start
    assert "train_rows=1078 validation_rows=359" in start
    assert start.endswith(f"config={config_dir / 'hyperparameters.json'}")
    assert epochs_trained(result.stdout) == [1, 2]
    assert [p.relative_to(base / "checkpoints").parts[0]
            for p in (base / "checkpoints").rglob("*.joblib")] == ["sweep-1-001-ab"]


def test_schema_documents_every_option_with_a_default() -> None:
    schema = load_schema()

    def check(model: Any, prefix: str) -> None:
        for name, field in model.model_fields.items():
            assert field.description, f"{prefix}{name} has no description"
            assert not field.is_required(), f"{prefix}{name} has no default"
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                check(annotation, f"{prefix}{name}.")

    check(schema.TrainingConfig, "")
    assert schema.TrainingConfig().model_dump()["data"]["train_file"] == "train.csv"


def test_example_config_sets_every_option_of_the_schema() -> None:
    schema = load_schema()
    example = yaml.safe_load(EXAMPLE_CONFIG.read_text())

    def keys(mapping: dict[str, Any], prefix: str = "") -> set[str]:
        """Dotted paths of every key, sections included."""
        found = set()
        for key, value in mapping.items():
            found.add(f"{prefix}{key}")
            if isinstance(value, dict):
                found |= keys(value, f"{prefix}{key}.")
        return found

    validated = schema.TrainingConfig.model_validate(example)
    assert keys(example) == keys(validated.model_dump())
