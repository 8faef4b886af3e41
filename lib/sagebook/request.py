"""The CreateTrainingJob request: a pure function of the validated config and the run's identity.

The same dict drives every backend (the local ones read the container contract from it) and is
saved verbatim in the record, so what ran is what the record says ran.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RUN_ID_PLACEHOLDER, LaunchConfig
from .errors import ConfigError

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
    return request


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
    tags = {
        "sagebook:run-id": run.run_id,
        "sagebook:experiment": cfg.job.experiment,
        "sagebook:user": run.user,
        "sagebook:git-commit": run.git_commit or "none",
        "sagebook:record": run.record_uri,
    }
    return [{"Key": k, "Value": v[:256]} for k, v in tags.items()]


def validate(request: dict[str, Any], service_model: Any = None) -> None:
    """Check the request against botocore's own SageMaker service model, before any upload.

    A malformed request then fails on the laptop, naming the parameter, instead of as an
    opaque 400 after the data went up. A client's `meta.service_model` saves loading the
    (large) model a second time.
    """
    from botocore.validate import ParamValidator

    if service_model is None:
        import botocore.session

        service_model = botocore.session.get_session().get_service_model("sagemaker")
    shape = service_model.operation_model("CreateTrainingJob").input_shape
    report = ParamValidator().validate(request, shape)
    if report.has_errors():
        problems = [line.strip() for line in report.generate_report().splitlines()
                    if line.strip()]
        raise ConfigError([f"CreateTrainingJob request: {p}" for p in problems])
