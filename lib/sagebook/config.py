"""Load, override and validate the two configs of a launch: the job config and the training config.

Everything a launch reads from the user passes through `load()`, and nothing is uploaded or
started before it returns: a typo in a hyperparameter must fail here, on the laptop, with the
file, line and key, not fifteen minutes into a cloud job.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import re
import stat
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from . import aws, inputs, project
from .apicheck import allowed_values, not_listed
from .config_files import (
    KeyPath,
    apply_overrides,
    dotted_key,
    dump_yaml,
    key_location,
    keys_of,
    read_yaml,
    split_overrides,
    validate_model,
)
from .errors import ConfigError, Problem, format_problem
from .kinds import describe_kinds, is_remote, kind_of
from .secrets import SECRET_REFERENCE, inline_secret, redact, token_kind

# --------------------------------------------------------------------------------------------
# Field types

_DURATION = re.compile(
    r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m(?!s))?(?:(?P<s>\d+)s?)?$"
)


def parse_duration(value: Any) -> int:
    """Seconds from `5400`, `"90m"`, `"2h"`, `"1h30m"`, `"45s"` or `"1d"`."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90m, 2h or 3600 (seconds)")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and (match := _DURATION.match(value.replace(" ", ""))) and value:
        parts = {k: int(v) for k, v in match.groupdict(default="0").items()}
        seconds = parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    else:
        raise ValueError(f"expected a duration such as 90m, 2h or 3600 (seconds), got {value!r}")
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


def duration_text(seconds: int) -> str:
    """`5400` → `1h30m`: how a person writes the durations that `parse_duration` reads."""
    if seconds <= 0:
        return str(seconds)
    text = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text += f"{seconds // size}{unit}"
            seconds %= size
    return text + (f"{seconds}s" if seconds else "")


Duration = Annotated[int, BeforeValidator(parse_duration)]

_BUCKET = r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]"
S3_URI = re.compile(rf"^s3://{_BUCKET}(/.*)?$")
KMS_KEY = re.compile(
    r"^(arn:aws[a-z\-]*:kms:[a-z0-9\-]+:\d{12}:(key|alias)/.+|alias/.+|[0-9a-f\-]{36})$"
)
RUN_ID_PLACEHOLDER = "{run_id}"


def _location(value: Any) -> Any:
    """A data or record location: `s3://bucket/prefix` or a local path (no other scheme)."""
    if isinstance(value, str) and "://" in value and not S3_URI.match(value):
        raise ValueError(
            f"expected s3://bucket/prefix (bucket: 3-63 lowercase letters, digits, dots, "
            f"hyphens) or a local path, got {value!r}"
        )
    return value


Location = Annotated[str, BeforeValidator(_location)]


class Channel(BaseModel):
    """One input data channel: where the data is and how SageMaker hands it to the container."""

    model_config = ConfigDict(extra="forbid")
    uri: Location = Field(description="s3://bucket/prefix (or object), or a local folder")
    input_mode: Literal["File", "FastFile", "Pipe"] = Field(
        "File", description="File copies before start; FastFile streams on read; Pipe is a FIFO"
    )
    distribution: Literal["FullyReplicated", "ShardedByS3Key"] = Field(
        "FullyReplicated", description="Every host gets all data, or a shard of the objects"
    )
    content_type: str | None = Field(None, description="MIME type passed to the container")


def _channel_shorthand(value: Any) -> Any:
    return {"uri": value} if isinstance(value, str) else value


class MetricDefinition(BaseModel):
    """A metric scraped from log lines; the first capture group of `regex` is the value.
    The regex must run on RE2, as the launcher scrapes it (see inputs.metric_pattern)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    regex: str

    @model_validator(mode="after")
    def _regex_compiles(self) -> MetricDefinition:
        try:
            groups = inputs.metric_pattern(self.regex).groups
        except ValueError as exc:
            raise ValueError(f"regex does not compile: {exc}") from None
        if groups < 1:
            raise ValueError("regex needs a capture group around the value")
        return self


class MlflowSettings(BaseModel):
    """Where SageMaker logs the job's metrics in MLflow (the request's MlflowConfig)."""

    model_config = ConfigDict(extra="forbid")
    arn: str = Field(description="The MLflow tracking server's (or app's) ARN, "
                                 "arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME")
    experiment: str | None = Field(None, description="MLflow experiment (default: the "
                                                     "job's experiment)")
    run_name: str | None = Field(None, description="MLflow run name (default: the job name)")


class JobConfig(BaseModel):
    """The SageMaker job: where data, code, image, outputs and records live, and on what it runs."""

    model_config = ConfigDict(extra="forbid")

    experiment: str = Field(
        pattern=r"^[a-zA-Z0-9](-?[a-zA-Z0-9])*$",
        max_length=40,
        description="Groups runs in the record store; letters, digits and single hyphens",
    )
    training_config: str = Field(description="Path of the training config (YAML)")
    source_dir: str = Field("../sagemaker_container", description="Folder of the training code")
    entry_point: str = Field("train.py", description="Script in source_dir that trains")
    training_schema: str | None = Field(
        "schema.py:TrainingConfig",
        description="FILE:CLASS in source_dir: the pydantic model the training config must fit",
    )
    image_uri: str | None = Field(None, description="ECR image (required for ml.* and Docker)")
    role_arn: str | None = Field(None, description="Execution role (required for ml.*)")
    instance_type: str = Field(
        description="local, local-docker, local-gpu, or a SageMaker type such as ml.m5.xlarge"
    )
    instance_count: int = Field(1, ge=1, le=100, description="Number of hosts")
    volume_size_gb: int = Field(30, ge=1, le=16384, description="EBS volume per host")
    volume_kms_key: str | None = Field(None, description="KMS key for the volume")
    max_runtime: Duration = Field(3600, le=28 * 86400, description="Stop after (e.g. 90m, 2h)")
    spot: bool = Field(False, description="Managed spot training")
    max_wait: Duration | None = Field(
        None, le=28 * 86400, description="Spot: give up after waiting this long (>= max_runtime)"
    )
    checkpoint_uri: Location | None = Field(
        None, description="Where runs keep checkpoints: each run syncs its own prefix, "
                          "<checkpoint_uri>/<run id> (or {run_id} expanded), with "
                          "checkpoint_local_path; required for spot"
    )
    resume_from: Location | None = Field(
        None, description="Start from these checkpoints, copied into the run's own prefix "
                          "first: a run (its id, or experiment/run_id) or a location "
                          "(s3://… or a folder: /…, ./…, ../…, ~/…); needs checkpoint_uri"
    )
    checkpoint_local_path: str = Field("/opt/ml/checkpoints", description="Inside the container")
    keep_alive: Duration | None = Field(
        None, description="Warm pool: keep the instance this long after the job"
    )
    environment: dict[str, str] = Field(default_factory=dict, description="Container environment")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags on the training job")
    mlflow: MlflowSettings | None = Field(
        None, description="SageMaker logs the job to this MLflow tracking server (arn, "
                          "experiment, run_name); `sagebook export mlflow` copies records there")
    max_cost: float | None = Field(
        None, gt=0, description="Refuse a SageMaker launch whose worst case (max_runtime, or "
                                "max_wait for spot, plus keep_alive, × instances × on-demand "
                                "price) is above this many USD")
    metric_definitions: list[MetricDefinition] = Field(
        default_factory=list, description="Metrics scraped from the logs"
    )
    channels: dict[str, Annotated[Channel, BeforeValidator(_channel_shorthand)]] = Field(
        default_factory=dict, description="Input data channels by name"
    )
    config_uri: Location | None = Field(
        None, description="Where training configs are uploaded (default: the run's record)"
    )
    output_uri: Location | None = Field(
        None, description="Where model.tar.gz and output.tar.gz go (default: the run's record)"
    )
    output_kms_key: str | None = Field(None, description="KMS key for the outputs")
    experiments_uri: Location | None = Field(
        None, description="Record store: a folder or s3://bucket/prefix (default ./experiments)"
    )
    s3_kms_key: str | None = Field(
        None, description="SSE-KMS key for what sagebook uploads (records, configs, code, data)"
    )
    expected_bucket_owner: str | None = Field(
        None, pattern=r"^\d{12}$",
        description="Account id that must own the buckets sagebook reads and writes",
    )
    region: str | None = Field(None, description="AWS region (default: the boto3 chain)")
    profile: str | None = Field(None, description="AWS profile (default: the boto3 chain)")
    subnets: list[str] = Field(default_factory=list, description="VPC subnets")
    security_group_ids: list[str] = Field(default_factory=list, description="VPC security groups")
    network_isolation: bool = Field(False, description="No network access from the container")
    inter_container_encryption: bool = Field(False, description="Encrypt traffic between hosts")
    wait: bool = Field(False, description="Cloud jobs: follow status and logs until the end")
    # The watch on a running run (README, "Stalls and notifications")
    stall_timeout: Duration | None = Field(
        None, le=28 * 86400, description="A run that prints no log line (and so reports no "
        "metric) for this long (e.g. 15m) is stalled: its stacks are saved to the record and "
        "stall_action is taken; kept by the launcher, or by `attach` for a SageMaker job")
    stall_action: Literal["stop", "report"] = Field(
        "stop", description="What a stall does: stop the run, or only report it")
    notify: list[str] = Field(
        default_factory=list, description="apprise URLs told of the run (json://host/path, "
                                          "slack://…, sns://…, mailto://…)")
    notify_on: list[Literal["end", "failure", "stall"]] | None = Field(
        None, description="When notify is told: end (any end), failure (an end other than "
                          "Completed), stall; default: end and stall")
    upload_code: bool = Field(
        False, description="Cloud jobs: ship source_dir as the `code` channel, which the image "
                           "runs instead of its baked-in copy (a code change needs no rebuild)"
    )
    uploads_uri: Location | None = Field(
        None, description="Where the code channel and local data channels are uploaded, "
                          "content-addressed (default: _uploads in the record store, or in "
                          "config_uri)"
    )
    distribution: Literal["none", "torchrun", "mpi"] = Field(
        "none", description="How the training code starts on each host: python (none), "
                            "torchrun, or mpirun from the first host (mpi)"
    )
    processes_per_host: int = Field(
        1, ge=1, le=256, description="torchrun/mpi: training processes per host (one per GPU)"
    )
    retries: int | None = Field(
        None, description="Restart the job up to this many times after an internal SageMaker "
                          "error (RetryStrategy)"
    )
    max_pending_time: Duration | None = Field(
        None, description="Give up when no capacity was found within this time (e.g. 2h)"
    )
    fallback_instance_types: list[str] = Field(
        default_factory=list, description="ml.* types tried in order when instance_type has no "
                                          "capacity (ResourceLimitExceeded, or CapacityError)"
    )
    wait_for_capacity: Duration | None = Field(
        None, description="When no type has capacity, keep trying this long (e.g. 2h)"
    )
    capacity_backoff: Duration = Field(
        60, description="Wait before the next capacity try; doubles each time, up to 15m"
    )
    tensorboard_uri: Location | None = Field(
        None, description="s3://bucket/prefix that TensorBoard files in "
                          "tensorboard_local_path are copied to while the job runs"
    )
    tensorboard_local_path: str | None = Field(
        None, description="Where the training code writes TensorBoard files "
                          "(default /opt/ml/output/tensorboard)"
    )
    profiler: bool = Field(True, description="false turns SageMaker's profiler off")
    remote_debug: bool = Field(
        False, description="ml.*: the job accepts `sagebook shell` (AWS Systems Manager "
                           "sessions into its container, RemoteDebugConfig)"
    )
    request: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other CreateTrainingJob field, with the API's names and shapes "
                    "(e.g. InfraCheckConfig); merged into the request and checked with it",
    )
    allow_unlisted_instance_type: bool = Field(
        False, description="Accept an ml.* type this botocore's model does not list yet"
    )
    image_environment: Literal["toolkit", "sagemaker"] = Field(
        "toolkit", description="What the image gives the training code besides SageMaker's own "
                               "variables: the sagemaker-training toolkit's SM_* variables "
                               "(toolkit: AWS framework images, and this project's Dockerfile), "
                               "or nothing more (sagemaker); local runs give the same"
    )
    pass_aws_credentials: bool = Field(
        False, description="local runs: give the training code this machine's AWS credentials "
                           "(AWS_* variables, and ~/.aws for local); off, it gets none"
    )

    @property
    def is_cloud(self) -> bool:
        kind = kind_of(self.instance_type)
        return bool(kind and kind.remote)

    @property
    def uses_aws(self) -> bool:
        """Whether a launch of this job asks AWS: a SageMaker job, or one s3:// location."""
        locations = [self.experiments_uri, self.config_uri, self.uploads_uri, self.output_uri,
                     self.checkpoint_uri, self.resume_from, self.tensorboard_uri,
                     *(channel.uri for channel in self.channels.values())]
        return self.is_cloud or any(str(uri).startswith("s3://") for uri in locations if uri)

    def store_options(self) -> dict[str, Any]:
        """What every store opened for this job needs: credentials, encryption, ownership."""
        return aws.store_options(dict(self))



UNLISTED_ADVICE = ("; AWS adds instance types before botocore lists them: if this one is new, "
                   "upgrade botocore (pip install -U botocore) or set "
                   "`allow_unlisted_instance_type: true` in the job config")

INLINE_SECRET_ADVICE = ("a config is shared and recorded, so store the value in SSM Parameter "
                        "Store or Secrets Manager and put its ARN here")


def consistency_problems(job: JobConfig) -> list[tuple[KeyPath, str]]:
    """Rules across keys, each reported at the key the user would change. What an instance
    type needs is the backend registry's to say; the API's own limits are checked with the
    request (`request.check`)."""
    problems: list[tuple[KeyPath, str]] = []
    kind = kind_of(job.instance_type)
    if kind is None:
        problems.append((("instance_type",),
                         f"no backend runs {job.instance_type!r}: use {describe_kinds()}"))
    else:
        if kind.remote and not job.allow_unlisted_instance_type:
            # an API limit, but named here: the request is built only once the rest is valid
            listed = allowed_values("CreateTrainingJob", ("ResourceConfig", "InstanceType"))
            if job.instance_type not in listed:
                problems.append((("instance_type",), not_listed(job.instance_type, listed) +
                                 " (CreateTrainingJob ResourceConfig.InstanceType)" +
                                 UNLISTED_ADVICE))
        if kind.needs_image and not job.image_uri:
            problems.append((("image_uri",), f"required for instance_type {job.instance_type}"))
        if kind.needs_role and not job.role_arn:
            problems.append((("role_arn",), f"required for instance_type {job.instance_type}"))
        if kind.max_hosts is not None and job.instance_count > kind.max_hosts:
            problems.append((("instance_count",),
                             f"instance_type {job.instance_type} runs at most {kind.max_hosts} "
                             f"host{'s' if kind.max_hosts > 1 else ''}, got {job.instance_count}"))
    for index, fallback in enumerate(job.fallback_instance_types):
        if not (is_remote(fallback) and job.is_cloud):
            problems.append((("fallback_instance_types", index),
                             f"{fallback!r}: fallback types are SageMaker types (ml.*), "
                             "for an ml.* instance_type"))
    for name in ("volume_kms_key", "output_kms_key", "s3_kms_key"):
        key = getattr(job, name)
        if key and not KMS_KEY.match(key):
            problems.append(((name,), f"{key!r} is not a KMS key id, alias or ARN"))
    if job.spot:
        if not job.checkpoint_uri:
            problems.append((("spot",),
                             "spot needs checkpoint_uri, or an interruption loses the work"))
        if job.max_wait is not None and job.max_wait < job.max_runtime:
            problems.append((("max_wait",), f"must be at least max_runtime ({job.max_runtime}s), "
                                            f"got {job.max_wait}s"))
    elif job.max_wait is not None:
        problems.append((("max_wait",), "applies only with spot: true"))
    if job.resume_from and not job.checkpoint_uri:
        problems.append((("resume_from",), "resume_from needs checkpoint_uri: the run's own "
                                           "checkpoints go there, starting from a copy of those "
                                           "it resumes from"))
    if job.checkpoint_uri:
        unknown = set(re.findall(r"\{[^}]*\}", job.checkpoint_uri)) - {RUN_ID_PLACEHOLDER}
        if unknown:
            problems.append((("checkpoint_uri",), f"only {RUN_ID_PLACEHOLDER} is expanded, not "
                                                  f"{', '.join(sorted(unknown))}"))
    if job.processes_per_host > 1 and job.distribution == "none":
        problems.append((("processes_per_host",), "needs a distribution: torchrun or mpi"))
    for name, value in job.environment.items():
        why = inline_secret(name, value)
        if why:
            problems.append((("environment", name), f"{why}; {INLINE_SECRET_ADVICE}"))
    for name, value in job.tags.items():
        kind = token_kind(value)
        if kind:
            problems.append((("tags", name), f"looks like {kind}; {INLINE_SECRET_ADVICE}"))
    if "config" in job.channels:
        problems.append((("channels", "config"),
                         "channel name 'config' is reserved for the training config"))
    if "code" in job.channels:
        problems.append((("channels", "code"),
                         "channel name 'code' is reserved for the training code (upload_code)"))
    return problems


def replicated_hosts_warning(job: JobConfig) -> str | None:
    """Several hosts that may each do the whole job, and cost it each: no distribution and
    no sharded channel. Only a warning: training code can split the work itself (the
    example does, by SM_CURRENT_HOST_RANK), which no config can show."""
    if job.instance_count == 1 or job.distribution != "none":
        return None
    if any(channel.distribution == "ShardedByS3Key" for channel in job.channels.values()):
        return None
    return (f"{job.instance_count} hosts, distribution: none, and every channel "
            "FullyReplicated: unless the training code splits the work by "
            "SM_CURRENT_HOST_RANK, each host trains the same model on the same data and the job "
            f"pays {job.instance_count} times for one result. Set distribution (torchrun, "
            "mpi), shard a channel (distribution: ShardedByS3Key), or use instance_count: 1")


# --------------------------------------------------------------------------------------------
# Loaded config


@dataclass(frozen=True)
class LaunchConfig:
    """Both configs of one launch, validated, with overrides applied and paths resolved."""

    job: JobConfig
    job_path: Path
    training: dict[str, Any]
    training_path: Path
    overrides: tuple[str, ...] = ()
    job_data: dict[str, Any] = field(default_factory=dict)
    # where each key was written (line) or set (override), to name them in later problems
    job_lines: dict[KeyPath, int] = field(default_factory=dict)
    job_sources: dict[KeyPath, str] = field(default_factory=dict)
    training_lines: dict[KeyPath, int] = field(default_factory=dict)
    training_sources: dict[KeyPath, str] = field(default_factory=dict)

    def where(self, *key: str | int) -> str:
        """Where a job key was set: `file:line`, or the override that set it."""
        return key_location(tuple(key), self.job_path, self.job_lines, self.job_sources)

    @property
    def source_dir(self) -> Path:
        return Path(self.job.source_dir)

    def problem(self, section: str, key: KeyPath, message: str) -> Problem:
        """A problem at `key` of the job or training config, named as validation names it:
        file and line, or the override that set it."""
        if section == "job":
            where = key_location(key, self.job_path, self.job_lines, self.job_sources)
        else:
            where = key_location(key, self.training_path, self.training_lines,
                                 self.training_sources)
        return format_problem(where, dotted_key(key, f"{section}.") if key else section, message)

    def job_yaml(self) -> str:
        """The job config as launched: overrides applied and paths absolute, so it re-runs."""
        data = dict(self.job_data)
        data["training_config"] = "training_config.yaml"
        return _header(self.job_path, self.overrides, "job.") + dump_yaml(data)

    def training_yaml(self) -> str:
        """The training config as launched; this exact text is what the container reads."""
        if not any(o.startswith("training.") for o in self.overrides):
            return self.training_path.read_text()
        return _header(self.training_path, self.overrides, "training.") + dump_yaml(self.training)

    def digest(self) -> str:
        """Hash of both configs' settings as launched (not of their text or file paths), so
        identical settings launched from different files or folders share it."""
        job = {k: v for k, v in self.job_data.items() if k != "training_config"}
        text = json.dumps([job, self.training], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _header(path: Path, overrides: tuple[str, ...], prefix: str) -> str:
    mine = [o for o in overrides if o.startswith(prefix)]
    lines = [f"# as launched from {path}"] + [f"# override: {o}" for o in mine]
    return "\n".join(lines) + "\n"


def load(path: str | os.PathLike[str], overrides: typing.Iterable[str] = (), *,
         code_dir: Path | None = None) -> LaunchConfig:
    """Load the job config at `path` and its training config, apply overrides, validate both.

    `code_dir` holds the training code in place of `source_dir` (a rerun's recorded code): the
    run reads and runs it, while the config as launched keeps naming `source_dir`.
    Raises ConfigError listing every problem of both configs, each with file, line and key
    path: a mistake in the job config does not hide those of the training config.
    """
    job_path = inputs.absolute(path)
    overrides = tuple(overrides)
    job_data, job_lines = read_yaml(job_path)
    job_overrides, training_overrides = split_overrides(
        overrides, lambda: override_paths(job_data, job_path))
    job_data.pop("sweep", None)  # a sweep over this job (sweeps/spec.py), not a job setting
    refuse_training_config(job_data, job_path)
    job_sources = apply_overrides(job_data, job_overrides, JobConfig, "job.")
    named_source = job_data.get("source_dir")
    if code_dir is not None:
        job_data["source_dir"] = str(code_dir)
    errors: list[ConfigError] = []
    job: JobConfig | None = None
    try:
        job = _checked_job(job_data, job_path, job_lines, job_sources)
    except ConfigError as exc:
        errors.append(exc)
    code = job or _training_keys(job_data, job_path)
    if code is None:
        raise ConfigError.merged(errors)
    training_path = Path(code.training_config)
    training_data: dict[str, Any] = {}
    training_lines: dict[KeyPath, int] = {}
    training_sources: dict[KeyPath, str] = {}
    try:
        training_data, training_lines = read_yaml(training_path,
                                                  referenced_from=(job_path, job_lines))
        schema = load_training_schema(code) if code.training_schema else None
        training_sources = apply_overrides(training_data, training_overrides, schema,
                                            "training.")
        tokens = inline_token_problems(training_data, training_path, training_lines,
                                       training_sources, "training.")
        if tokens:
            errors.append(ConfigError(tokens))
        if schema is not None:
            validate_model(schema, training_data, training_path, training_lines, training_sources,
                      "training.")
    except ConfigError as exc:
        errors.append(exc)
    if job is None:
        raise ConfigError.merged(errors)
    resolved = job.model_dump(mode="json", exclude_defaults=False)
    if code_dir is not None and named_source is not None:
        resolved["source_dir"] = str((job_path.parent / Path(named_source).expanduser()).resolve())
    loaded = LaunchConfig(job, job_path, training_data, training_path, overrides, resolved,
                          job_lines, job_sources, training_lines, training_sources)
    if errors:
        # The job config is valid: the caller can still check the request it makes, so that
        # a training-config mistake does not hide a request problem until the next round.
        error = ConfigError.merged(errors)
        error.unchecked = loaded
        raise error
    return loaded


def override_paths(job_data: dict[str, Any], job_path: Path) -> list[str]:
    """Every key an override may set (`job.max_runtime`, `training.epochs`): the job config's,
    the training schema's and the training config's own, from a job config as written."""
    paths = [f"job.{key}" for key in keys_of(JobConfig)]
    code = _training_keys(job_data, job_path)
    if code is None:
        return paths
    try:
        if code.training_schema:
            paths += [f"training.{key}" for key in keys_of(load_training_schema(code))]
        _, lines = read_yaml(Path(code.training_config))
    except ConfigError:  # what cannot be read suggests nothing; its own error comes later
        return paths
    return paths + [dotted_key(key, "training.") for key in lines
                    if all(isinstance(part, str) for part in key)]


def refuse_training_config(data: dict[str, Any], path: Path) -> None:
    """A training config given where the job config goes (`launch
    configs/training_config.yaml`): one line saying so and which job config to give, rather
    than one `unknown key` line per setting, each listing the ~50 job keys. It is one when it
    has none of the job config's required keys and most of its keys are not job keys."""
    required = sorted(name for name, info in JobConfig.model_fields.items() if info.is_required())
    unknown = [key for key in data if key not in JobConfig.model_fields]
    if not data or set(required) & set(data) or len(unknown) * 2 <= len(data):
        return
    naming, others = [], []
    for candidate in project.job_configs(path.parent):
        try:  # job_configs read it once already: a config it found is a mapping
            named = inputs.load_yaml_file(candidate)[0].get("training_config")
        except ConfigError:
            continue
        if isinstance(named, str) and inputs.absolute(candidate.parent / named) == path:
            naming.append(os.path.relpath(candidate))
        else:
            others.append(os.path.relpath(candidate))
    if naming:
        which = (f"{' or '.join(naming[:2])}, which name{'s' if len(naming) == 1 else ''} it "
                 "as training_config")
    else:
        which = (f"e.g. {' or '.join(others[:2])}, " if others else "") + \
            "whose training_config names this file"
    raise ConfigError.one(f"{path}:1", None, f"this looks like a training config ({len(unknown)} "
                                             f"of its {len(data)} keys are not job config keys, "
                                             f"and it has none of {', '.join(required)}); give "
                                             f"the job config ({which})")


def _training_keys(data: dict[str, Any], job_path: Path) -> JobConfig | None:
    """The keys that locate the training config and its schema, from a job config that did
    not validate, so the training config is still checked in the same round."""
    defaults = {name: JobConfig.model_fields[name].default
                for name in ("source_dir", "training_schema")}
    keys = {**defaults, **{k: data[k] for k in ("training_config", *defaults) if k in data}}
    if not all(isinstance(keys.get(k), str) for k in ("training_config", "source_dir")) or \
            not isinstance(keys["training_schema"], str | None):
        return None
    base = job_path.parent
    return JobConfig.model_construct(
        training_config=str(inputs.absolute(base / keys["training_config"])),
        source_dir=str(inputs.absolute(base / keys["source_dir"])),
        training_schema=keys["training_schema"])


def validate(
    job_data: dict[str, Any],
    training_data: dict[str, Any],
    job_path: str | os.PathLike[str],
    training_path: str | os.PathLike[str] | None = None,
    *,
    schema: type[BaseModel] | None = None,
    job_lines: dict[KeyPath, int] | None = None,
    training_lines: dict[KeyPath, int] | None = None,
) -> LaunchConfig:
    """Validate both configs held in memory with the rules and messages of `load()`.

    For callers that hold the data rather than the files (the config form, validating as the
    user types). `job_path` is the job config's file: relative paths resolve against it and
    messages name it (at `job_lines`, when given). `training_path` defaults to the job's
    `training_config`. Unlike `load()`, the training config is checked even when the job config
    has problems, against `schema` (the training code's model, when the caller has it), so
    every problem is reported at once. Raises ConfigError.
    """
    job_path = inputs.absolute(job_path)
    problems: list[str] = []
    job: JobConfig | None = None
    try:
        job = _checked_job(copy.deepcopy(job_data), job_path, job_lines or {}, {})
    except ConfigError as exc:
        problems += exc.problems
    if training_path is None and job is not None:
        training_path = job.training_config
    if schema is None and job is not None and job.training_schema:
        try:
            schema = load_training_schema(job)
        except ConfigError as exc:
            problems += exc.problems
    if training_path is not None:
        problems += inline_token_problems(training_data, Path(training_path),
                                          training_lines or {}, {}, "training.")
    if schema is not None and training_path is not None:
        try:
            validate_model(schema, training_data, Path(training_path), training_lines or {}, {},
                      "training.")
        except ConfigError as exc:
            problems += exc.problems
    if problems or job is None:
        raise ConfigError(problems)
    resolved = job.model_dump(mode="json", exclude_defaults=False)
    return LaunchConfig(job, job_path, training_data, Path(training_path or job.training_config),
                        (), resolved, job_lines or {}, {}, training_lines or {}, {})


def inline_token_problems(data: Any, path: Path, lines: dict[KeyPath, int],
                          sources: dict[KeyPath, str], prefix: str) -> list[Problem]:
    """A problem for every value of a training config shaped like a credential (a token, a
    URL with a password, a private key): the config goes into the record and to the job as
    it is. Each names the file and line, or the override (its value masked), and the key."""
    problems = []
    stack: list[tuple[KeyPath, Any]] = [((), data)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, dict):
            stack += [(key + (k,), v) for k, v in reversed(list(value.items()))]
        elif isinstance(value, list):
            stack += [(key + (i,), v) for i, v in reversed(list(enumerate(value)))]
        elif isinstance(value, str) and not SECRET_REFERENCE.match(value):
            kind = token_kind(value)
            if kind:
                problems.append(format_problem(redact(key_location(key, path, lines, sources), ()),
                                               dotted_key(key, prefix),
                                               f"looks like {kind}; {INLINE_SECRET_ADVICE}"))
    return problems


def _checked_job(
    data: dict[str, Any], path: Path, lines: dict[KeyPath, int], sources: dict[KeyPath, str]
) -> JobConfig:
    """The job config validated, its paths resolved against its file, its local paths found."""
    job = validate_model(JobConfig, data, path, lines, sources, "job.")
    # where: an override's text, which may hold the very secret a problem refuses
    problems = [format_problem(redact(key_location(key, path, lines, sources), ()),
                               dotted_key(key, "job."), message)
                for key, message in consistency_problems(job)]
    job = _resolve_paths(job, path.parent)
    problems += _local_path_problems(job, path, lines, sources)
    if problems:
        raise ConfigError(problems)
    return job


# --------------------------------------------------------------------------------------------
# Paths and the training code's schema


def _resolve_paths(job: JobConfig, base: Path) -> JobConfig:
    """Relative paths in a config mean relative to the config file, wherever the user runs."""

    def local(value: str | None) -> str | None:
        if value is None or value.startswith("s3://"):
            return value
        return str(inputs.absolute(base / Path(value).expanduser()))

    channels = {
        name: channel.model_copy(update={"uri": local(channel.uri)})
        for name, channel in job.channels.items()
    }
    experiments = job.experiments_uri or os.environ.get("SAGEBOOK_EXPERIMENTS_URI")
    return job.model_copy(update={
        "training_config": local(job.training_config),
        "source_dir": local(job.source_dir),
        "channels": channels,
        "checkpoint_uri": local(job.checkpoint_uri),
        "resume_from": local(job.resume_from) if names_location(job.resume_from)
        else job.resume_from,
        "tensorboard_uri": local(job.tensorboard_uri),
        "output_uri": local(job.output_uri),
        "config_uri": local(job.config_uri),
        "uploads_uri": local(job.uploads_uri),
        "experiments_uri": local(experiments) if job.experiments_uri else (
            experiments if experiments and experiments.startswith("s3://")
            else str(inputs.absolute(experiments or "experiments"))
        ),
    })


def names_location(resume_from: str | None) -> bool:
    """Whether `resume_from` is a checkpoint location (s3://…, or a folder written as /…,
    ./…, ../… or ~/…) rather than a run: `exp/run_id` must not be taken for a folder."""
    return bool(resume_from) and str(resume_from).startswith(("s3://", "/", ".", "~"))


def _local_path_problems(
    job: JobConfig, path: Path, lines: dict[KeyPath, int], sources: dict[KeyPath, str]
) -> list[Problem]:
    """Local data and code must exist now, not when the job reaches them."""
    checks: list[tuple[KeyPath, str | None, str]] = [
        (("source_dir",), job.source_dir, "folder"),
        (("entry_point",), str(Path(job.source_dir) / job.entry_point), "file"),
    ]
    checks += [(("channels", name), channel.uri, "path") for name, channel in job.channels.items()]
    problems = []
    for key, value, kind in checks:
        if value is None or value.startswith("s3://"):
            continue
        problem = _path_problem(Path(value), kind)
        if problem:
            problems.append(format_problem(
                key_location(key, path, lines, sources), dotted_key(key, "job."), problem))
    return problems


def _path_problem(target: Path, kind: str) -> str | None:
    """Why a local path a job reads cannot serve as a `kind` (file, folder, or either)."""
    try:
        mode = target.stat().st_mode
    except (OSError, RuntimeError) as exc:
        reason = inputs.path_reason(exc)
        return f"{kind} not found: {target}" if reason == "file not found" else (
            f"{reason}: {target}")
    if kind == "folder" and not stat.S_ISDIR(mode) or kind == "file" and not stat.S_ISREG(mode):
        return f"{kind} not found: {target}"
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        return f"not a file or folder: {target}"
    if not os.access(target, os.R_OK | (os.X_OK if stat.S_ISDIR(mode) else 0)):
        return f"permission denied: {target}"
    return None


def load_training_schema(job: JobConfig) -> type[BaseModel]:
    """Import the pydantic model that the training code ships as its config reference.

    Only the schema file is imported (by path, not via sys.path), so the launcher does not need
    the training code's heavy dependencies.
    """
    assert job.training_schema is not None
    file_name, _, class_name = job.training_schema.partition(":")
    schema_path = Path(job.source_dir) / file_name
    where = "job.training_schema"
    if not schema_path.is_file():
        raise ConfigError.one(str(schema_path), where, "training schema file not found")
    module_name = "sagebook_training_schema_" + hashlib.sha1(
        str(schema_path).encode()
    ).hexdigest()[:8]
    spec = importlib.util.spec_from_file_location(module_name, schema_path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: any failure is theirs to see
        del sys.modules[module_name]
        raise ConfigError.one(
            str(schema_path), where, f"importing the training schema failed: {exc!r}"
        ) from None
    model = getattr(module, class_name or "TrainingConfig", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ConfigError.one(
            str(schema_path), where, f"no pydantic model named {class_name!r} in the file"
        )
    return model
