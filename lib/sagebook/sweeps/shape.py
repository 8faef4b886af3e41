"""What a sweep.json must look like to be read: the fields sagebook reads, with their types.

A sweep record is read from a shared store, so it may hold anything: `trials: null`, a trial
that is a string, a status that is a number, numbers written as strings. The model is strict
(no "5" for 5, no true for 1) and allows fields it does not know, so a record written by a
newer sagebook still reads. `record.check_manifest` is its only caller: the names in a record
(experiment, sweep id, run ids) are checked there, against the patterns of `inputs`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..printing import terminal_text


class _Shape(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class Objective(_Shape):
    metric: str
    goal: Literal["minimize", "maximize"]


class ConfigFiles(_Shape):
    """The configs a local sweep's trials run, which `--resume` loads again."""

    job_file: str
    overrides: list[str]
    sweep_file: str | None = None


class TuningJob(_Shape):
    name: str
    status: str | None = None
    arn: str | None = None


class Location(_Shape):
    region: str | None = None
    profile: str | None = None


class StatusChange(_Shape):
    status: str
    time: str


class Trial(_Shape):
    trial: int = Field(ge=0)
    parameters: dict[str, Any]
    status: str
    overrides: list[str] | None = None
    run_id: str | None = None
    earlier_runs: list[str] = []
    record_uri: str | None = None
    objective: float | None = None
    cost: float | None = None
    digests: dict[str, Any] | None = None
    early_stopped: bool = False
    linked: bool = False
    failure_reason: str | None = None
    ended: str | None = None
    cpus: list[int] = []
    gpus: list[str] = []


class Best(_Shape):
    trial: int
    run_id: str | None = None
    objective: float | None = None
    parameters: dict[str, Any] = {}


class SweepManifest(_Shape):
    """sweep.json: the fields of `SweepRecord.create`, `control.start` and `tuning.start`."""

    sweep_id: str
    experiment: str
    status: str
    status_history: list[StatusChange] = []
    backend: Literal["local", "sagemaker"]
    objective: Objective
    parameters: list[str] = []
    strategy: str | None = None
    instance_type: str | None = None
    max_parallel: int | None = Field(None, ge=1)
    config: ConfigFiles | None = None
    tuning_job: TuningJob | None = None
    aws: Location | None = None
    trials: list[Trial] = []
    best: Best | None = None
    counts: dict[str, int] = {}
    spend_usd: float | None = None
    pid: int | None = None
    host: str | None = None
    user: str | None = None
    created: str | None = None
    updated: str | None = None
    ended: str | None = None
    record_uri: str | None = None
    launched_via: str | None = None
    failure_reason: str | None = None

    @model_validator(mode="after")
    def _what_its_backend_reads(self) -> SweepManifest:
        """A local sweep's resume loads its configs and each trial's overrides; a SageMaker
        sweep's refresh asks for its tuning job by name and knows its trials by their runs."""
        if self.backend == "local":
            if self.config is None:
                raise ValueError("config: missing (a local sweep names its configs)")
            for number, trial in enumerate(self.trials):
                if trial.overrides is None:
                    raise ValueError(f"trials[{number}].overrides: missing (a local sweep's "
                                     "trial names its overrides)")
            return self
        if self.tuning_job is None:
            raise ValueError("tuning_job: missing (a SageMaker sweep names its tuning job)")
        for number, trial in enumerate(self.trials):
            if trial.run_id is None:
                raise ValueError(f"trials[{number}].run_id: missing (a SageMaker sweep's trial "
                                 "is its training job's run)")
        return self


def problem(data: Any) -> str | None:
    """The first thing wrong with `data` as a sweep.json, `key: what` in words; None when
    nothing is."""
    # pydantic: only for a command that reads a sweep (not `list`)
    from pydantic import ValidationError

    try:
        SweepManifest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        key = terminal_text("".join(f"[{part}]" if isinstance(part, int) else f".{part}"
                                    for part in error["loc"]).lstrip("."), one_line=True)
        message = error["msg"]
        if error["type"] == "missing":
            message = "missing"
        elif error["type"] == "value_error":  # the backend's own rule says its key
            return message.removeprefix("Value error, ")
        return f"{key}: {message}" if key else message
    return None
