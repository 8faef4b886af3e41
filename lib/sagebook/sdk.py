"""The SageMaker Python SDK v3 `ModelTrainer` for a job config, for users who go on in the SDK.

    from sagebook.sdk import model_trainer
    trainer = model_trainer("configs/sagemaker_config.yaml", ["training.epochs=3"])
    trainer.train(wait=False)

The trainer is configured from the very request `sagebook launch` would send (tests prove that
the SDK then sends the same CreateTrainingJob fields): image, role, compute (instance type and
count, volume and its KMS key, warm pool, managed spot), stopping condition, networking, output
and checkpoint locations (a prefix of its own below `checkpoint_uri`, as for a run),
environment, hyperparameters, tags, metric definitions, and the input channels with their input
mode, distribution and content type.

What stays sagebook's, because the run is no longer a sagebook run: the record (and the
SAGEBOOK_* variables and `sagebook:*` tags that point to it), the run id in the job name (the
SDK names jobs `<experiment>-<timestamp>`), and content-addressed uploads. Local inputs — the
training config as the `config` channel, local data folders, and the packed code folder as
the `code` channel when `upload_code` is set — are handed to the SDK as local paths, which it
uploads to its default bucket on `train()`.

The SDK is the optional `sdk` extra (`pip install 'sagebook[sdk]'`): about 1 GB of dependencies
and seconds of import, which is why nothing else in sagebook imports it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from . import config as config_mod
from . import request as request_mod
from .errors import ConfigError, SagebookError
from .record import new_run_id, user

# Request fields that belong to a sagebook run and have no meaning outside one.
RUN_ENVIRONMENT = ("SAGEBOOK_RUN_ID", "SAGEBOOK_EXPERIMENT", "SAGEBOOK_RECORD_URI")


def model_trainer(config: str | os.PathLike[str] | config_mod.LaunchConfig,
                  overrides: Iterable[str] = (), *, sagemaker_session: Any = None) -> Any:
    """A `sagemaker.train.ModelTrainer` set up as `sagebook launch` would set up the job."""
    cfg = config if isinstance(config, config_mod.LaunchConfig) else config_mod.load(
        config, overrides)
    if not cfg.job.is_cloud:
        raise ConfigError.one("job.instance_type", None,
                              f"{cfg.job.instance_type} is not a SageMaker instance type (ml.*)")
    # ModelTrainer has no setting for these: a trainer without them would run another job
    beyond = [f"job.{key}" for key in (*(f"request.{k}" for k in cfg.job.request),
                                        *(["profiler"] if not cfg.job.profiler else []))]
    if beyond:
        raise ConfigError.one(str(cfg.job_path), ", ".join(beyond),
                              "the SDK's ModelTrainer has no setting for this: launch with "
                              "sagebook, or leave it out for the SDK")
    try:
        # the SageMaker SDK: the sdk extra, seconds to import
        from sagemaker.core.training.configs import (
            CheckpointConfig,
            Compute,
            InputData,
            MetricDefinition,
            Networking,
            OutputDataConfig,
            RetryStrategy,
            StoppingCondition,
            Tag,
            TensorBoardOutputConfig,
        )

        # the SageMaker SDK: the sdk extra, seconds to import
        from sagemaker.train import ModelTrainer
    except ImportError:
        raise SagebookError("the SageMaker Python SDK v3 is not installed: "
                            "pip install 'sagebook[sdk]'") from None

    staging = Path(tempfile.mkdtemp(prefix="sagebook-sdk-"))
    request = _request(cfg, staging)
    resources = request["ResourceConfig"]
    stopping = request["StoppingCondition"]
    options: dict[str, Any] = {
        "training_image": request["AlgorithmSpecification"]["TrainingImage"],
        "training_input_mode": request["AlgorithmSpecification"]["TrainingInputMode"],
        "role": request["RoleArn"],
        "base_job_name": cfg.job.experiment,
        "compute": Compute(
            instance_type=resources["InstanceType"],
            instance_count=resources["InstanceCount"],
            volume_size_in_gb=resources["VolumeSizeInGB"],
            volume_kms_key_id=resources.get("VolumeKmsKeyId"),
            keep_alive_period_in_seconds=resources.get("KeepAlivePeriodInSeconds"),
            enable_managed_spot_training=request.get("EnableManagedSpotTraining"),
        ),
        "stopping_condition": StoppingCondition(
            max_runtime_in_seconds=stopping["MaxRuntimeInSeconds"],
            max_wait_time_in_seconds=stopping.get("MaxWaitTimeInSeconds"),
            max_pending_time_in_seconds=stopping.get("MaxPendingTimeInSeconds"),
        ),
        "environment": {k: v for k, v in request["Environment"].items()
                        if k not in RUN_ENVIRONMENT},
        "hyperparameters": request["HyperParameters"],
        "tags": [Tag(key=k, value=v) for k, v in cfg.job.tags.items()] or None,
        "input_data_config": [_channel(c, InputData) for c in request["InputDataConfig"]],
    }
    vpc = request.get("VpcConfig") or {}
    if vpc or request.get("EnableNetworkIsolation") or \
            request.get("EnableInterContainerTrafficEncryption"):
        options["networking"] = Networking(
            subnets=vpc.get("Subnets"), security_group_ids=vpc.get("SecurityGroupIds"),
            enable_network_isolation=request.get("EnableNetworkIsolation"),
            enable_inter_container_traffic_encryption=request.get(
                "EnableInterContainerTrafficEncryption"),
        )
    if cfg.job.output_uri or cfg.job.output_kms_key:
        output = request["OutputDataConfig"]
        options["output_data_config"] = OutputDataConfig(
            s3_output_path=output["S3OutputPath"] if cfg.job.output_uri else None,
            kms_key_id=output.get("KmsKeyId"))
    if request.get("CheckpointConfig"):
        options["checkpoint_config"] = CheckpointConfig(
            s3_uri=request["CheckpointConfig"]["S3Uri"],
            local_path=request["CheckpointConfig"]["LocalPath"])
    if sagemaker_session is not None:
        options["sagemaker_session"] = sagemaker_session
    trainer = ModelTrainer(**options)
    definitions = request["AlgorithmSpecification"].get("MetricDefinitions") or []
    if definitions:
        trainer = trainer.with_metric_definitions(
            [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in definitions])
    if request.get("RetryStrategy"):
        trainer = trainer.with_retry_strategy(RetryStrategy(
            maximum_retry_attempts=request["RetryStrategy"]["MaximumRetryAttempts"]))
    if request.get("TensorBoardOutputConfig"):
        tensorboard = request["TensorBoardOutputConfig"]
        trainer = trainer.with_tensorboard_output_config(TensorBoardOutputConfig(
            s3_output_path=tensorboard["S3OutputPath"], local_path=tensorboard.get("LocalPath")))
    return trainer


def _request(cfg: config_mod.LaunchConfig, staging: Path) -> dict[str, Any]:
    """The launch request, with local inputs as local paths for the SDK to upload."""
    (staging / "config").mkdir()
    (staging / "config" / "training_config.yaml").write_text(cfg.training_yaml())
    code_uri = None
    if cfg.job.upload_code:
        from .backends import uploads  # tarfile, hashing, threads: only for code to upload

        plan = uploads.plan_code(Path(cfg.job.source_dir), "", staging / "code")
        code_uri = str(plan.files[0][1].parent)
    identity = request_mod.RunIdentity(  # a fresh id: the trainer's own checkpoint prefix
        run_id=new_run_id(), job_name=cfg.job.experiment, record_uri="", user=user(),
        config_uri=str(staging / "config"), code_uri=code_uri)
    return request_mod.build(cfg, identity)


def _channel(channel: dict[str, Any], input_data: Any) -> Any:
    """An S3 channel as its full Channel shape; a local one as InputData, which the SDK
    uploads (as File / FullyReplicated: it has no other way for local data)."""
    source = channel["DataSource"]["S3DataSource"]
    uri = source["S3Uri"]
    if not uri.startswith("file://"):
        # the SageMaker SDK: the sdk extra, seconds to import
        from sagemaker.core.training.configs import Channel, DataSource, S3DataSource

        shape: dict[str, Any] = {
            "channel_name": channel["ChannelName"],
            "data_source": DataSource(s3_data_source=S3DataSource(
                s3_data_type=source["S3DataType"], s3_uri=uri,
                s3_data_distribution_type=source["S3DataDistributionType"])),
            "input_mode": channel["InputMode"],
        }
        if channel.get("ContentType"):
            shape["content_type"] = channel["ContentType"]
        return Channel(**shape)
    if channel["InputMode"] != "File" or source["S3DataDistributionType"] != "FullyReplicated":
        raise ConfigError.one(
            f"job.channels.{channel['ChannelName']}", None,
            "the SDK uploads local data as File / FullyReplicated: give an s3:// URI to keep "
            f"{channel['InputMode']} / {source['S3DataDistributionType']}")
    return input_data(channel_name=channel["ChannelName"],
                      data_source=unquote(urlparse(uri).path),
                      content_type=channel.get("ContentType"))
