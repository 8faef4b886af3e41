"""The CreateTrainingJob request: a pure function of the validated config and the run's identity.

The same dict drives every backend (the local ones read the container contract from it) and is
saved verbatim in the record, so what ran is what the record says ran. Before anything is
uploaded, `check` holds it against every constraint of the SageMaker service model (see
`apicheck`) and names each violation where the user wrote it: file, line and key.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .apicheck import ApiProblem, check_request
from .config import RUN_ID_PLACEHOLDER, UNLISTED_ADVICE, LaunchConfig
from .config_files import KeyPath
from .errors import ConfigError, Problem
from .kinds import kind_of

OPERATION = "CreateTrainingJob"
UNLISTED_OPT_OUT = "allow_unlisted_instance_type"
# Given where a role is required but a local run has none: the API check then judges the rest.
LOCAL_ROLE = "arn:aws:iam::000000000000:role/sagebook-local-run"
LOCAL_URI = "s3://local-path/"  # what a file:// location of a local run is checked as

# The request fields each job config key sets. A violation inside one is reported at its key,
# and the `request:` map may not set one (the key owns it). Longest prefix wins.
OWNED: dict[tuple[str, ...], KeyPath] = {
    ("TrainingJobName",): ("experiment",),
    ("AlgorithmSpecification", "TrainingImage"): ("image_uri",),
    ("AlgorithmSpecification", "MetricDefinitions"): ("metric_definitions",),
    ("RoleArn",): ("role_arn",),
    ("InputDataConfig",): ("channels",),
    ("OutputDataConfig", "S3OutputPath"): ("output_uri",),
    ("OutputDataConfig", "KmsKeyId"): ("output_kms_key",),
    ("ResourceConfig", "InstanceType"): ("instance_type",),
    ("ResourceConfig", "InstanceCount"): ("instance_count",),
    ("ResourceConfig", "VolumeSizeInGB"): ("volume_size_gb",),
    ("ResourceConfig", "VolumeKmsKeyId"): ("volume_kms_key",),
    ("ResourceConfig", "KeepAlivePeriodInSeconds"): ("keep_alive",),
    ("StoppingCondition", "MaxRuntimeInSeconds"): ("max_runtime",),
    ("StoppingCondition", "MaxWaitTimeInSeconds"): ("max_wait",),
    ("StoppingCondition", "MaxPendingTimeInSeconds"): ("max_pending_time",),
    ("Environment",): ("environment",),
    ("Tags",): ("tags",),
    ("EnableManagedSpotTraining",): ("spot",),
    ("CheckpointConfig", "S3Uri"): ("checkpoint_uri",),
    ("CheckpointConfig", "LocalPath"): ("checkpoint_local_path",),
    ("VpcConfig", "Subnets"): ("subnets",),
    ("VpcConfig", "SecurityGroupIds"): ("security_group_ids",),
    ("EnableNetworkIsolation",): ("network_isolation",),
    ("EnableInterContainerTrafficEncryption",): ("inter_container_encryption",),
    ("RetryStrategy", "MaximumRetryAttempts"): ("retries",),
    ("TensorBoardOutputConfig", "S3OutputPath"): ("tensorboard_uri",),
    ("TensorBoardOutputConfig", "LocalPath"): ("tensorboard_local_path",),
    ("ProfilerConfig", "DisableProfiler"): ("profiler",),
    ("MlflowConfig",): ("mlflow",),
    ("RemoteDebugConfig", "EnableRemoteDebug"): ("remote_debug",),
}
RUN_TAGS = ("sagebook:run-id", "sagebook:experiment", "sagebook:user", "sagebook:git-commit",
            "sagebook:record")  # on every job, so a job leads back to its record
HYPERPARAMETERS = "HyperParameters"  # owned by the training config
_CHANNEL_KEYS = {"S3Uri": "uri", "InputMode": "input_mode",
                 "S3DataDistributionType": "distribution", "ContentType": "content_type"}

CONFIG_CHANNEL = "config"
CODE_CHANNEL = "code"


@dataclass(frozen=True)
class RunIdentity:
    """What names a run, decided before anything is written."""

    run_id: str
    job_name: str
    record_uri: str
    config_uri: str
    user: str
    git_commit: str | None = None
    code_uri: str | None = None
    # channel name -> where a backend uploads that local channel (content-addressed)
    channel_uris: Mapping[str, str] = field(default_factory=dict)
    # the image the job runs when not the config's own: pinned by digest, or a parent's
    image_uri: str | None = None


def build(cfg: LaunchConfig, run: RunIdentity) -> dict[str, Any]:
    job = cfg.job
    algorithm: dict[str, Any] = {
        "TrainingInputMode": "File",
        "MetricDefinitions": [
            {"Name": m.name, "Regex": m.regex} for m in job.metric_definitions
        ],
    }
    if run.image_uri or job.image_uri:
        algorithm["TrainingImage"] = run.image_uri or job.image_uri
    request: dict[str, Any] = {
        "TrainingJobName": run.job_name,
        "AlgorithmSpecification": algorithm,
        "HyperParameters": hyperparameters(cfg.training),
        "InputDataConfig": _channels(cfg, run),
        "OutputDataConfig": {"S3OutputPath": _uri(job.output_uri or f"{run.record_uri}/output")},
        "ResourceConfig": {
            "InstanceType": job.instance_type,
            "InstanceCount": job.instance_count,
            "VolumeSizeInGB": job.volume_size_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": job.max_runtime},
        "Environment": {
            **job.environment,
            "SAGEBOOK_RUN_ID": run.run_id,
            "SAGEBOOK_EXPERIMENT": job.experiment,
            "SAGEBOOK_RECORD_URI": run.record_uri,
            **({"SAGEBOOK_ENTRY_POINT": job.entry_point} if job.entry_point != "train.py"
               else {}),
            # the image's `train` starts torchrun or mpirun from these
            **({"SAGEBOOK_DISTRIBUTION": job.distribution,
                "SAGEBOOK_PROCESSES_PER_HOST": str(job.processes_per_host)}
               if job.distribution != "none" else {}),
        },
        "Tags": [{"Key": k, "Value": v} for k, v in job.tags.items()] + _run_tags(cfg, run),
    }
    if job.role_arn:
        request["RoleArn"] = job.role_arn
    if job.output_kms_key:
        request["OutputDataConfig"]["KmsKeyId"] = job.output_kms_key
    if job.volume_kms_key:
        request["ResourceConfig"]["VolumeKmsKeyId"] = job.volume_kms_key
    if job.keep_alive:
        request["ResourceConfig"]["KeepAlivePeriodInSeconds"] = job.keep_alive
    if job.spot:
        request["EnableManagedSpotTraining"] = True
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = job.max_wait or job.max_runtime
    if job.checkpoint_uri:
        request["CheckpointConfig"] = {
            "S3Uri": _uri(checkpoint_location(job.checkpoint_uri, run.run_id)),
            "LocalPath": job.checkpoint_local_path,
        }
    if job.subnets or job.security_group_ids:
        request["VpcConfig"] = {
            "Subnets": job.subnets, "SecurityGroupIds": job.security_group_ids,
        }
    if job.network_isolation:
        request["EnableNetworkIsolation"] = True
    if job.inter_container_encryption:
        request["EnableInterContainerTrafficEncryption"] = True
    if job.mlflow:
        request["MlflowConfig"] = {
            "MlflowResourceArn": job.mlflow.arn,
            "MlflowExperimentName": job.mlflow.experiment or job.experiment,
            "MlflowRunName": job.mlflow.run_name or run.job_name,
        }
    if job.remote_debug:
        request["RemoteDebugConfig"] = {"EnableRemoteDebug": True}
    if job.retries is not None:
        request["RetryStrategy"] = {"MaximumRetryAttempts": job.retries}
    if job.max_pending_time is not None:
        request["StoppingCondition"]["MaxPendingTimeInSeconds"] = job.max_pending_time
    if job.tensorboard_uri:
        request["TensorBoardOutputConfig"] = {"S3OutputPath": _uri(job.tensorboard_uri)}
        if job.tensorboard_local_path:
            request["TensorBoardOutputConfig"]["LocalPath"] = job.tensorboard_local_path
    if not job.profiler:
        request["ProfilerConfig"] = {"DisableProfiler": True}
    return merge(request, job.request)


def merge(request: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The `request:` map of the job config merged in: mappings key by key, anything else
    (lists, values) replaced. Ownership is checked with the request (`owner_of`)."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(request.get(key), dict):
            merge(request[key], value)
        else:
            request[key] = copy.deepcopy(value)
    return request


def owner_of(path: tuple[str, ...]) -> str | None:
    """The config that owns a request field, a field inside it or one it would replace, if
    one does: a job config key (`job.instance_type`) or the training config."""
    if path[:1] == (HYPERPARAMETERS,):
        return "the training config"
    for owned, key in OWNED.items():
        if path[:len(owned)] == owned or owned[:len(path)] == path:
            return "job." + ".".join(str(k) for k in key)
    return None


def _ownership_problems(cfg: LaunchConfig) -> list[Problem]:
    """Fields of the `request:` map that a config key sets: the key is the one place for them."""
    problems = []

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, Mapping) and (not path or node and owner_of(path) is not None):
            for key, value in node.items():
                walk(value, (*path, str(key)))
            return
        owner = owner_of(path)
        if owner is not None:
            problems.append(cfg.problem("job", ("request", *path),
                                        f"{'.'.join(path)} is set by {owner}: set it there"))

    walk(cfg.job.request, ())
    return problems


def parameters(training: dict[str, Any]) -> dict[str, Any]:
    """The training config flattened to dotted keys, values as typed: the run's parameters as
    `list`, the report and the MLflow export show them."""
    flat: dict[str, Any] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(item, f"{prefix}.{key}" if prefix else str(key))
        else:
            flat[prefix] = value

    walk(training, "")
    return flat


def hyperparameters(training: dict[str, Any]) -> dict[str, str]:
    """The training config flattened to `dotted.key: "string"`, as SageMaker shows them.

    The training code reads its config from the `config` channel; these copies make the
    settings visible in the SageMaker console and searchable with the Search API.
    """
    return {key: value if isinstance(value, str) else json.dumps(value)
            for key, value in parameters(training).items()}


def checkpoint_location(base: str, run_id: str) -> str:
    """The run's own checkpoint prefix: `base` with {run_id} expanded, else `base/<run id>`.

    Checkpoints belong to one run: a second run with the same `checkpoint_uri` starts afresh
    instead of restoring the first one's, and a spot job that SageMaker restarts syncs the same
    prefix again, so it resumes its own. Starting from other checkpoints is `resume_from`.
    """
    if RUN_ID_PLACEHOLDER in base:
        return base.replace(RUN_ID_PLACEHOLDER, run_id)
    return f"{base.rstrip('/')}/{run_id}"


def check(cfg: LaunchConfig, request: Mapping[str, Any], service_model: Any = None) -> None:
    """Hold the request to every constraint of the service model, as SageMaker would, before
    anything is uploaded; raise ConfigError naming each violation's file, line and key.

    A request for a local instance type is checked as the cloud request it rehearses: with a
    listed SageMaker type in place of the local one and a stand-in role when none is given.
    Local paths (file:// URIs) are checked as S3 locations: whether a backend can read them is
    the backend's check.
    """
    problems = _ownership_problems(cfg)
    problems += [_where(cfg, request, p) for p in check_request(
        OPERATION, as_sent(cfg, request), service_model)
        if not (p.kind == "enum" and p.path == ("ResourceConfig", "InstanceType")
                and getattr(cfg.job, UNLISTED_OPT_OUT))]
    if problems:
        raise ConfigError(problems)


def as_sent(cfg: LaunchConfig, request: Mapping[str, Any]) -> dict[str, Any]:
    """The cloud request a local one rehearses (a copy): the SageMaker instance type it stands
    for, a stand-in role, S3 locations for local paths; a cloud request as it is."""
    # Local paths are the local backends' to read; SageMaker's backend refuses them itself,
    # naming the key, so the model's S3 patterns are not asked about them.
    rehearsed = _replace_local_paths(request)
    kind = kind_of(cfg.job.instance_type)
    if kind is None or kind.checked_as is None:
        return rehearsed
    rehearsed["ResourceConfig"]["InstanceType"] = kind.checked_as
    if not kind.needs_role and "RoleArn" not in rehearsed:
        rehearsed["RoleArn"] = LOCAL_ROLE
    return rehearsed


def _replace_local_paths(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _replace_local_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_local_paths(v) for v in value]
    return LOCAL_URI if isinstance(value, str) and value.startswith("file://") else value


def _where(cfg: LaunchConfig, request: Mapping[str, Any], problem: ApiProblem) -> Problem:
    """The problem named where the user set the value: the config key (file and line, or
    the override), with the request field it becomes."""
    section, key = config_key(cfg, request, problem.path)
    field_path = ".".join(str(p) for p in problem.path)
    message = f"{problem.message} ({OPERATION} {field_path})" if field_path else problem.message
    own = _sagebooks_own(request, problem.path) if problem.kind == "items" else 0
    if own:
        message += f"; {own} of them {'is' if own == 1 else 'are'} sagebook's"
    if problem.kind == "enum" and problem.path == ("ResourceConfig", "InstanceType"):
        message += UNLISTED_ADVICE
    return cfg.problem(section, key, message)


def _sagebooks_own(request: Mapping[str, Any], path: tuple[str | int, ...]) -> int:
    """How many entries of a list or map the user did not write: sagebook's run tags, run
    variables and config and code channels count against the service's limits too."""
    if path == ("Tags",):
        return sum(tag.get("Key") in RUN_TAGS for tag in request["Tags"])
    if path == ("Environment",):
        return sum(name.startswith("SAGEBOOK_") for name in request["Environment"])
    if path == ("InputDataConfig",):
        return sum(c.get("ChannelName") in (CONFIG_CHANNEL, CODE_CHANNEL)
                   for c in request["InputDataConfig"])
    return 0


def config_key(cfg: LaunchConfig, request: Mapping[str, Any],
               path: tuple[str | int, ...]) -> tuple[str, KeyPath]:
    """Which config key a request field comes from: ("job", key path) or ("training", …)."""
    job = cfg.job
    if path[:1] == (HYPERPARAMETERS,):
        return "training", tuple(str(path[1]).split(".")) if len(path) > 1 else ()
    owned = max((o for o in OWNED if path[:len(o)] == o), key=len, default=None)
    depth = _depth_in(job.request, path)
    if depth and depth >= len(owned or ()):  # inside what the `request:` map wrote
        return "job", ("request", *path[:depth])
    if owned is None:
        return "job", ()
    key, rest = OWNED[owned], path[len(owned):]
    if key == ("channels",) and rest:
        return "job", _channel_key(cfg, request, rest)
    if key == ("tags",) and rest:
        return "job", _tag_key(cfg, request, rest[0])
    if key == ("environment",) and rest:
        name = str(rest[0])
        run_variables = {"SAGEBOOK_RECORD_URI": ("experiments_uri",),
                         "SAGEBOOK_EXPERIMENT": ("experiment",), "SAGEBOOK_RUN_ID": (),
                         "SAGEBOOK_ENTRY_POINT": ("entry_point",)}
        return "job", ("environment", name) if name in job.environment else \
            run_variables.get(name, ("environment",))
    if key == ("output_uri",) and not job.output_uri:
        return "job", ("experiments_uri",)
    if key == ("metric_definitions",) and len(rest) == 2:
        return "job", (*key, rest[0], str(rest[1]).lower())
    if key in (("subnets",), ("security_group_ids",)):
        return "job", (*key, *rest)  # list items, one for one
    return "job", key


def _depth_in(extra: Mapping[str, Any], path: tuple[str | int, ...]) -> int:
    """How many leading parts of `path` the `request:` map holds."""
    node: Any = extra
    for depth, part in enumerate(path):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return depth
    return len(path)


def _channel_key(cfg: LaunchConfig, request: Mapping[str, Any],
                 rest: tuple[str | int, ...]) -> KeyPath:
    try:
        name = request["InputDataConfig"][rest[0]]["ChannelName"]
    except (IndexError, KeyError, TypeError):
        return ("channels",)
    if name == CONFIG_CHANNEL:
        return ("config_uri",) if cfg.job.config_uri else ("experiments_uri",)
    if name == CODE_CHANNEL:
        return ("upload_code",)
    field_name = next((_CHANNEL_KEYS[p] for p in rest[1:] if p in _CHANNEL_KEYS), None)
    if rest[1:] == ("ChannelName",) or field_name is None:
        return ("channels", name)
    return ("channels", name, field_name)


def _tag_key(cfg: LaunchConfig, request: Mapping[str, Any], index: str | int) -> KeyPath:
    try:
        name = request["Tags"][index]["Key"]
    except (IndexError, KeyError, TypeError):
        return ("tags",)
    if name in cfg.job.tags:
        return ("tags", name)
    run_tags = {"sagebook:record": ("experiments_uri",), "sagebook:experiment": ("experiment",)}
    return run_tags.get(name, ("tags",))


def _uri(location: str) -> str:
    """S3 URIs as they are; local paths as file:// URIs, which only local backends accept."""
    return location if location.startswith("s3://") else Path(location).as_uri()


def _channels(cfg: LaunchConfig, run: RunIdentity) -> list[dict[str, Any]]:
    channels = [_channel(CONFIG_CHANNEL, run.config_uri, "File", "FullyReplicated",
                         "application/x-yaml")]
    if run.code_uri:
        channels.append(_channel(CODE_CHANNEL, run.code_uri, "File", "FullyReplicated", None))
    for name, channel in cfg.job.channels.items():
        uri = run.channel_uris.get(name, channel.uri)
        channels.append(_channel(name, uri, channel.input_mode, channel.distribution,
                                 channel.content_type))
    return channels


def _channel(name: str, uri: str, mode: str, distribution: str,
             content_type: str | None) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "ChannelName": name,
        "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix",
            "S3Uri": _uri(uri),
            "S3DataDistributionType": distribution,
        }},
        "InputMode": mode,
    }
    if content_type:
        channel["ContentType"] = content_type
    return channel


def _run_tags(cfg: LaunchConfig, run: RunIdentity) -> list[dict[str, str]]:
    values = [run.run_id, cfg.job.experiment, run.user, run.git_commit or "none",
              run.record_uri]
    return [{"Key": k, "Value": v[:256]} for k, v in zip(RUN_TAGS, values, strict=True)]
