"""Run in the SDK venv (.venv-sdk) by test_sdk_parity.py: what the SageMaker SDK v3 sends.

    python tests/sdk_parity.py JOB_CONFIG CONFIG_CHANNEL_URI

Prints one JSON object: the CreateTrainingJob payloads, as botocore's before-call event sees
them, of
- "by_hand": a ModelTrainer written the way an SDK user writes one, with the settings of
  tests/test_sdk_parity.py's job config (kept in step with it by hand, on purpose: it is the
  independent reference);
- "converted": `sagebook.sdk.model_trainer(JOB_CONFIG)`.
"""

from __future__ import annotations

import json
import sys

import boto3
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.training.configs import (
    Channel,
    CheckpointConfig,
    Compute,
    DataSource,
    MetricDefinition,
    Networking,
    OutputDataConfig,
    RetryStrategy,
    S3DataSource,
    StoppingCondition,
    Tag,
    TensorBoardOutputConfig,
)
from sagemaker.train import ModelTrainer

from sagebook.sdk import model_trainer

BUCKET = "sagebook-test"
DEFAULT_BUCKET = "sagemaker-parity"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagebook-training:latest"


def captured_session(sink: list[dict]) -> Session:
    boto_session = boto3.Session()
    boto_session.events.register(
        "before-call.sagemaker.CreateTrainingJob",
        lambda params, **_: sink.append(json.loads(params["body"])))
    # A named default bucket: else the SDK asks STS for the account id at a fixed regional
    # endpoint (sts.<region>.amazonaws.com), which AWS_ENDPOINT_URL does not redirect.
    return Session(boto_session=boto_session, default_bucket=DEFAULT_BUCKET)


def by_hand(session: Session, config_channel: str, training: dict) -> ModelTrainer:
    def s3_channel(name: str, uri: str, mode: str = "File",
                   distribution: str = "FullyReplicated", content_type: str | None = None):
        extra = {"content_type": content_type} if content_type else {}
        return Channel(channel_name=name, input_mode=mode, data_source=DataSource(
            s3_data_source=S3DataSource(s3_data_type="S3Prefix", s3_uri=uri,
                                        s3_data_distribution_type=distribution)), **extra)

    return ModelTrainer(
        sagemaker_session=session,
        training_image=IMAGE,
        role=ROLE,
        base_job_name="parity",
        compute=Compute(instance_type="ml.m5.xlarge", instance_count=2, volume_size_in_gb=50,
                        volume_kms_key_id="alias/volumes", keep_alive_period_in_seconds=600,
                        enable_managed_spot_training=True),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=7200,
                                             max_wait_time_in_seconds=10800,
                                             max_pending_time_in_seconds=7200),
        networking=Networking(subnets=["subnet-0abc"], security_group_ids=["sg-0abc"],
                              enable_network_isolation=True,
                              enable_inter_container_traffic_encryption=True),
        output_data_config=OutputDataConfig(s3_output_path=f"s3://{BUCKET}/outputs",
                                            kms_key_id="alias/outputs"),
        checkpoint_config=CheckpointConfig(s3_uri=f"s3://{BUCKET}/checkpoints/parity",
                                           local_path="/opt/ml/checkpoints"),
        environment={"LOG_LEVEL": "DEBUG"},
        hyperparameters=training,
        tags=[Tag(key="team", value="ml")],
        input_data_config=[
            s3_channel("config", config_channel, content_type="application/x-yaml"),
            s3_channel("train", f"s3://{BUCKET}/data/train/", "FastFile", "ShardedByS3Key",
                       "text/csv"),
            s3_channel("validation", f"s3://{BUCKET}/data/validation.csv"),
        ],
    ).with_metric_definitions([
        MetricDefinition(name="train_loss", regex="train_loss=([0-9.eE+-]+)"),
        MetricDefinition(name="val_loss", regex="val_loss=([0-9.eE+-]+)"),
        MetricDefinition(name="val_accuracy", regex="val_accuracy=([0-9.eE+-]+)"),
    ]).with_retry_strategy(RetryStrategy(maximum_retry_attempts=3)).with_tensorboard_output_config(
        TensorBoardOutputConfig(s3_output_path=f"s3://{BUCKET}/tensorboard",
                                local_path="/opt/ml/tb"))


def main() -> None:
    job_config, config_channel, training_json = sys.argv[1:4]
    training = json.loads(training_json)
    hand: list[dict] = []
    by_hand(captured_session(hand), config_channel, training).train(wait=False)
    converted: list[dict] = []
    model_trainer(job_config, sagemaker_session=captured_session(converted)).train(wait=False)
    print(json.dumps({"by_hand": hand[-1], "converted": converted[-1]}))


if __name__ == "__main__":
    main()
