"""`instance_type: ml.*`: a SageMaker training job through boto3, followed from here.

Launch. `stage` hashes the local inputs the job ships (the code folder, local data folders)
without uploading them (a rerun reuses its parent's uploads); the request is then built with
their content-addressed URIs and `check` validates it against botocore's own SageMaker model;
`preflight` compares every bucket's and the image's region with the job's and pins the image
by digest (`preflight.py`); only then does `run` upload what the bucket lacks, copy the
checkpoints a run resumes from into its own prefix, and call CreateTrainingJob. Capacity (the
quotas before upload, fallback instance types, waiting for capacity) is `capacity.py`'s.

One job per run. The job name is derived from the run id. If CreateTrainingJob's answer is lost
and botocore retries it, SageMaker answers that the name exists: the job found under it
carries this run's tag, so the launch attaches to it instead of failing or making another.
If the launching process dies, `sagebook attach RUN` finds the job by its name (or, when the
launch died before creating it, creates it from the record's request).

Watch (`wait`). Polls DescribeTrainingJob and prints each phase of SecondaryStatusTransitions
with how long the previous one took; reads the CloudWatch log streams of every host and prints
their lines interleaved by time; each host's lines go through a LogSink, so metrics are
scraped as for local runs. Ctrl-C only detaches: the job runs on, and the message says how to
attach again or stop it. At the end the record is completed: status, billable seconds, final
metrics, model artifact; for a failure, SageMaker's FailureReason, what the exit code means and
the last lines of each host.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import socket
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .. import aws, prices
from .. import index as run_index
from .. import request as request_mod
from ..config import LaunchConfig
from ..errors import ConfigError, LaunchError
from ..inputs import DamagedFile, parse_yaml_text
from ..notify import from_record as notify_from_record
from ..notify import send as notify
from ..printing import terminal_text
from ..record import TERMINAL, Record, now, user
from ..stores import Store
from . import (
    Backend,
    Job,
    Outcome,
    Staged,
    capacity,
    contract,
    preflight,
    sagemaker_api,
    stall,
)
from .contract import STOP_GRACE_SECONDS
from .liveness import work_dir
from .logs import LogSink
from .sagemaker_api import describe, error_text, iso, lookup

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
FINISHED = ("Completed", "Failed", "Stopped")
LAST_LINES = 20
DEFAULT_POLL_SECONDS = 5.0
FLUSH_SECONDS = 60.0  # how often a long watch copies the logs so far into the record
GIVE_UP_SECONDS = 600.0  # unanswered status polls in a row before the watch gives up
_EXIT_CODE = re.compile(r"exit\s*code[\s:=]*(-?\d+)", re.IGNORECASE)


def poll_seconds() -> float:
    """How often a watch asks SageMaker and CloudWatch (SAGEBOOK_POLL_SECONDS, default 5)."""
    try:
        return max(0.01, float(os.environ.get("SAGEBOOK_POLL_SECONDS", DEFAULT_POLL_SECONDS)))
    except ValueError:
        return DEFAULT_POLL_SECONDS


class SageMakerBackend(Backend):
    def __init__(self) -> None:
        self._sagemaker: Any = None

    @classmethod
    def refresh(cls, store: Store, entries: list[dict[str, Any]], *,
                profile: str | None = None) -> int:
        return refresh_runs(store, entries, profile=profile)

    # ----------------------------------------------------------------------------------------
    # launch

    def stage(self, config: LaunchConfig, echo: Callable[[str], None],
              reuse: Mapping[str, dict[str, Any]] | None = None) -> Staged:
        job = config.job
        reused = [dict(entry) for name, entry in (reuse or {}).items() if name in job.channels]
        staged = Staged(channel_uris={e["channel"]: e["uri"] for e in reused}, reused=reused)
        local = {name: channel for name, channel in job.channels.items()
                 if not channel.uri.startswith("s3://") and name not in staged.channel_uris}
        if not local and not job.upload_code:
            return staged
        from . import uploads  # tarfile, hashing, threads: a launch of S3 inputs never loads it

        root = uploads.root_for(job, remote=True)
        if root is None:
            what = ", ".join([*(["the code (upload_code)"] if job.upload_code else []),
                              *(f"channel {name} ({c.uri})" for name, c in local.items())])
            raise ConfigError.one(
                "job.uploads_uri", None,
                f"{what} must be uploaded to S3 for SageMaker, and this config names no S3 "
                "location: set uploads_uri (or experiments_uri, or config_uri) to "
                "s3://bucket/prefix")
        if job.upload_code:
            plan = uploads.plan_code(Path(job.source_dir), root, work_dir("_code"))
            staged.code_uri = plan.uri
            staged.uploads.append(plan)
        for name, channel in local.items():
            plan = uploads.plan_data(name, Path(channel.uri), root)
            staged.channel_uris[name] = plan.uri
            staged.uploads.append(plan)
        uploads.save_digest_cache()
        return staged

    def check(self, job: Job) -> None:
        """SageMaker reads and writes S3 only: every location in the request must be there."""
        cfg = job.config
        problems = []
        for channel in job.request["InputDataConfig"]:
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            if uri.startswith("s3://"):
                continue
            if channel["ChannelName"] == request_mod.CONFIG_CHANNEL:
                key = "config_uri" if cfg.job.config_uri else "experiments_uri"
                problems.append(cfg.problem("job", (key,), (
                    f"the training config would be read from {uri}, but SageMaker reads its "
                    "`config` channel from S3: set experiments_uri to s3://bucket/prefix "
                    "(records in S3), or config_uri to s3://bucket/prefix (configs in S3, "
                    "records kept here)")))
            else:
                problems.append(cfg.problem("job", ("channels", channel["ChannelName"]),
                                            f"{uri} is not in S3"))
        output = job.request["OutputDataConfig"]["S3OutputPath"]
        if not output.startswith("s3://"):
            problems.append(cfg.problem("job", ("output_uri",), (
                f"SageMaker writes model.tar.gz to S3, not to {output}: set output_uri to "
                "s3://bucket/prefix (or keep records in S3)")))
        for key, field in (("checkpoint_uri", "CheckpointConfig"),
                           ("tensorboard_uri", "TensorBoardOutputConfig")):
            section = job.request.get(field) or {}
            uri = section.get("S3Uri") or section.get("S3OutputPath")
            if uri and not uri.startswith("s3://"):
                problems.append(cfg.problem("job", (key,), (
                    f"SageMaker syncs it with S3, not with {uri}: use s3://bucket/prefix")))
        problems += capacity.check_fallbacks(job, self._client(job).meta.region_name)
        if problems:
            raise ConfigError(problems)
        limit = job.config.job.max_cost
        if limit is not None:
            worst = prices.worst_case(job.request, self._client(job).meta.region_name)
            if worst["usd"] is None:
                raise ConfigError([job.config.problem("job", ("max_cost",), (
                    prices.describe_worst_case(worst) + ": cannot check max_cost"))])
            if worst["usd"] > limit:
                raise ConfigError([job.config.problem("job", ("max_cost",), (
                    f"{prices.describe_worst_case(worst)}, above max_cost ${limit:,.2f}: lower "
                    "max_runtime, max_wait, keep_alive or instance_count, or raise max_cost"))])

    def preflight(self, job: Job) -> dict[str, Any]:
        """The buckets' regions and the image's digest, asked at once: round trips that do not
        depend on each other. A region problem is reported before an image problem."""
        region = self._client(job).meta.region_name
        with ThreadPoolExecutor(max_workers=1) as pool:
            image = pool.submit(preflight.pin_image, job)
            preflight.check_regions(job, region)
            asked = capacity.precheck(job, self._client(job))
            return {"image": image.result(), **asked}

    def _client(self, job: Job) -> Any:
        if self._sagemaker is None:
            cfg = job.config.job
            self._sagemaker = aws.client("sagemaker", cfg.profile, cfg.region)
        return self._sagemaker

    def run(self, job: Job) -> Outcome:
        cfg = job.config.job
        sagemaker = self._client(job)
        record = job.record
        region = sagemaker.meta.region_name
        staged = job.staged or Staged()
        location = {"region": region, "profile": cfg.profile}
        if staged.uploads:  # the record lists them: `attach` can finish a launch dying here
            from . import uploads  # as in `stage`

            record.update(aws=location)
            uploads.upload(staged.uploads, cfg.store_options(), job.echo)
        if job.resume_from:
            from . import checkpoints  # only a launch that resumes from a checkpoint

            checkpoints.resume(job.resume_from, job.request["CheckpointConfig"]["S3Uri"],
                               cfg.store_options(), job.echo)
        return capacity.run_attempts(job, lambda request: self._attempt(job, request, location))

    def _attempt(self, job: Job, request: dict[str, Any], location: dict[str, Any]) -> Outcome:
        """Create one job for the run and follow it (or return once created)."""
        cfg, sagemaker, record = job.config.job, self._client(job), job.record
        region = location["region"]
        assert record is not None
        name = request["TrainingJobName"]
        interrupted = False
        try:
            arn = create_job(sagemaker, request, job.echo)
        except KeyboardInterrupt:
            # Interrupted during the call: the job may exist, and if it does it is this run's.
            existing = lookup(sagemaker, name)
            if existing is None:
                raise
            arn, interrupted = existing["TrainingJobArn"], True
        job.echo(f"[sagebook] SageMaker job {name} created: {console_url(region, name)}")
        if not job.wait and not interrupted:  # the launch writes this outcome right away
            job.echo(f"[sagebook] not waiting; follow it with: sagebook attach {record.uri}")
            return Outcome("InProgress", job_arn=arn,
                           details={"aws": location, "console_url": console_url(region, name)})
        _record_created(record, arn, region, aws=location)
        logs = aws.client("logs", cfg.profile, cfg.region)
        watch = Watch(sagemaker, logs, record, request, job.echo,
                      watchdog=stall.StallWatch.of(cfg), notify_to=(cfg.notify, cfg.notify_on))
        return watch.detach(None) if interrupted else watch.follow(wait=True)

    # ----------------------------------------------------------------------------------------
    # another process's run

    def attach(self, record: Record, *, wait: bool, echo: Callable[[str], None]) -> Outcome:
        request = json.loads(record.store.read_text(f"{record.prefix}/request.json"))
        name = request["TrainingJobName"]
        sagemaker, logs = _clients_for(record)
        job = lookup(sagemaker, name)
        if job is None:
            if record.manifest.get("job_arn"):
                raise LaunchError(
                    f"SageMaker has no job {name} in {sagemaker.meta.region_name}, though the "
                    f"record names {record.manifest['job_arn']}: check the AWS account and "
                    "region (the config's profile and region)")
            if record.status != "Starting":
                raise LaunchError(
                    f"run {record.run_id} ended ({record.status}) before its job was created: "
                    f"{record.manifest.get('failure_reason') or 'no reason recorded'}")
            _refuse_unless_launched_here(record)
            echo(f"[sagebook] run {record.run_id} has no job yet (its launch ended before "
                 "CreateTrainingJob): creating it from the record's request")
            _resume_uploads(record, echo)
            resumed = (record.manifest.get("checkpoints") or {}).get("resumed_from")
            if resumed:
                from . import checkpoints  # as in `launch`

                checkpoints.resume(resumed, request["CheckpointConfig"]["S3Uri"],
                                   _store_options(record), echo)
            arn = create_job(sagemaker, request, echo)
            _record_created(record, arn, sagemaker.meta.region_name)
        else:
            echo(f"[sagebook] attached to {name} ({job['TrainingJobStatus']}, "
                 f"{job.get('SecondaryStatus', '')}): "
                 f"{console_url(sagemaker.meta.region_name, name)}")
            if record.status != job["TrainingJobStatus"] and job["TrainingJobStatus"] not in \
                    FINISHED:
                record.set_status(job["TrainingJobStatus"], job_arn=job["TrainingJobArn"])
        recorded = record.manifest.get("watch") or {}
        watchdog = stall.StallWatch(recorded.get("stall_timeout"),
                                    recorded.get("stall_action", "stop"))
        return Watch(sagemaker, logs, record, request, echo, watchdog=watchdog,
                     notify_to=notify_from_record(record.manifest)).follow(wait=wait)

    def stop(self, record: Record, echo: Callable[[str], None]) -> Outcome:
        # botocore: loaded by the first AWS call
        from botocore.exceptions import BotoCoreError, ClientError

        name = record.manifest.get("job_name") or ""
        sagemaker, logs = _clients_for(record)
        job = lookup(sagemaker, name)
        if job is None:
            raise LaunchError(f"SageMaker has no job {name} in {sagemaker.meta.region_name}: "
                              "nothing to stop")
        status = job["TrainingJobStatus"]
        if status in FINISHED or status == "Stopping":
            echo(f"[sagebook] job {name} is already {status}")
            if status == "Stopping":
                return Outcome(status, job_arn=job["TrainingJobArn"])
            request = json.loads(record.store.read_text(f"{record.prefix}/request.json"))
            return Watch(sagemaker, logs, record, request, echo).follow(wait=False)
        try:
            sagemaker.stop_training_job(TrainingJobName=name)
        except (ClientError, BotoCoreError) as exc:
            raise LaunchError(f"StopTrainingJob {name}: {error_text(exc)}") from None
        echo(f"[sagebook] stop requested for {name}: SageMaker sends SIGTERM, then SIGKILL "
             f"{STOP_GRACE_SECONDS} s later; what the code saved by then (model, checkpoints) is "
             f"kept.\n[sagebook] follow it to the end: sagebook attach {record.uri}")
        return Outcome("Stopping", job_arn=job["TrainingJobArn"],
                       details={"stop_requested": now()})


def console_url(region: str, name: str) -> str:
    return (f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}"
            f"#/jobs/{name}")


def _record_created(record: Record, arn: str, region: str, **fields: Any) -> None:
    name = arn.rsplit("/", 1)[-1]
    record.set_status("InProgress", job_arn=arn, console_url=console_url(region, name),
                      **fields)


# --------------------------------------------------------------------------------------------
# SageMaker calls


def create_job(sagemaker: Any, request: dict[str, Any], echo: Callable[[str], None]) -> str:
    """CreateTrainingJob, once per run: a create that finds this run's job already there (a
    retry after a lost answer, a second process resuming the launch) attaches to it."""
    # botocore: loaded by the first AWS call
    from botocore.exceptions import BotoCoreError, ClientError

    name = request["TrainingJobName"]
    try:
        return sagemaker.create_training_job(**request)["TrainingJobArn"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceLimitExceeded":
            raise capacity.NoCapacity(f"CreateTrainingJob {name}: {error_text(exc)}") from None
        if not _already_exists(exc):
            raise LaunchError(f"CreateTrainingJob {name}: {error_text(exc)}") from None
        problem = None
    except BotoCoreError as exc:  # no answer even after retries: did the job get created?
        problem = exc
    existing = lookup(sagemaker, name)
    if existing is None:
        raise LaunchError(f"CreateTrainingJob {name}: {problem or 'the name is taken'}, yet "
                          "SageMaker shows no such job: launch again") from None
    run_id = _tag(request, "sagebook:run-id")
    found = _job_tag(sagemaker, existing["TrainingJobArn"], "sagebook:run-id")
    if run_id and found is not None and found != run_id:
        raise LaunchError(f"a SageMaker job named {name} exists and is not run {run_id}'s: "
                          "launch again for a new run id")
    echo(f"[sagebook] job {name} already exists (an earlier attempt of this launch created "
         "it): attaching to it")
    return existing["TrainingJobArn"]


def _already_exists(exc: Any) -> bool:
    error = exc.response.get("Error", {})
    message = str(error.get("Message", "")).lower()
    return error.get("Code") == "ResourceInUse" or (
        error.get("Code") == "ValidationException"
        and ("already exists" in message or "must be unique" in message))


def _tag(request: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in request.get("Tags", []) if t["Key"] == key), None)


def _job_tag(sagemaker: Any, arn: str, key: str) -> str | None:
    """The job's tag `key`, or None when the tags cannot be read (then the name decides: it
    holds the run id's random part, so a foreign job of that name is no practical worry)."""
    # botocore: loaded by the first AWS call
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = sagemaker.list_tags(ResourceArn=arn)
    except (ClientError, BotoCoreError):
        return None
    return next((t["Value"] for t in answer.get("Tags", []) if t["Key"] == key), None)


def _clients_for(record: Record) -> tuple[Any, Any]:
    """SageMaker and Logs clients where the run's job lives: the region recorded at launch
    (or in the job's ARN, or the job config's), and its profile when this machine has it."""
    settings = None if record.manifest.get("aws") else _store_options(record)
    region, profile = aws.job_location(record.manifest, settings)
    return aws.client("sagemaker", profile, region), aws.client("logs", profile, region)


def _refuse_unless_launched_here(record: Record) -> None:
    """Creating a dead launch's job finishes that launch: its uploads come from this machine's
    folders and the job from the record's request, with this reader's credentials. Only the
    user who launched it, on the machine it was launched from, may do that; anyone else's
    record (or one that claims to be theirs) is rerun instead, which says what will run."""
    launched_by = record.manifest.get("user"), record.manifest.get("host")
    if launched_by != (user(), socket.gethostname()):
        who, where = (terminal_text(part, one_line=True) for part in launched_by)
        raise LaunchError(
            f"run {record.run_id} has no job yet and was launched by {who} on {where}: only "
            f"they can finish its launch there; `sagebook rerun {record.experiment}/"
            f"{record.run_id}` runs it as yours, after saying what it runs")


def _resume_uploads(record: Record, echo: Callable[[str], None]) -> None:
    """Upload what a dead launch had not, from the same local sources, if they are unchanged."""
    planned = record.manifest.get("uploads") or []
    if not planned:
        return
    from . import uploads  # as in `stage`

    options = _store_options(record)
    items = []
    for entry in planned:
        if entry.get("reused_from"):
            continue  # a parent run's upload, complete before this run began
        root = entry["uri"].rstrip("/").rsplit("/", 2)[0]
        source = Path(entry["source"])
        if entry["kind"] == "code":
            plan = uploads.plan_code(source, root, work_dir("_code"))
        else:
            plan = uploads.plan_data(entry["channel"], source, root)
        if plan.uri != entry["uri"]:
            raise LaunchError(f"{source} changed since run {record.run_id} was launched, so its "
                              "job would not get what the record says: launch again instead")
        items.append(plan)
    uploads.upload(items, options, echo)


def _store_options(record: Record) -> dict[str, Any]:
    """The S3 options (KMS key, bucket owner, profile) of the job config as launched."""
    name = f"{record.prefix}/sagemaker_config.yaml"
    try:
        data = parse_yaml_text(record.store.read_text(name), record.store.url(name))
    except (FileNotFoundError, DamagedFile):
        return {}
    return aws.store_options(data) if isinstance(data, dict) else {}


# --------------------------------------------------------------------------------------------
# Watching a job


class Watch:
    """Follows one job: status and phases, the logs of every host, metrics; and completes the
    record when the job ends (or saves what it has when the watch is interrupted)."""

    def __init__(self, sagemaker: Any, logs: Any, record: Record, request: dict[str, Any],
                 echo: Callable[[str], None], poll: float | None = None,
                 watchdog: stall.StallWatch | None = None,
                 notify_to: tuple[list[str], list[str] | None] = ([], None)):
        self.sagemaker, self.logs, self.record, self.echo = sagemaker, logs, record, echo
        self.stall, self.notify_to = watchdog, notify_to
        self.name = request["TrainingJobName"]
        self.definitions = request["AlgorithmSpecification"].get("MetricDefinitions", [])
        self.many_hosts = request["ResourceConfig"].get("InstanceCount", 1) > 1
        self.poll = poll_seconds() if poll is None else poll
        local = record.local_path()
        self.spool = local if local is not None else work_dir(self.name) / "record"
        self.sinks: dict[str, LogSink] = {}
        self.tokens: dict[str, str | None] = {}
        self.phases_seen: list[tuple[str, str]] = []
        self.status: str | None = None
        self.last_flush = time.monotonic()
        self.logs_warned = False
        # Logs are read from the start of every stream: reset what an earlier watch spooled.
        for old in [*(self.spool / "logs").glob("*.log"), self.spool / "metrics.jsonl"]:
            old.unlink(missing_ok=True)

    def follow(self, wait: bool = True) -> Outcome:
        job: dict[str, Any] | None = None
        try:
            while True:
                job = self._describe()
                self._show_progress(job)
                self._read_logs()
                if wait and job["TrainingJobStatus"] == "InProgress":
                    self._watch_stall(job)
                if job["TrainingJobStatus"] in FINISHED:
                    time.sleep(min(self.poll, 2.0))  # CloudWatch lags the status a little
                    self._read_logs()
                    return self._finish(job)
                if not wait:
                    self._save()
                    return self._outcome(job)
                if time.monotonic() - self.last_flush > FLUSH_SECONDS:
                    self._save(close=False)
                time.sleep(self.poll)
        except KeyboardInterrupt:
            return self.detach(job)
        finally:
            for sink in self.sinks.values():
                sink.close()

    def _watch_stall(self, job: dict[str, Any]) -> None:
        """The stall watchdog from the log streams: its clock runs while the job trains (the
        phases before print nothing); a stall is marked, told, and stopped (StopTrainingJob)
        with stall_action stop. The stacks of a job's processes cannot be read from here."""
        if self.stall is None or self.stall.timeout is None:
            return
        if job.get("SecondaryStatus") != "Training":
            self.stall.begin()
            return
        if not self.stall.due(max((s.last_output or 0.0 for s in self.sinks.values()),
                                  default=None)):
            return
        self.echo(f"[sagebook] {self.stall.reason} in the job's log streams")
        self.stall.mark(self.record)
        notify(self.record, "stall", *self.notify_to)
        if self.stall.action != "stop":
            return
        # botocore: loaded by the first AWS call
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.sagemaker.stop_training_job(TrainingJobName=self.name)
        except (ClientError, BotoCoreError) as exc:
            self.echo(f"[sagebook] StopTrainingJob {self.name}: {error_text(exc)}")
            self.record.update(stall_stop_error=error_text(exc))
            return
        self.stall.stopped = True
        self.echo(f"[sagebook] stop requested for {self.name} (stall_action: stop)")

    # status ---------------------------------------------------------------------------------

    def _describe(self) -> dict[str, Any]:
        # botocore: loaded by the first AWS call
        from botocore.exceptions import BotoCoreError, ClientError

        failing_since = None
        while True:
            try:
                job = describe(self.sagemaker, self.name)
            except (ClientError, BotoCoreError) as exc:
                if failing_since is None:
                    failing_since = time.monotonic()
                    self.echo(f"[sagebook] cannot reach SageMaker ({error_text(exc)}); "
                              f"trying again for up to {GIVE_UP_SECONDS / 60:.0f} minutes")
                elif time.monotonic() - failing_since > GIVE_UP_SECONDS:
                    raise LaunchError(
                        f"no answer from SageMaker for {GIVE_UP_SECONDS / 60:.0f} minutes "
                        f"({error_text(exc)}); the job runs on: sagebook attach "
                        f"{self.record.uri}") from None
                time.sleep(max(self.poll, 1.0))
                continue
            if failing_since is not None:
                self.echo("[sagebook] SageMaker answers again")
            if job is None:
                raise LaunchError(f"SageMaker has no job {self.name}")
            return job

    def _show_progress(self, job: dict[str, Any]) -> None:
        status = job["TrainingJobStatus"]
        if status != self.status:
            if self.status is not None:
                self.echo(f"[sagebook] job {self.name}: {status}")
            self.status = status
        transitions = job.get("SecondaryStatusTransitions") or []
        changed = False
        for index, phase in enumerate(transitions):
            seen = (phase.get("Status", ""), phase.get("StatusMessage", ""))
            if index < len(self.phases_seen) and self.phases_seen[index] == seen:
                continue
            note = ""
            if index and index == len(self.phases_seen):
                took = _seconds(transitions[index - 1])
                if took is not None:
                    note = f" ({transitions[index - 1]['Status']} took {_duration(took)})"
            when = _clock(phase.get("StartTime"))
            self.echo(f"[sagebook] {when}{seen[0]}: {seen[1]}{note}".rstrip(": "))
            if index < len(self.phases_seen):
                self.phases_seen[index] = seen
            else:
                self.phases_seen.append(seen)
            changed = True
        if changed and status not in FINISHED:
            self.record.update(secondary_status=job.get("SecondaryStatus"),
                               phases=_phases(transitions))

    # logs -----------------------------------------------------------------------------------

    def _read_logs(self) -> None:
        """New events of every host's stream, printed in time order across hosts."""
        # botocore: loaded by the first AWS call
        from botocore.exceptions import BotoCoreError, ClientError

        events: list[tuple[int, str, str]] = []
        try:
            for stream in self._streams():
                host = _host(stream, self.name)
                token = self.tokens.get(stream)
                while True:
                    options: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream,
                                               "startFromHead": True}
                    if token:
                        options["nextToken"] = token
                    answer = self.logs.get_log_events(**options)
                    batch = answer.get("events", [])
                    events += [(e["timestamp"], host, e["message"]) for e in batch]
                    following = answer.get("nextForwardToken")
                    done = not batch or following == token
                    token = following
                    if done:
                        break
                self.tokens[stream] = token
        except (ClientError, BotoCoreError) as exc:
            if not self.logs_warned:
                self.echo(f"[sagebook] cannot read the job's logs yet ({error_text(exc)})")
                self.logs_warned = True
        events.sort(key=lambda event: event[0])  # stable: one host's order is kept
        for stamp, host, message in events:
            self._sink(host).line(message, stamp / 1000)

    def _streams(self) -> list[str]:
        from botocore.exceptions import ClientError  # botocore: loaded by the first AWS call

        names: list[str] = []
        options: dict[str, Any] = {"logGroupName": LOG_GROUP,
                                   "logStreamNamePrefix": f"{self.name}/"}
        try:
            while True:
                answer = self.logs.describe_log_streams(**options)
                names += [s["logStreamName"] for s in answer.get("logStreams", [])]
                if not answer.get("nextToken"):
                    return sorted(names)
                options["nextToken"] = answer["nextToken"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return []  # no job has logged in this region yet
            raise

    def _sink(self, host: str) -> LogSink:
        if host not in self.sinks:
            echo = (lambda text, prefix=f"[{host}] ": self.echo(prefix + text)) \
                if self.many_hosts else self.echo
            self.sinks[host] = LogSink(self.spool / "logs" / f"{host}.log",
                                       self.spool / "metrics.jsonl", self.definitions,
                                       echo, host=host)
        return self.sinks[host]

    def _save(self, close: bool = True) -> None:
        """Copy the logs and metrics so far into the record (when it is not this folder)."""
        if close:
            for sink in self.sinks.values():
                sink.close()
        self.last_flush = time.monotonic()
        if self.record.local_path() is not None:
            return
        for host in sorted(self.sinks):
            self.record.put_file(f"logs/{host}.log", self.spool / "logs" / f"{host}.log")
        if (self.spool / "metrics.jsonl").exists():
            self.record.put_file("metrics.jsonl", self.spool / "metrics.jsonl")

    # ends -----------------------------------------------------------------------------------

    def _outcome(self, job: dict[str, Any]) -> Outcome:
        outcome = Outcome(job["TrainingJobStatus"], job_arn=job.get("TrainingJobArn"))
        outcome.details["secondary_status"] = job.get("SecondaryStatus")
        transitions = job.get("SecondaryStatusTransitions") or []
        if transitions:
            outcome.details["phases"] = _phases(transitions)
        return outcome

    def _finish(self, job: dict[str, Any]) -> Outcome:
        self._save()
        outcome = self._outcome(job)
        status = outcome.status
        scraped: dict[str, float] = {}
        for host in sorted(self.sinks, reverse=True):  # algo-1's values win
            scraped.update(self.sinks[host].last)
        outcome.final_metrics = {**scraped, **sagemaker_api.final_metrics(job)}
        for key, field in (("billable_seconds", "BillableTimeInSeconds"),
                           ("training_seconds", "TrainingTimeInSeconds")):
            if job.get(field) is not None:
                outcome.details[key] = job[field]
        cost = prices.job_cost(job, self.sagemaker.meta.region_name)
        if cost:
            outcome.details["cost"] = cost
        artifact = (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
        if artifact and status in ("Completed", "Stopped"):
            outcome.model_artifact = artifact
        if status == "Failed" or job.get("FailureReason"):
            self._explain_failure(job, outcome)
        if status == "Stopped" and self.stall is not None and self.stall.stopped:
            outcome.failure_reason = self.stall.reason
            outcome.details["secondary_status"] = stall.STALLED
        phases = outcome.details.get("phases") or []
        if phases:
            self.echo("[sagebook] phases: " + " · ".join(
                f"{p['status']} {_duration(p['seconds'])}" for p in phases
                if p.get("seconds") is not None))
        if "billable_seconds" in outcome.details:
            self.echo(f"[sagebook] billable time: {_duration(outcome.details['billable_seconds'])}"
                      + (f", cost ${cost['usd']:,.2f}" if cost else ""))
        self.echo(f"[sagebook] job {self.name}: {status}")
        return outcome

    def _explain_failure(self, job: dict[str, Any], outcome: Outcome) -> None:
        reason = job.get("FailureReason") or f"the job {outcome.status.lower()} with no reason"
        outcome.failure_reason = reason[:1024]
        lines = [f"FailureReason: {reason}"]
        match = _EXIT_CODE.search(reason)
        if match:
            outcome.exit_code = int(match.group(1))
            meaning = contract.explain_exit(outcome.exit_code)
            outcome.details["exit_meaning"] = meaning
            lines.append(meaning)
        for host in sorted(self.sinks):
            tail = _tail(self.spool / "logs" / f"{host}.log", LAST_LINES)
            if tail:
                lines += ["", f"last lines of {host}:", *(f"  {line}" for line in tail)]
        text = "\n".join(lines) + "\n"
        self.record.put_text("failure.txt", text)
        for line in text.rstrip().splitlines():
            self.echo(f"[sagebook] {line}")

    def detach(self, job: dict[str, Any] | None) -> Outcome:
        """Stop watching, never the job: save what was read and say how to come back."""
        self._save()
        outcome = self._outcome(job) if job else Outcome("InProgress")
        if outcome.status in FINISHED:  # it ended as we left: say so rather than detach
            outcome.status = "InProgress"
        outcome.detached = True
        self.echo(f"\n[sagebook] detached from {self.name}: the job keeps running.\n"
                  f"[sagebook] follow it again: sagebook attach {self.record.uri}\n"
                  f"[sagebook] stop it:         sagebook stop {self.record.uri}")
        return outcome


def _host(stream: str, job_name: str) -> str:
    """`<job>/algo-2-1700000000` → `algo-2`."""
    name = stream[len(job_name) + 1:] if stream.startswith(f"{job_name}/") else stream
    head, _, tail = name.rpartition("-")
    return head if head and tail.isdigit() else name


def _seconds(phase: dict[str, Any]) -> float | None:
    start, end = phase.get("StartTime"), phase.get("EndTime")
    if isinstance(start, _dt.datetime) and isinstance(end, _dt.datetime):
        return max(0.0, (end - start).total_seconds())
    return None


def _phases(transitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{
        "status": phase.get("Status"),
        "message": phase.get("StatusMessage"),
        "start": iso(phase.get("StartTime"), "seconds"),
        "end": iso(phase.get("EndTime"), "seconds"),
        "seconds": _seconds(phase),
    } for phase in transitions]


def _clock(value: Any) -> str:
    if isinstance(value, _dt.datetime):
        return value.astimezone().strftime("%H:%M:%S ")
    return ""


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _tail(path: Path, count: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-count:]
    except OSError:
        return []


# --------------------------------------------------------------------------------------------
# Refreshing what `sagebook list` shows

SEARCH_SLACK = _dt.timedelta(hours=1)  # clock skew between a laptop and SageMaker


def refresh_runs(store: Store, entries: list[dict[str, Any]], *,
                 profile: str | None = None) -> int:
    """Ask SageMaker how unfinished runs stand, in batches; write changes back to their
    records and into `entries`. Returns how many runs changed.

    One Search per experiment and region (never a describe call per run): jobs carry the
    `sagebook:experiment` tag, and a creation-time floor keeps the answer to the jobs that can
    matter. `profile` (the store's) wins over the profile each run was launched with.
    """
    groups: dict[tuple[str | None, str | None, str], list[dict[str, Any]]] = {}
    for entry in entries:
        region, run_profile = aws.job_location(entry)
        groups.setdefault((region, profile or run_profile, entry["experiment"]), []).append(entry)
    changed = 0
    clients: dict[tuple[str | None, str | None], Any] = {}
    for (region, run_profile, experiment), group in groups.items():
        if (region, run_profile) not in clients:
            clients[region, run_profile] = aws.client("sagemaker", run_profile, region)
        oldest = min(_created(e) for e in group)
        jobs = _search_jobs(clients[region, run_profile], experiment, oldest - SEARCH_SLACK,
                            {e["job_name"] for e in group})
        for entry in group:
            job = jobs.get(entry["job_name"])
            if job is not None and _write_back(store, entry, job):
                changed += 1
    return changed


def _created(entry: dict[str, Any]) -> _dt.datetime:
    try:
        created = _dt.datetime.fromisoformat(str(entry.get("created")))
    except ValueError:
        return _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return created if created.tzinfo else created.replace(tzinfo=_dt.timezone.utc)


def _search_jobs(sagemaker: Any, experiment: str, since: _dt.datetime, wanted: set[str]
                 ) -> dict[str, dict[str, Any]]:
    jobs = sagemaker_api.search_training_jobs(sagemaker, [
        {"Name": "Tags.sagebook:experiment", "Operator": "Equals", "Value": experiment},
        {"Name": "CreationTime", "Operator": "GreaterThanOrEqualTo",
         "Value": since.strftime("%Y-%m-%dT%H:%M:%SZ")},
    ], about=f"for the status of {experiment}'s runs", wanted=wanted)
    return {job["TrainingJobName"]: job for job in jobs if job.get("TrainingJobName") in wanted}


def _write_back(store: Store, entry: dict[str, Any], job: dict[str, Any]) -> bool:
    status = job.get("TrainingJobStatus")
    if not status or status == entry.get("status"):
        return False
    record = Record.open(store, entry["experiment"], entry["run_id"])
    if record.status in TERMINAL:  # the launch process got there first
        entry.update(run_index.summarize(record.manifest))
        return False
    sagemaker_api.write_back(record, job, aws.job_location(entry)[0])
    entry.clear()
    entry.update(run_index.summarize(record.manifest))
    return True
