#!/usr/bin/env python3
"""Example training script: a small neural network classifying the digits data set.

It follows the SageMaker training container contract so that the same file runs unchanged
inside the container and on a laptop under an emulated container tree. Every path is resolved
as `SM_*` environment variable (set by the sagemaker-training toolkit) → `$SAGEMAKER_BASE_DIR/…`
(local emulation) → `/opt/ml/…` (the real container).

Channels read: `train` (required), `validation` (optional; otherwise a share of `train` is held
out) and `config` (optional; one YAML file validated against `schema.TrainingConfig`; without
it the options come from `input/config/hyperparameters.json`, then the defaults).

Outputs: `model.joblib`, `metrics.json` and `training_config.json` in the model dir,
`predictions.csv` in the output data dir, a checkpoint in the checkpoint dir. One line per
epoch on stdout (`epoch=3 train_loss=… val_loss=… val_accuracy=…`) for the job's metric
definitions. SIGTERM (StopTrainingJob, Spot interruption) saves a checkpoint and exits 143;
any error writes `output/failure` and exits 1.

On several hosts it trains data-parallel: each host takes every n-th training row, and the
network's parameters are averaged across hosts after every epoch (`allreduce.py`), so the
model, metrics and outputs have the same shape as on one host; the first host writes them.
"""

from __future__ import annotations

import copy
import csv
import difflib
import faulthandler
import json
import os
import signal
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import joblib
import numpy as np
import yaml
from allreduce import AllReduce, Cluster, PeerLost
from pydantic import BaseModel, ValidationError
from schema import TrainingConfig
from sklearn.metrics import log_loss
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

CHECKPOINT_FILE = "checkpoint.joblib"
CHECKPOINT_FORMAT = 1
EXIT_STOPPED = 128 + signal.SIGTERM
# Options a continuation may change: anything else would silently mix two experiments, since
# the checkpointed model carries the options it was built with.
RESUMABLE_CHANGES = {"epochs", "checkpoint_every"}


class ConfigError(Exception):
    """The training options cannot be used; the message names the source and the key."""


class DataError(Exception):
    """An input channel or file is missing or malformed; the message names file and line."""


def container_path(env_var: str | None, *relative: str) -> Path:
    """Resolve a container path: `SM_*` variable, else `$SAGEMAKER_BASE_DIR`, else /opt/ml."""
    if env_var and os.environ.get(env_var):
        return Path(os.environ[env_var])
    return Path(os.environ.get("SAGEMAKER_BASE_DIR") or "/opt/ml", *relative)


def channel_dir(name: str) -> Path | None:
    """Folder of an input channel, or None when the job has no such channel.

    An explicit `SM_CHANNEL_<NAME>` pointing nowhere is an error rather than an absent
    channel, because someone asked for that folder.
    """
    env_var = f"SM_CHANNEL_{name.upper()}"
    path = container_path(env_var, "input", "data", name)
    if path.is_dir():
        return path
    if os.environ.get(env_var):
        raise DataError(f"{env_var}={path} is not a folder")
    return None


@dataclass(frozen=True)
class ContainerPaths:
    """Where the contract puts the script's outputs."""

    model_dir: Path
    output_data_dir: Path
    failure_file: Path
    checkpoint_dir: Path
    input_config_dir: Path

    @classmethod
    def from_environment(cls) -> ContainerPaths:
        return cls(
            model_dir=container_path("SM_MODEL_DIR", "model"),
            output_data_dir=container_path("SM_OUTPUT_DATA_DIR", "output", "data"),
            failure_file=container_path("SM_OUTPUT_DIR", "output") / "failure",
            checkpoint_dir=_own_checkpoints(container_path(None, "checkpoints")),
            input_config_dir=container_path("SM_INPUT_CONFIG_DIR", "input", "config"),
        )


def _own_checkpoints(folder: Path) -> Path:
    """The trials of a tuning job (a sagebook sweep on SageMaker sets SAGEBOOK_SWEEP_ID) share
    one checkpoint prefix: each keeps its checkpoints in a folder named by its own job, so a
    trial never resumes another trial's model."""
    job = os.environ.get("TRAINING_JOB_NAME")
    if os.environ.get("SAGEBOOK_SWEEP_ID") and job:
        return folder / job
    return folder


# --- training config -------------------------------------------------------------------------


def load_training_config(paths: ContainerPaths) -> tuple[TrainingConfig, str]:
    """Read the options from the `config` channel, else hyperparameters.json, else defaults.

    Returns the validated config and a description of where it came from, for the log.
    """
    config_channel = channel_dir("config")
    if config_channel is not None:
        config_file = _single_yaml_file(config_channel)
        try:
            raw = yaml.safe_load(config_file.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"{config_file} is not valid YAML: {error}") from error
        return validate_training_config(raw, str(config_file)), str(config_file)

    hyperparameters_file = paths.input_config_dir / "hyperparameters.json"
    if hyperparameters_file.is_file():
        try:
            hyperparameters = json.loads(hyperparameters_file.read_text())
        except json.JSONDecodeError as error:
            raise ConfigError(f"{hyperparameters_file} is not valid JSON: {error}") from error
        if not isinstance(hyperparameters, dict):
            raise ConfigError(f"{hyperparameters_file} must hold a JSON object")
        raw = config_from_hyperparameters(hyperparameters)
        return validate_training_config(raw, str(hyperparameters_file)), str(hyperparameters_file)

    return TrainingConfig(), "defaults"


def _single_yaml_file(folder: Path) -> Path:
    """The config channel carries exactly one YAML file; any other count is ambiguous."""
    candidates = sorted(
        path for path in folder.iterdir() if path.is_file() and path.suffix in {".yaml", ".yml"}
    )
    if len(candidates) != 1:
        found = ", ".join(path.name for path in candidates) or "none"
        raise ConfigError(
            f"the config channel {folder} must hold exactly one .yaml file; found: {found}"
        )
    return candidates[0]


def config_from_hyperparameters(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """Turn SageMaker's flat hyperparameters into the nested mapping the schema expects.

    SageMaker delivers every value as a string; pydantic coerces them to the schema's types.
    Dotted keys (`data.train_file`) become nested sections. Keys starting with `sagemaker_`
    belong to the sagemaker-training toolkit, and `_tuning_…` ones (the objective metric) are
    what SageMaker adds to the trials of a tuning job: both are skipped. Values the SageMaker
    Python SDK JSON-encoded (`"\\"adam\\""`) are decoded.
    """
    nested: dict[str, Any] = {}
    for key, value in hyperparameters.items():
        if key.startswith(("sagemaker_", "_tuning_")):
            continue
        *sections, name = key.split(".")
        node = nested
        for section in sections:
            child = node.setdefault(section, {})
            if not isinstance(child, dict):
                raise ConfigError(f"hyperparameter {key!r} conflicts with {section!r}")
            node = child
        if isinstance(node.get(name), dict):
            raise ConfigError(f"hyperparameter {key!r} conflicts with '{key}.…'")
        node[name] = _json_string_or_raw(value)
    return nested


def _json_string_or_raw(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(decoded, str):
            return decoded
    return value


def validate_training_config(raw: Any, source: str) -> TrainingConfig:
    """Validate against the schema; errors name the source, the key path and a likely fix."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of options, got {type(raw).__name__}")
    try:
        return TrainingConfig.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(_describe_problem(problem) for problem in error.errors())
        raise ConfigError(f"invalid training config {source}: {problems}") from error


def _describe_problem(problem: Any) -> str:
    location = ".".join(str(part) for part in problem["loc"]) or "(top level)"
    if problem["type"] == "extra_forbidden":
        known = _known_keys(problem["loc"][:-1])
        nearest = difflib.get_close_matches(str(problem["loc"][-1]), known, n=1)
        hint = f" (did you mean {nearest[0]!r}?)" if nearest else ""
        return f"{location}: unknown option{hint}; valid options: {', '.join(known)}"
    given = repr(problem.get("input"))
    if len(given) > 60:
        given = given[:57] + "..."
    return f"{location}: {problem['msg']} (got {given})"


def _known_keys(section: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = TrainingConfig
    for part in section:
        field_info = model.model_fields.get(str(part))
        annotation = field_info.annotation if field_info else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


# --- data ------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """Numeric features and integer class labels read from one CSV file."""

    features: np.ndarray
    labels: np.ndarray
    columns: list[str]

    def subset(self, rows: np.ndarray) -> Dataset:
        return Dataset(self.features[rows], self.labels[rows], self.columns)


def read_csv(path: Path, target_column: str) -> Dataset:
    """Read a header + numeric rows CSV, naming the file, line and column of any bad cell."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if not header:
            raise DataError(f"{path} is empty; expected a header row")
        if target_column not in header:
            shown = ", ".join(header if len(header) <= 8 else [*header[:5], "…", *header[-3:]])
            raise DataError(f"{path}: target column {target_column!r} not found; columns: {shown}")
        rows: list[list[str]] = []
        line_numbers: list[int] = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path} line {reader.line_num}: {len(row)} fields, header has {len(header)}"
                )
            rows.append(row)
            line_numbers.append(reader.line_num)
    if not rows:
        raise DataError(f"{path} has a header but no data rows")

    try:
        table = np.array(rows, dtype=float)
    except ValueError:
        _raise_first_bad_cell(path, header, rows, line_numbers)
        raise
    if not np.isfinite(table).all():
        row_index, column_index = np.argwhere(~np.isfinite(table))[0]
        raise DataError(
            f"{path} line {line_numbers[row_index]}, column {header[column_index]!r}: "
            f"{rows[row_index][column_index]!r} is not a finite number"
        )

    target_index = header.index(target_column)
    labels = table[:, target_index]
    if not np.array_equal(labels, np.round(labels)):
        raise DataError(f"{path}: column {target_column!r} must hold whole-number class labels")
    return Dataset(
        features=np.delete(table, target_index, axis=1),
        labels=labels.astype(np.int64),
        columns=[name for name in header if name != target_column],
    )


def _raise_first_bad_cell(
    path: Path, header: list[str], rows: list[list[str]], line_numbers: list[int]
) -> None:
    for row, line_number in zip(rows, line_numbers, strict=True):
        for column, cell in zip(header, row, strict=True):
            try:
                float(cell)
            except ValueError:
                raise DataError(
                    f"{path} line {line_number}, column {column!r}: {cell!r} is not a number"
                ) from None


def channel_file(channel: Path, name: str) -> Path:
    """A file inside a channel folder; when it is missing, say what the channel does hold."""
    path = channel / name
    if not path.is_file():
        present = sorted(str(entry.relative_to(channel)) for entry in channel.rglob("*"))
        shown = ", ".join(present[:10]) + (", …" if len(present) > 10 else "")
        raise DataError(f"{name} not found in {channel}; it holds: {shown or 'nothing'}")
    return path


def load_datasets(config: TrainingConfig) -> tuple[Dataset, Dataset]:
    """Training and validation data: the validation channel if present, else a seeded split."""
    train_channel = channel_dir("train")
    if train_channel is None:
        expected = container_path("SM_CHANNEL_TRAIN", "input", "data", "train")
        raise DataError(f"no train channel: {expected} does not exist")
    train = read_csv(channel_file(train_channel, config.data.train_file), config.target_column)

    validation_channel = channel_dir("validation")
    if validation_channel is not None:
        validation = read_csv(
            channel_file(validation_channel, config.data.validation_file), config.target_column
        )
        if validation.columns != train.columns:
            raise DataError(
                f"{config.data.validation_file} and {config.data.train_file} have different "
                "feature columns"
            )
        return train, validation

    rows = len(train.labels)
    held_out = round(rows * config.data.validation_fraction)
    if not 0 < held_out < rows:
        raise DataError(
            f"{rows} training rows are too few to hold out "
            f"data.validation_fraction={config.data.validation_fraction}"
        )
    order = np.random.default_rng(config.seed).permutation(rows)
    return train.subset(order[held_out:]), train.subset(order[:held_out])


# --- training --------------------------------------------------------------------------------


@dataclass
class TrainState:
    """Everything a resumed run needs to continue exactly where this one stood."""

    epoch: int
    classifier: MLPClassifier
    rng_state: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)


class StopSignal:
    """Records SIGTERM so the loop stops between minibatches instead of mid-update."""

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received = True


def new_state(config: TrainingConfig) -> TrainState:
    classifier = MLPClassifier(
        hidden_layer_sizes=(config.hidden_units,) if config.hidden_units else (),
        solver=config.optimizer,
        learning_rate_init=config.learning_rate,
        alpha=config.alpha,
        batch_size=config.batch_size,
        shuffle=False,
        random_state=config.seed,
    )
    rng = np.random.default_rng(config.seed)
    return TrainState(epoch=0, classifier=classifier, rng_state=rng.bit_generator.state)


def save_checkpoint(state: TrainState, config: TrainingConfig, checkpoint_dir: Path) -> None:
    """Write atomically: SageMaker syncs this folder to S3 and a Spot stop can come any time."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "epoch": state.epoch,
        "classifier": state.classifier,
        "rng_state": state.rng_state,
        "history": state.history,
        "config": config.model_dump(),
    }
    _atomic_dump(payload, checkpoint_dir / CHECKPOINT_FILE)


def _atomic_dump(value: Any, target: Path) -> None:
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            joblib.dump(value, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(config: TrainingConfig, checkpoint_dir: Path) -> TrainState | None:
    """The saved state, if any; refuses one written with different options."""
    path = checkpoint_dir / CHECKPOINT_FILE
    if not path.is_file():
        return None
    payload = joblib.load(path)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path} has an unknown checkpoint format {payload.get('format')!r}")
    saved, current = payload["config"], config.model_dump()
    changed = [
        f"{key}: {saved.get(key)!r} in the checkpoint, {current[key]!r} now"
        for key in current
        if key not in RESUMABLE_CHANGES and saved.get(key) != current[key]
    ]
    if changed:
        raise ConfigError(
            f"{path} was written with other options ({'; '.join(changed)}); only epochs and "
            "checkpoint_every may change when resuming. Resume from a run with the same "
            "options, or start afresh (without resume_from)."
        )
    return TrainState(
        epoch=payload["epoch"],
        classifier=payload["classifier"],
        rng_state=payload["rng_state"],
        history=payload["history"],
    )


def evaluate(
    classifier: MLPClassifier, features: np.ndarray, labels: np.ndarray
) -> tuple[float, float]:
    """Cross-entropy (the loss the network minimises, without the L2 term) and accuracy."""
    probabilities = classifier.predict_proba(features)
    loss = log_loss(labels, probabilities, labels=classifier.classes_)
    predictions = classifier.classes_[np.argmax(probabilities, axis=1)]
    return float(loss), float(np.mean(predictions == labels))


def train(
    config: TrainingConfig, config_source: str, paths: ContainerPaths, stop: StopSignal
) -> int:
    """Run the epochs, log metrics, checkpoint, and write the model; returns the exit code."""
    cluster = Cluster.from_environment(paths.input_config_dir)
    train_data, validation = load_datasets(config)
    # Fitted on all training rows, so every host scales its inputs alike.
    scaler = StandardScaler().fit(train_data.features)
    classes = np.unique(np.concatenate([train_data.labels, validation.labels]))
    if cluster.size > 1:
        # Data parallel: each host trains on every size-th row; parameters are averaged
        # across hosts after every epoch, so all hosts hold the same model.
        train_data = train_data.subset(np.arange(cluster.rank, len(train_data.labels),
                                                 cluster.size))
    x_train = scaler.transform(train_data.features)
    x_validation = scaler.transform(validation.features)
    print(
        f"starting training: epochs={config.epochs} hidden_units={config.hidden_units} "
        f"optimizer={config.optimizer} batch_size={config.batch_size} "
        f"train_rows={len(x_train)} validation_rows={len(x_validation)} config={config_source}"
        + (f" host={cluster.hosts[cluster.rank]} of {cluster.size}" if cluster.size > 1 else ""),
        flush=True,
    )
    group = AllReduce(cluster)
    try:
        return _train_epochs(config, paths, stop, cluster, group, train_data, validation,
                             scaler, x_train, x_validation, classes)
    finally:
        group.close()


def _train_epochs(
    config: TrainingConfig, paths: ContainerPaths, stop: StopSignal, cluster: Cluster,
    group: AllReduce, train_data: Dataset, validation: Dataset, scaler: StandardScaler,
    x_train: np.ndarray, x_validation: np.ndarray, classes: np.ndarray,
) -> int:
    # Only the first host writes checkpoints and the model: the others hold the same
    # parameters, and SageMaker packs every host's model folder into one archive.
    writer = cluster.rank == 0

    state = load_checkpoint(config, paths.checkpoint_dir)
    if state is None:
        state = new_state(config)
    else:
        print(f"resuming from checkpoint at epoch {state.epoch}", flush=True)

    # Train a copy so that `state` keeps the last finished epoch intact for a SIGTERM.
    classifier = copy.deepcopy(state.classifier)
    rng = np.random.default_rng()
    rng.bit_generator.state = state.rng_state
    for epoch in range(state.epoch + 1, config.epochs + 1):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), config.batch_size):
            if stop.received:
                break
            batch = order[start : start + config.batch_size]
            # One call is one gradient step; the last batch of an epoch may be shorter.
            classifier.set_params(batch_size=len(batch))
            classifier.partial_fit(x_train[batch], train_data.labels[batch], classes=classes)
        classifier.set_params(batch_size=config.batch_size)
        if stop.received:
            break
        try:
            averaged = group.mean([*classifier.coefs_, *classifier.intercepts_])
        except PeerLost:
            if stop.received:  # the others were stopped too, and left first
                break
            raise
        layers = len(classifier.coefs_)
        classifier.coefs_, classifier.intercepts_ = averaged[:layers], averaged[layers:]
        train_loss, _ = evaluate(classifier, x_train, train_data.labels)
        val_loss, val_accuracy = evaluate(classifier, x_validation, validation.labels)
        print(
            f"epoch={epoch} train_loss={train_loss:.4f} val_loss={val_loss:.4f} "
            f"val_accuracy={val_accuracy:.4f}",
            flush=True,
        )
        state = TrainState(
            epoch=epoch,
            classifier=copy.deepcopy(classifier),
            rng_state=rng.bit_generator.state,
            history=[
                *state.history,
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "val_accuracy": val_accuracy,
                },
            ],
        )
        if writer and (epoch % config.checkpoint_every == 0 or epoch == config.epochs):
            save_checkpoint(state, config, paths.checkpoint_dir)

    if stop.received:
        # The state of the last finished epoch, not the half-trained one: the resumed run
        # then repeats the interrupted epoch exactly as an uninterrupted run would.
        if writer:
            save_checkpoint(state, config, paths.checkpoint_dir)
            print(f"received SIGTERM: checkpoint saved at epoch {state.epoch}", flush=True)
        else:
            print(f"received SIGTERM: stopped at epoch {state.epoch}", flush=True)
        return EXIT_STOPPED

    val_loss, val_accuracy = evaluate(state.classifier, x_validation, validation.labels)
    if writer:
        write_outputs(config, paths, state, scaler, x_validation, validation, val_loss,
                      val_accuracy)
    print(f"final val_accuracy={val_accuracy:.4f}", flush=True)
    return 0


def write_outputs(
    config: TrainingConfig,
    paths: ContainerPaths,
    state: TrainState,
    scaler: StandardScaler,
    x_validation: np.ndarray,
    validation: Dataset,
    val_loss: float,
    val_accuracy: float,
) -> None:
    """Model dir → model.tar.gz (what serving loads); output data dir → output.tar.gz."""
    paths.model_dir.mkdir(parents=True, exist_ok=True)
    model = Pipeline([("scale", scaler), ("classify", state.classifier)])
    _atomic_dump(model, paths.model_dir / "model.joblib")
    metrics = {
        "epochs": state.epoch,
        "val_loss": val_loss,
        "val_accuracy": val_accuracy,
        "feature_columns": validation.columns,
        "history": state.history,
    }
    (paths.model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (paths.model_dir / "training_config.json").write_text(
        json.dumps(config.model_dump(), indent=2) + "\n"
    )

    paths.output_data_dir.mkdir(parents=True, exist_ok=True)
    predictions = state.classifier.predict(x_validation)
    with (paths.output_data_dir / "predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["label", "prediction"])
        writer.writerows(zip(validation.labels.tolist(), predictions.tolist(), strict=True))


# --- entry point -----------------------------------------------------------------------------


def report_failure(failure_file: Path, error: BaseException) -> None:
    """SageMaker shows the first 1024 characters as FailureReason: lead with type and message."""
    details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    print(details, file=sys.stderr, end="", flush=True)
    try:
        failure_file.parent.mkdir(parents=True, exist_ok=True)
        failure_file.write_text(f"{type(error).__name__}: {error}\n\n{details}")
    except OSError as write_error:
        print(f"could not write {failure_file}: {write_error}", file=sys.stderr, flush=True)


def main() -> int:
    stop = StopSignal()
    signal.signal(signal.SIGTERM, stop)
    # sagebook's stall watchdog asks for the Python stacks with SIGUSR2 when py-spy cannot
    faulthandler.register(signal.SIGUSR2, all_threads=True)
    paths = ContainerPaths.from_environment()
    try:
        config, config_source = load_training_config(paths)
        return train(config, config_source, paths, stop)
    except Exception as error:
        report_failure(paths.failure_file, error)
        return 1


if __name__ == "__main__":
    sys.exit(main())
