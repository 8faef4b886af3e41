"""The launch flow: config files → validated config → request → backend → record.

The CLI, the launch notebook and the form all call `launch()`; they differ only in how they
show progress and errors. `plan()` is its first half, everything up to the first write or
upload; `sagebook launch --dry-run` runs exactly that, so its verdict is the launch's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import aws, notify
from . import config as config_mod
from . import request as request_mod
from .backends import Backend, Job, Outcome, Staged, backend_for, checkpoints, interruption
from .errors import ArgumentError, ConfigError, SagebookError, StoreError
from .record import TERMINAL, Record, git_state, job_name, new_run_id, user
from .runs.lookup import find_run, read_optional
from .secrets import redact
from .stores import Store, StoreExistsError, open_store


class RunFailed(SagebookError):
    """The job ran and failed (or was stopped): the record says why."""

    def __init__(self, run: Run):
        self.run = run
        # the training code's own text (output/failure): masked as in the record
        reason = redact(run.outcome.failure_reason or run.outcome.status)
        super().__init__(f"run {run.record.run_id} {run.outcome.status.lower()}: {reason}\n"
                         f"record: {run.record.uri}")


@dataclass
class Run:
    """A launched run: its record and how it ended (or stands)."""

    record: Record
    outcome: Outcome

    @property
    def uri(self) -> str:
        return self.record.uri

    @property
    def ok(self) -> bool:
        return self.outcome.status in ("Completed", "InProgress")

    @property
    def detached(self) -> bool:
        """The watch was interrupted while the (cloud) job runs on."""
        return self.outcome.detached

    @property
    def interrupted(self) -> bool:
        """Ctrl-C or SIGTERM to this process stopped the run (not its limit, not a failure)."""
        return self.outcome.interrupted

    def next_step(self) -> str | None:
        """For an interrupted run, the command that takes it up again: a cloud job that runs
        on is followed again; a stopped run is rerun, from its checkpoints when it kept any."""
        if self.detached:
            return f"sagebook attach {shlex.quote(self.record.uri)}   follows it again"
        if not self.interrupted:
            return None
        if self.record.manifest.get("checkpoints"):
            return (f"sagebook rerun {shlex.quote(self.record.uri)} --resume   goes on from "
                    "its checkpoints")
        return f"sagebook rerun {shlex.quote(self.record.uri)}   runs it again"

    def summary(self) -> str:
        lines = [f"run:    {self.record.run_id} ({self.outcome.status})",
                 f"job:    {self.record.manifest.get('job_name')}"]
        if self.outcome.final_metrics:
            metrics = ", ".join(f"{k}={v:g}" for k, v in self.outcome.final_metrics.items())
            lines.append(f"metrics: {metrics}")
        if self.outcome.failure_reason:
            lines.append(f"failure: {self.outcome.failure_reason.splitlines()[0]}")
        if self.outcome.model_artifact:
            lines.append(f"model:  {self.outcome.model_artifact}")
        billable = self.outcome.details.get("billable_seconds")
        if billable is not None:
            lines.append(f"billed: {billable} s")
        lines.append(f"record: {self.record.uri}")
        step = self.next_step()
        if step:
            lines.append(f"interrupted; next: {step}")
        return redact("\n".join(lines))  # it quotes the training code's failure text


@dataclass(frozen=True)
class Recorded:
    """What a rerun takes from its parent's record instead of from today's files: the code
    package (unpacked), the uploads of local data channels, the image as it ran, and the git
    state of that code."""

    code_dir: Path | None = None
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    image_uri: str | None = None
    git: dict[str, Any] | None = None


def prepare(
    config_path: str | os.PathLike[str], overrides: Iterable[str] = (), *,
    code_dir: Path | None = None,
) -> config_mod.LaunchConfig:
    """Load and validate everything a launch reads; raises ConfigError before any side effect."""
    return config_mod.load(config_path, overrides, code_dir=code_dir)


@dataclass
class LaunchPlan:
    """A launch decided and checked, before anything is written, uploaded or started."""

    config: config_mod.LaunchConfig
    backend: Backend
    store: Store
    git: dict[str, Any]
    staged: Staged
    identity: request_mod.RunIdentity
    request: dict[str, Any]
    resume: dict[str, str] | None = None  # the checkpoints it starts from (resume_from)

    def renamed(self) -> LaunchPlan:
        """The same plan under a new run id (when another launch took this one)."""
        identity = dataclasses.replace(
            _identity(self.config, self.store, new_run_id(), self.git, self.staged),
            image_uri=self.identity.image_uri)
        return self._with(identity)

    def pinned(self, image_uri: str) -> LaunchPlan:
        """The same plan running the image by the digest its tag resolved to."""
        return self._with(dataclasses.replace(self.identity, image_uri=image_uri))

    def _with(self, identity: request_mod.RunIdentity) -> LaunchPlan:
        return dataclasses.replace(self, identity=identity,
                                   request=request_mod.build(self.config, identity))


def plan(
    config_path: str | os.PathLike[str],
    overrides: Iterable[str] = (),
    *,
    echo: Callable[[str], None] = print,
    recorded: Recorded | None = None,
    interrupt_after: float | None = None,
) -> LaunchPlan:
    """Validate the configs, choose the run's names and build the request, and check it against
    the service model and the backend: every problem is found here, before any side effect.
    Local inputs are hashed (not uploaded) so the request names their content-addressed URIs."""
    recorded = recorded or Recorded()
    try:
        cfg = prepare(config_path, overrides, code_dir=recorded.code_dir)
    except ConfigError as exc:
        if exc.unchecked is None:
            raise
        try:  # the job config is valid: its request's problems belong to the same round
            check_request(exc.unchecked)
        except ConfigError as more:
            raise ConfigError.merged([exc, more]) from None
        raise
    job_cfg = cfg.job
    store = open_store(job_cfg.experiments_uri or "experiments", **job_cfg.store_options())
    backend, git, staged = stage(cfg, echo, recorded)
    identity = dataclasses.replace(_identity(cfg, store, new_run_id(), git, staged),
                                   image_uri=recorded.image_uri)
    request = request_mod.build(cfg, identity)
    errors: list[ConfigError] = []
    try:
        resume = resume_source(cfg, store)
    except ConfigError as exc:
        errors.append(exc)
        resume = None
    job = Job(cfg, request, staged=staged, resume_from=resume["uri"] if resume else None,
              interrupt_after=interrupt_after)
    for check in (backend.check, lambda job: request_mod.check(cfg, job.request),
                  lambda job: interruption.check(job, backend),
                  lambda job: notify.check(job.config)):
        try:
            check(job)
        except ConfigError as exc:
            errors.append(exc)
    if errors:
        raise ConfigError.merged(errors)
    return LaunchPlan(cfg, backend, store, git, staged, identity, request, resume)


def stage(cfg: config_mod.LaunchConfig, echo: Callable[[str], None],
          recorded: Recorded | None = None) -> tuple[Backend, dict[str, Any], Staged]:
    """The backend that runs `cfg`, the git state of the code it sends and its local inputs
    hashed, not uploaded (a parent's, for a rerun): what the request is built from."""
    recorded = recorded or Recorded()
    backend = backend_for(cfg.job.instance_type)
    git = recorded.git if recorded.code_dir and recorded.git else git_state(cfg.source_dir)
    return backend, git, backend.stage(cfg, echo, reuse=recorded.channels)


def preflight(backend: Backend, job: Job) -> tuple[dict[str, Any], str | None]:
    """Ask AWS, once and after the plan (the dry run does not ask), what only it knows: the
    regions of buckets and image, and the image tag's digest, none of which depends on the run
    id. Returns what the record keeps, and the image URI pinned to its digest when the request
    does not run that yet. No AWS credentials at all is said first, as `doctor` says it."""
    if job.config.job.uses_aws:
        aws.require_credentials(job.config.job.profile)
    asked = backend.preflight(job)
    pinned = (asked.get("image") or {}).get("uri")
    if pinned == job.request["AlgorithmSpecification"].get("TrainingImage"):
        pinned = None
    return asked, pinned


def check_request(cfg: config_mod.LaunchConfig) -> None:
    """The request of a launch from `cfg` checked against the service model, without hashing
    local inputs or asking AWS: the form's check as the user types (names as a launch would
    choose them; local inputs stand in for their uploads). Raises ConfigError."""
    store = open_store(cfg.job.experiments_uri or "experiments", **cfg.job.store_options())
    identity = _identity(cfg, store, new_run_id(), {}, Staged())
    request_mod.check(cfg, request_mod.build(cfg, identity))


def _identity(cfg: config_mod.LaunchConfig, store: Store, run_id: str, git: dict[str, Any],
              staged: Staged) -> request_mod.RunIdentity:
    return request_mod.RunIdentity(
        run_id=run_id,
        job_name=job_name(cfg.job.experiment, run_id),
        record_uri=store.url(f"{cfg.job.experiment}/{run_id}"),
        config_uri=_config_uri(cfg, store, run_id),
        user=user(),
        git_commit=git.get("commit"),
        code_uri=staged.code_uri,
        channel_uris=staged.channel_uris,
    )


def launch(
    config_path: str | os.PathLike[str],
    overrides: Iterable[str] = (),
    *,
    via: str = "cli",
    pdb: bool = False,
    wait: bool | None = None,
    echo: Callable[[str], None] = print,
    on_record: Callable[[Record], None] | None = None,
    extra_manifest: dict[str, Any] | None = None,
    recorded: Recorded | None = None,
    interrupt_after: float | None = None,
) -> Run:
    """Launch one run and return it once the backend is done (or, for cloud jobs, submitted).

    Nothing is written before the configs and the request validate (`plan`). From the moment
    the record exists, every exit path leaves it with an honest status. `recorded` (a rerun)
    sends a parent's code, data and image instead of today's. `interrupt_after` (seconds of
    training, local backends) rehearses a spot interruption (see backends/interruption.py).
    """
    if pdb and interrupt_after is not None:
        raise ArgumentError.one("--interrupt-after", None, "--pdb gives the training process "
                              "this terminal: rehearse an interruption without it")
    planned = plan(config_path, overrides, echo=echo, recorded=recorded,
                   interrupt_after=interrupt_after)
    cfg, backend, git = planned.config, planned.backend, planned.git
    job_cfg = cfg.job
    resume, staged = planned.resume, planned.staged
    job = Job(cfg, planned.request, echo=echo, pdb=pdb,
              wait=job_cfg.wait if wait is None else wait, staged=staged,
              resume_from=resume["uri"] if resume else None, interrupt_after=interrupt_after)
    asked, pinned = preflight(backend, job)
    if pinned:
        planned = planned.pinned(pinned)
        job.request = planned.request
        backend.check(job)
        request_mod.check(cfg, job.request)
    for _ in range(3):
        identity, request = planned.identity, planned.request
        manifest = {
            "job_name": identity.job_name,
            "backend": type(backend).__name__,
            "instance_type": job_cfg.instance_type,
            "launched_via": via,
            "config": {
                "job_file": str(cfg.job_path),
                "training_file": str(cfg.training_path),
                "overrides": list(cfg.overrides),
                "digest": cfg.digest(),
            },
            "git": {k: v for k, v in git.items() if k != "diff"},
            "image_uri": job_cfg.image_uri,
            "tags": dict(job_cfg.tags),
            **_checkpoints_entry(request, resume),
            "params": request_mod.parameters(cfg.training),
            **({"uploads": staged.describe()} if staged.describe() else {}),
            **asked,
            **notify.recorded(job_cfg),
            **(extra_manifest or {}),
        }
        try:
            record = Record.create(planned.store, job_cfg.experiment, identity.run_id, manifest,
                                   publish=False)
            break
        except StoreExistsError:
            planned = planned.renamed()
    else:
        raise StoreExistsError(f"no free run id in {planned.store.url(job_cfg.experiment)}")

    job.record, job.request = record, request
    echo(f"[sagebook] run {identity.run_id}: record at {record.uri}")
    if on_record:
        on_record(record)
    try:
        _write_launch_files(record, cfg, request, git, identity)  # and publishes the run
        outcome = backend.run(job)
    except BaseException as exc:
        if record.manifest.get("job_arn") and record.status not in TERMINAL:
            # A cloud job, once created, runs on whatever happens to this process: its record
            # keeps the job's status, and `sagebook attach` completes it.
            record.update(watch_error=f"sagebook: {type(exc).__name__}: {exc}")
            raise
        status = "Stopped" if isinstance(exc, KeyboardInterrupt) else "Failed"
        _complete(record, status, failure_reason=f"sagebook: {type(exc).__name__}: {exc}")
        notify.send_end(record, job_cfg.notify, job_cfg.notify_on)
        raise
    _complete(record, outcome.status, **_outcome_fields(outcome))
    notify.send_end(record, job_cfg.notify, job_cfg.notify_on)
    return Run(record, outcome)


class RecordIncomplete(StoreError):
    """The run ended but its record could not say so: the store is full or out of reach."""

    def __init__(self, record: Record, status: str, cause: str | None, error: StoreError):
        where = (f"its logs, metrics and final manifest are kept in {record.local_copy}"
                 if record.local_copy else "nothing of it could be kept locally")
        super().__init__(
            f"run {record.run_id} {status.lower()}{f' ({cause})' if cause else ''}, but its "
            f"record could not be completed: {error}; {where}; `sagebook sync "
            f"{record.experiment}/{record.run_id} --store {record.store.uri}` writes them "
            "once the store can be written again")


def _complete(record: Record, status: str, **fields: Any) -> None:
    try:
        record.set_status(status, **fields)
    except StoreError as exc:
        raise RecordIncomplete(record, status, fields.get("failure_reason"), exc) from None


def attach(record: Record, *, wait: bool = True, echo: Callable[[str], None] = print) -> Run:
    """Follow a run that another process launched (or one that died), completing its record;
    a run whose launch died before creating its job gets it created now, never twice."""
    backend = backend_for(record.manifest.get("instance_type", ""))
    outcome = backend.attach(record, wait=wait, echo=echo)
    if not outcome.from_record:
        record.set_status(outcome.status, **_outcome_fields(outcome))
        notify.send_end(record, *notify.from_record(record.manifest))
    return Run(record, outcome)


def stop(record: Record, *, wait: bool = False, echo: Callable[[str], None] = print) -> Run:
    """Ask a run's job to stop (SageMaker: StopTrainingJob); with `wait`, follow it to the end."""
    backend = backend_for(record.manifest.get("instance_type", ""))
    outcome = backend.stop(record, echo)
    if not outcome.from_record:
        record.set_status(outcome.status, **_outcome_fields(outcome))
    if wait and outcome.status not in TERMINAL:
        return attach(record, wait=True, echo=echo)
    return Run(record, outcome)


def _write_launch_files(record: Record, cfg: config_mod.LaunchConfig, request: dict[str, Any],
                        git: dict[str, Any], identity: request_mod.RunIdentity) -> None:
    """The configs as launched, the request and the diff, written side by side with the run's
    summary in the index: to S3 each write is a round trip, and they do not depend on each
    other."""
    writes: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
        (record.publish, ()),
        (record.put_text, ("sagemaker_config.yaml", cfg.job_yaml())),
        (record.put_text, ("config/training_config.yaml", cfg.training_yaml())),
        (record.put_text, ("request.json", _json(request))),
    ]
    if cfg.job.config_uri:
        config_store = open_store(identity.config_uri, **cfg.job.store_options())
        writes.append((config_store.write_text, ("training_config.yaml", cfg.training_yaml())))
    if git.get("diff"):
        writes.append((record.put_text, ("git.diff", git["diff"])))
    pool = ThreadPoolExecutor(max_workers=len(writes))
    try:
        for future in [pool.submit(write, *args) for write, args in writes]:
            future.result()  # the first failure, as if written one after another
    finally:
        # not waited for: Ctrl-C or SIGTERM during a write held by S3 ends the launch now,
        # instead of after the write's timeout (the writes left behind end with the process)
        pool.shutdown(wait=False, cancel_futures=True)


def resume_source(cfg: config_mod.LaunchConfig, store: Any) -> dict[str, str] | None:
    """Where the checkpoints named by `resume_from` are: the location itself, or the run's
    own checkpoint prefix as its request recorded it. Reads only; the checkpoints must exist,
    since a run asked to resume that silently starts afresh would waste the whole job."""
    ref = cfg.job.resume_from
    if not ref:
        return None
    where = cfg.where("resume_from")
    source: dict[str, str] = {}
    if config_mod.names_location(ref):
        source["uri"] = ref if ref.startswith("s3://") else Path(ref).as_uri()
    else:
        try:
            parent = find_run(store, ref)
        except SagebookError as exc:
            raise ConfigError.one(where, "job.resume_from", str(exc)) from None
        text = read_optional(parent, "request.json")
        uri = (json.loads(text).get("CheckpointConfig") or {}).get("S3Uri") if text else None
        if not uri:
            raise ConfigError.one(where, "job.resume_from",
                                  f"run {parent.experiment}/{parent.run_id} kept no checkpoints "
                                  "(its job config had no checkpoint_uri)")
        source = {"uri": uri, "run": f"{parent.experiment}/{parent.run_id}"}
    try:
        found = next(iter(checkpoints.store_at(source["uri"], cfg.job.store_options()).list()),
                     None)
    except SagebookError as exc:
        raise ConfigError.one(where, "job.resume_from", f"cannot list {source['uri']}: {exc}") \
            from None
    if found is None:
        raise ConfigError.one(where, "job.resume_from", f"no checkpoints at {source['uri']}")
    return source


def _checkpoints_entry(request: dict[str, Any], resume: dict[str, str] | None
                       ) -> dict[str, Any]:
    """What the record says of the run's checkpoints: its own prefix, and what it resumed."""
    own = (request.get("CheckpointConfig") or {}).get("S3Uri")
    if not own:
        return {}
    entry: dict[str, Any] = {"uri": own}
    if resume:
        entry["resumed_from"] = resume["uri"]
        if resume.get("run"):
            entry["resumed_from_run"] = resume["run"]
    return {"checkpoints": entry}


def _config_uri(cfg: config_mod.LaunchConfig, store: Any, run_id: str) -> str:
    """The training config channel: the run's own record, unless the config says elsewhere."""
    if cfg.job.config_uri:
        return f"{cfg.job.config_uri.rstrip('/')}/{cfg.job.experiment}/{run_id}"
    return store.url(f"{cfg.job.experiment}/{run_id}/config")


def _outcome_fields(outcome: Outcome) -> dict[str, Any]:
    fields = {
        "exit_code": outcome.exit_code,
        "failure_reason": outcome.failure_reason,
        "model_artifact": outcome.model_artifact,
        "output_artifact": outcome.output_artifact,
        "job_arn": outcome.job_arn,
        "final_metrics": outcome.final_metrics,
        **outcome.details,
    }
    return {k: v for k, v in fields.items() if v not in (None, {}, [])}


def _json(data: Any) -> str:
    return json.dumps(data, indent=2) + "\n"

