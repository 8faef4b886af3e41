"""The sweep block: what to search, how, and within what budget — validated like the configs.

A sweep is a `sweep:` section of the job config or a file of its own (`--sweep FILE`, the same
keys at its top level):

    objective: {metric: val_accuracy, goal: maximize}    # a metric of metric_definitions
    strategy: random                                      # grid (value lists only), random,
                                                          # bayesian, hyperband
    parameters:                                           # override paths, as with -o
      training.learning_rate: {min: 0.001, max: 0.1, scale: log}
      training.optimizer: [adam, sgd]                     # a list: these values
      job.instance_type: [ml.m5.large, ml.c5.xlarge]
    max_trials: 8
    max_parallel: 2
    seed: 0

Every problem names the file, line and key, and a value is checked against the configs'
own schemas by loading the configs with it as an override: what a trial would run is what was
validated. Grid and random expand here, into trials (one set of overrides each); bayesian and
hyperband choose their trials as results come in (SageMaker's tuner, or locally an Optuna study).
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidatorFunctionWrapHandler,
    model_validator,
)

from .. import config as config_mod
from .. import config_files, inputs
from ..config import Duration, LaunchConfig
from ..config_files import KeyPath
from ..errors import ConfigError, format_problem

ADAPTIVE = ("bayesian", "hyperband")  # trials chosen as results come in, not listed ahead
FLOAT_TAG = "tag:yaml.org,2002:float"
DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # what any parser reads
RANDOM_DIGITS = 6  # random floats are rounded to this many significant digits: legible trials


class Objective(BaseModel):
    """The metric the sweep optimizes: one of the job's metric definitions."""

    model_config = ConfigDict(extra="forbid")
    metric: str = Field(min_length=1, description="A metric_definitions name")
    goal: Literal["minimize", "maximize"] = Field(description="Which way is better")


class Parameter(BaseModel):
    """One searched key: a list of values, or a numeric range (int or float, linear or log)."""

    model_config = ConfigDict(extra="forbid")
    values: list[Any] | None = Field(None, min_length=1, description="The values to try")
    min: float | None = Field(None, description="Smallest value of a range")
    max: float | None = Field(None, description="Largest value of a range")
    type: Literal["int", "float"] | None = Field(
        None, description="int or float (default: int when min and max are whole numbers)")
    scale: Literal["linear", "log"] = Field("linear", description="How a range is sampled")
    _written: tuple[str, str] | None = PrivateAttr(None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_bounds_as_written(cls, data: Any, handler: ValidatorFunctionWrapHandler
                                ) -> Parameter:
        """A float of 7+ significant digits or in exponent notation reaches SageMaker as the
        user wrote it: no formatting on the way may move the searched range."""
        parameter = handler(data)
        if isinstance(data, dict) and parameter.is_range:
            parameter._written = (_as_written(data["min"]), _as_written(data["max"]))
        return parameter

    @model_validator(mode="before")
    @classmethod
    def _keep_int_bounds(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type") is None and "values" not in data:
            ints = [isinstance(data.get(k), int) and not isinstance(data.get(k), bool)
                    for k in ("min", "max")]
            if all(ints):
                data = {**data, "type": "int"}
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> Parameter:
        ranged = self.min is not None or self.max is not None
        if self.values is not None and ranged:
            raise ValueError("give either values or min and max, not both")
        if self.values is None and not ranged:
            raise ValueError("give values (a list) or a range (min and max)")
        if self.values is not None:
            if self.type is not None or self.scale != "linear":
                raise ValueError("type and scale apply to ranges (min, max), not to values")
            if len({json.dumps(v, sort_keys=True) for v in self.values}) < len(self.values):
                raise ValueError("values must not repeat")
            return self
        if self.min is None or self.max is None:
            raise ValueError("a range needs both min and max")
        if not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError("min and max must be finite numbers")
        if self.min >= self.max:
            raise ValueError(f"min ({self.min!r}) must be less than max ({self.max!r})")
        if self.type == "int" and (self.min != int(self.min) or self.max != int(self.max)):
            raise ValueError("an int range needs whole-number min and max")
        if self.scale == "log" and self.min <= 0:
            raise ValueError("a log range needs min > 0")
        return self

    @property
    def is_range(self) -> bool:
        return self.values is None

    @property
    def kind(self) -> str:
        """categorical, int or float."""
        return "categorical" if self.values is not None else (self.type or "float")

    def bounds(self) -> tuple[str, str]:
        """A range's min and max as text, exactly as the sweep file holds them (a whole number
        for an int range): what SageMaker's MinValue and MaxValue get."""
        if self.min is None or self.max is None:
            raise ValueError("a list of values has no bounds")
        if self.kind == "int":
            return str(int(self.min)), str(int(self.max))
        return self._written or (repr(self.min), repr(self.max))


def _as_written(value: Any) -> str:
    """A bound as the file wrote it: a decimal written as text as is (YAML 1.1 reads `1e-7` as
    text), a number as the shortest text that reads back as the same number (`0.1234561`,
    `1e-07`). Text only Python reads as a number (`1_000`, `inf`) is sent as that number."""
    if isinstance(value, str) and DECIMAL.fullmatch(value.strip()):
        return value.strip()
    return repr(float(value)) if isinstance(value, str) else repr(value)


def _list_shorthand(value: Any) -> Any:
    return {"values": value} if isinstance(value, list) else value


class EarlyStopping(BaseModel):
    """The median rule: stop a trial whose objective at a step is worse than the median of the
    earlier trials at that step (SageMaker: TrainingJobEarlyStoppingType Auto)."""

    model_config = ConfigDict(extra="forbid")
    min_trials: int = Field(3, ge=1, description="Trials that must have reached a step first")
    min_steps: int = Field(1, ge=1, description="Steps a trial runs before it can be stopped")


def _early_stopping_shorthand(value: Any) -> Any:
    if value is True:
        return {}
    if value is False:
        return None
    return value


class StopWhen(BaseModel):
    """Completion criteria: end the sweep once the objective reaches `target`, or after
    `no_improvement` trials in a row that did not beat the best."""

    model_config = ConfigDict(extra="forbid")
    target: float | None = Field(None, description="Objective value that is good enough")
    no_improvement: int | None = Field(None, ge=1, description="Trials without a new best")


class WarmStart(BaseModel):
    """Start from what earlier sweeps learnt (SageMaker only)."""

    model_config = ConfigDict(extra="forbid")
    sweeps: list[str] = Field(min_length=1, description="Ids of earlier sweeps")
    type: Literal["identical_data_and_algorithm", "transfer_learning"] = Field(
        "identical_data_and_algorithm",
        description="identical_data_and_algorithm, or transfer_learning (data or ranges changed)")


class Hyperband(BaseModel):
    """Hyperband's resource bounds (in epochs of the objective metric)."""

    model_config = ConfigDict(extra="forbid")
    min_resource: int = Field(ge=1)
    max_resource: int = Field(ge=1)


class Sweep(BaseModel):
    """A sweep over override paths of the job and training configs."""

    model_config = ConfigDict(extra="forbid")
    objective: Objective
    strategy: Literal["grid", "random", "bayesian", "hyperband"] = Field(
        "grid", description="grid (value lists only), random, bayesian or hyperband")
    parameters: dict[str, Annotated[Parameter, BeforeValidator(_list_shorthand)]] = Field(
        min_length=1, description="Override path → values or range, e.g. training.epochs")
    max_trials: int | None = Field(None, ge=1, description="Trials to run (random: required)")
    max_parallel: int = Field(1, ge=1, description="Trials at once")
    seed: int | None = Field(None, ge=0, description="Random seed of the search")
    early_stopping: Annotated[EarlyStopping | None,
                              BeforeValidator(_early_stopping_shorthand)] = None
    stop_when: StopWhen | None = None
    warm_start: WarmStart | None = None
    max_runtime: Duration | None = Field(None, description="SageMaker: stop the whole sweep after")
    hyperband: Hyperband | None = None


@dataclass(frozen=True)
class SweepFile:
    """A validated sweep and where it came from (for messages and the sweep's record)."""

    sweep: Sweep
    path: Path
    text: str
    lines: dict[KeyPath, int]

    def where(self, *key: str | int) -> str:
        """`file:line` of `key`, else of the nearest key above it. A parameter's values are
        found under `values`, whether it wrote them so or as the list shorthand."""
        if key[:1] == ("parameters",) and key[2:3] == ("values",) and \
                ("parameters", *key[1:2], "values") not in self.lines:
            key = (*key[:2], *key[3:])
        for depth in range(len(key), -1, -1):
            if key[:depth] in self.lines:
                return f"{self.path}:{self.lines[key[:depth]]}"
        return f"{self.path}:1"


@dataclass(frozen=True)
class Trial:
    """One point of a grid or random search: its number and the overrides it adds."""

    index: int
    parameters: dict[str, Any]

    @property
    def overrides(self) -> list[str]:
        return [override(key, value) for key, value in self.parameters.items()]


def override(key: str, value: Any) -> str:
    """`key=value` as `-o` takes it: text as is, everything else as YAML reads it back."""
    return f"{key}={value if isinstance(value, str) else json.dumps(value)}"


# --------------------------------------------------------------------------------------------
# Loading


def read(job_path: str | os.PathLike[str], sweep_path: str | os.PathLike[str] | None = None,
         text: str | None = None) -> SweepFile:
    """The sweep of `--sweep FILE`, else the `sweep:` section of the job config; validated on
    its own (the configs are checked against it by `check`). `text`: the sweep file's content
    as a form's editor holds it, in place of the file's."""
    job_path = Path(job_path).expanduser().resolve()
    if sweep_path is not None:
        path = Path(sweep_path).expanduser().resolve()
        if text is None:
            data, lines = config_files.read_yaml(path)
            text = inputs.read_text(path)  # as read_yaml read it: within the same bounds
        else:
            data, lines = config_files.parse_yaml(text, path)
    else:
        path = job_path
        job, job_lines = config_files.read_yaml(job_path)
        config_mod.refuse_training_config(job, job_path)
        if "sweep" not in job:
            raise ConfigError.one(f"{job_path}:1", "sweep",
                                  "this job config has no sweep section; add one, or give a "
                                  "sweep file with --sweep FILE")
        data = job["sweep"]
        if not isinstance(data, dict):
            raise ConfigError.one(f"{job_path}:{job_lines[('sweep',)]}", "sweep",
                                  "expected a mapping (objective, strategy, parameters, …)")
        lines = {k[1:]: v for k, v in job_lines.items() if k[:1] == ("sweep",) and len(k) > 1}
        lines[()] = job_lines[("sweep",)]
        text = config_files.dump_yaml(data)
    source = text if sweep_path is not None else inputs.read_text(path)
    written = _with_bounds_as_written(data, source, path, () if sweep_path else ("sweep",))
    sweep = config_files.validate_model(Sweep, written, path, lines, {}, "sweep.")
    return SweepFile(sweep, path, text, lines)


def _with_bounds_as_written(data: dict[str, Any], source: str, path: Path,
                            at: tuple[str, ...]) -> dict[str, Any]:
    """`data` with each float bound of a range replaced by its text in the file (a copy):
    YAML reads `0.98765432109876543` as the nearest double, the tuning job must get the
    digits the user wrote (Parameter keeps the text of a bound given as text)."""
    node = inputs.parse_yaml(source, str(path))[1]  # within the bounds read_yaml kept
    for key in (*at, "parameters"):
        node = _child(node, key)
    if node is None or not isinstance(data.get("parameters"), dict):
        return data
    parameters = dict(data["parameters"])
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue
        name = key_node.value
        for bound in ("min", "max"):
            scalar = _child(value_node, bound)
            if isinstance(scalar, yaml.ScalarNode) and scalar.tag == FLOAT_TAG and \
                    isinstance(parameters.get(name), dict) and DECIMAL.fullmatch(scalar.value):
                parameters[name] = {**parameters[name], bound: scalar.value}
    return {**data, "parameters": parameters}


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key),
                None)


# --------------------------------------------------------------------------------------------
# Checking against the configs


def check(spec: SweepFile, job_path: str | os.PathLike[str], overrides: list[str],
          *, remote: bool) -> LaunchConfig:
    """Check the sweep against the configs it varies; return the base config (without trials).

    `remote`: the job runs on SageMaker (a tuning job), else locally.
    Raises ConfigError with every problem, each at its line of the sweep.
    """
    cfg = config_mod.load(job_path, overrides)
    sweep = spec.sweep
    problems = []

    def problem(key: KeyPath, message: str) -> None:
        problems.append(format_problem(spec.where(*key), "sweep." + ".".join(map(str, key)),
                                       message))

    for key, given in _swept_overrides(sweep, overrides):
        problem(("parameters", key), f"-o {given} would be lost: every trial sets {key} from "
                                     f"{spec.path.name}; drop the -o, or change the sweep's "
                                     "values")
    metrics = [m.name for m in cfg.job.metric_definitions]
    if sweep.objective.metric not in metrics:
        near = difflib.get_close_matches(sweep.objective.metric, metrics, n=1)
        hint = (f"did you mean '{near[0]}'?" if near else
                f"the job's metric_definitions name: {', '.join(metrics) or 'none'}")
        problem(("objective", "metric"), f"not a metric of the job; {hint}")
    if sweep.strategy == "grid":
        ranged = [k for k, p in sweep.parameters.items() if p.is_range]
        for key in ranged:
            problem(("parameters", key), "grid tries lists of values; a min/max range needs "
                                         "strategy random, bayesian or hyperband")
        size = math.prod(len(p.values or ()) for p in sweep.parameters.values())
        if not ranged and sweep.max_trials is not None and sweep.max_trials < size:
            problem(("max_trials",), f"the grid has {size} trials; max_trials {sweep.max_trials} "
                                     "would leave some out (remove it, or use strategy random)")
    elif sweep.max_trials is None:
        problem(("strategy",), f"{sweep.strategy} needs max_trials")
    if sweep.strategy == "hyperband":
        if sweep.early_stopping is not None:
            problem(("early_stopping",), "hyperband stops trials itself: remove early_stopping")
        if sweep.hyperband and sweep.hyperband.min_resource > sweep.hyperband.max_resource:
            problem(("hyperband", "min_resource"), "must not exceed max_resource")
    elif sweep.hyperband is not None:
        problem(("hyperband",), "applies only to strategy hyperband")
    if not remote and (sweep.early_stopping or sweep.strategy == "hyperband") and \
            str(cfg.job.experiments_uri).startswith("s3://"):
        problem(("early_stopping",) if sweep.early_stopping else ("strategy",),
                "a local sweep reads its trials' live metrics from their records: keep them "
                "in a local folder (experiments_uri)")
    if not remote:
        for name in ("warm_start", "max_runtime"):
            if getattr(sweep, name) is not None:
                problem((name,), "applies to SageMaker tuning jobs only")
    for key, parameter in sweep.parameters.items():
        problems += _check_parameter(spec, key, parameter, job_path, overrides, cfg, remote)
    if problems:
        raise ConfigError(problems)
    return cfg


def _swept_overrides(sweep: Sweep, overrides: list[str]) -> list[tuple[str, str]]:
    """(swept key, override) for each override a trial's own value would replace: one of the
    same key, or of a section holding it or a key inside it (a trial's overrides come last, so
    the later one wins, in part or whole)."""
    found = []
    for key in sweep.parameters:
        swept = key.split(".")
        for given in overrides:
            path = given.partition("=")[0].split(".")
            shorter = min(len(path), len(swept))
            if path[:shorter] == swept[:shorter]:
                found.append((key, given))
    return found


def _check_parameter(spec: SweepFile, key: str, parameter: Parameter, job_path: Any,
                     overrides: list[str], cfg: LaunchConfig, remote: bool) -> list[str]:
    """The key exists, and every value (each end of a range) passes the configs' validation."""
    where = spec.where("parameters", key)
    name = f"sweep.parameters.{key}"
    section, _, path = key.partition(".")
    if section not in ("training", "job") or not path:
        return [format_problem(where, name, "expected training.<key> or job.<key>, as with -o")]
    if section == "training":
        schema = config_mod.load_training_schema(cfg.job) if cfg.job.training_schema else None
        known = schema is None or config_files.has_key(schema, path)
        valid = config_files.keys_of(schema) if schema else []
    else:
        known = config_files.has_key(config_mod.JobConfig, path)
        valid = config_files.keys_of(config_mod.JobConfig)
        if remote and path != "instance_type":
            return [format_problem(where, name, "a SageMaker tuning job varies hyperparameters "
                                                "and job.instance_type only")]
        if path in ("experiment", "experiments_uri", "training_config"):
            return [format_problem(where, name, "every trial of a sweep shares its experiment "
                                                "and record store")]
    if not known:
        near = difflib.get_close_matches(path, valid, n=1, cutoff=0.6)
        hint = f"did you mean '{section}.{near[0]}'?" if near else "no such key"
        return [format_problem(where, name, f"the {section} config has no key {path!r}; {hint}")]
    if section == "training" and remote and isinstance(_value_at(cfg.training, path), dict):
        return [format_problem(where, name, "a hyperparameter must be a single value")]
    if parameter.values is not None:
        candidates = [(("values", i), v) for i, v in enumerate(parameter.values)]
    else:
        cast = int if parameter.kind == "int" else float
        candidates = [(("min",), cast(parameter.min)), (("max",), cast(parameter.max))]
    problems = []
    for sub, value in candidates:
        try:
            trial = config_mod.load(job_path, [*overrides, override(key, value)])
        except ConfigError as exc:
            for message in {getattr(p, "message", str(p)) for p in exc.problems}:
                problems.append(format_problem(spec.where("parameters", key, *sub), name,
                                               f"value {value!r}: {message}"))
            continue
        if remote != trial.job.is_cloud:
            problems.append(format_problem(
                spec.where("parameters", key, *sub), name,
                f"value {value!r}: every trial must run where the job runs "
                f"({cfg.job.instance_type})"))
    return problems


def _value_at(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


# --------------------------------------------------------------------------------------------
# Trials of a grid or random search


def trials(sweep: Sweep) -> list[Trial]:
    """Grid: every combination, in the order of the file. Random: `max_trials` draws, the same
    ones for the same seed."""
    keys = list(sweep.parameters)
    if sweep.strategy == "grid":
        grid = itertools.product(*(sweep.parameters[k].values or () for k in keys))
        return [Trial(i, dict(zip(keys, combo, strict=True))) for i, combo in enumerate(grid)]
    if sweep.strategy != "random":
        raise ValueError(f"{sweep.strategy} trials are chosen as results come in, not listed")
    rng = random.Random(sweep.seed)
    assert sweep.max_trials is not None
    return [Trial(i, {k: draw(sweep.parameters[k], rng) for k in keys})
            for i in range(sweep.max_trials)]


def draw(parameter: Parameter, rng: random.Random) -> Any:
    """A value of the parameter at random: one of its list, or in its range (on its scale)."""
    if parameter.values is not None:
        return rng.choice(parameter.values)
    low, high = float(parameter.min or 0), float(parameter.max or 0)
    if parameter.scale == "log":
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    if parameter.kind == "int":
        return min(int(high), max(int(low), round(value)))
    return legible(value, low, high)


def legible(value: float, low: float, high: float) -> float:
    """`value` in as few significant digits as keep it inside [low, high] (at least
    RANDOM_DIGITS): a trial's float reads as written, not as a double's 17 digits."""
    # a narrow range needs more digits: a thousand steps across it, each value inside it
    steps = math.floor(math.log10(max(abs(low), abs(high)))) - math.floor(math.log10(high - low))
    for digits in range(max(RANDOM_DIGITS, steps + 3), 18):
        shown = float(f"{value:.{digits}g}")
        if low <= shown <= high:
            return shown
    return value
