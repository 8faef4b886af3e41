"""The backends (layer 3): one way of running a training job each, chosen by its instance type.

Which backend runs an instance type is the instance-kind registry's to say (kinds.py). Each
backend takes the same request and record and returns an Outcome. Backends are imported on
first use, so a local run never loads boto3's SageMaker model and `--help` loads nothing.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError, LaunchError
from ..kinds import describe_kinds, kind_of

if TYPE_CHECKING:
    from ..config import LaunchConfig
    from ..record import Record
    from ..stores import Store


@dataclass
class Job:
    """Everything a backend needs for one run."""

    config: LaunchConfig
    request: dict[str, Any]
    # None while the launch is planned and checked (`check`, `preflight`): the record is
    # created only once every check has passed, and `run` always has it.
    record: Record | None = None
    echo: Callable[[str], None] = print
    pdb: bool = False
    wait: bool = True
    staged: Staged | None = None
    resume_from: str | None = None  # checkpoints copied into the run's own prefix first
    interrupt_after: float | None = None  # seconds of training before a rehearsed interruption


@dataclass
class Staged:
    """Local inputs a backend ships with the job, hashed but not yet uploaded.

    Their content-addressed URIs go into the request (so it can be validated, and recorded,
    before anything is uploaded); `run` uploads what is missing.
    """

    code_uri: str | None = None
    channel_uris: dict[str, str] = field(default_factory=dict)
    uploads: list[Any] = field(default_factory=list)
    # uploads of a parent run that a rerun sends again, as the parent's record describes them
    reused: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> list[dict[str, Any]]:
        """What the record keeps: the content address of everything the job ships."""
        return [u.describe() for u in self.uploads] + self.reused


@dataclass
class Outcome:
    """How a run ended (or, for a cloud job not waited on, how it stands)."""

    status: str
    failure_reason: str | None = None
    exit_code: int | None = None
    model_artifact: str | None = None
    output_artifact: str | None = None
    job_arn: str | None = None
    final_metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    detached: bool = False  # the watch was interrupted; the job itself runs on
    interrupted: bool = False  # Ctrl-C or SIGTERM to the launcher stopped the run
    from_record: bool = False  # read from the record, which its launcher writes: nothing to write


class Backend(ABC):
    """One way of running a training job."""

    # Whether `--interrupt-after` can rehearse a spot interruption here: only where sagebook
    # runs the training processes itself (see interruption.py).
    rehearses_interruptions: ClassVar[bool] = False

    def stage(self, config: LaunchConfig, echo: Callable[[str], None],
              reuse: Mapping[str, dict[str, Any]] | None = None) -> Staged:
        """Hash (never upload) the local inputs this backend ships; runs before the request
        is built. `reuse` maps channels to a parent run's uploads, sent again as they are.
        Backends that read local paths directly ship nothing."""
        return Staged()

    def check(self, job: Job) -> None:  # noqa: B027 - optional hook
        """Validate what this backend needs before the record is created; raise ConfigError."""

    def preflight(self, job: Job) -> dict[str, Any]:
        """Ask AWS what only it knows, before the record exists (reads only): whether every
        bucket and the image are in the job's region, the image's digest. Returns what the
        record keeps: `image` (`uri`, `digest`, `tag`), whose `uri` the job runs when it is the
        tag pinned to its digest."""
        return {}

    @abstractmethod
    def run(self, job: Job) -> Outcome:
        """Run the job; on Ctrl-C stop it (or detach from it) and return how it stands."""

    def attach(self, record: Record, *, wait: bool, echo: Callable[[str], None]) -> Outcome:
        """Follow a run started by another (or a dead) process, where its backend can."""
        raise LaunchError(f"run {record.run_id} ran on {record.manifest.get('instance_type')}: "
                          "only SageMaker jobs outlive the process that launched them")

    @classmethod
    def refresh(cls, store: Store, entries: list[dict[str, Any]], *,
                profile: str | None = None) -> int:
        """Bring unfinished runs' records up to date with where they run, writing changes back
        to the records and into `entries` (index summaries); returns how many changed. Only a
        backend whose runs outlive their launcher has anyone to ask."""
        return 0

    def stop(self, record: Record, echo: Callable[[str], None]) -> Outcome:
        """Ask a remote job to stop; local runs stop with Ctrl-C in their own terminal."""
        raise LaunchError(f"run {record.run_id} ran on {record.manifest.get('instance_type')}: "
                          "stop it with Ctrl-C where it runs")


def backend_class(instance_type: str) -> type[Backend] | None:
    kind = kind_of(instance_type)
    if kind is None:
        return None
    module_name, _, class_name = kind.backend.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def backend_for(instance_type: str) -> Backend:
    cls = backend_class(instance_type)
    if cls is None:
        raise ConfigError.one("job.instance_type", None,
                              f"no backend runs {instance_type!r}: use {describe_kinds()}")
    return cls()


def refresh(store: Store, entries: list[dict[str, Any]], *, profile: str | None = None) -> int:
    """Hand each unfinished run (an index summary) to its backend's `refresh`, in one batch per
    backend; returns how many runs changed."""
    groups: dict[type[Backend], list[dict[str, Any]]] = {}
    for entry in entries:
        cls = backend_class(str(entry.get("instance_type") or ""))
        if cls is not None:
            groups.setdefault(cls, []).append(entry)
    return sum(cls.refresh(store, group, profile=profile) for cls, group in groups.items())
