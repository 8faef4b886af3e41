"""Launching a SageMaker job, against a local endpoint (moto): from the command to a created job.

Three ways of doing the same work — put the training config in S3, call CreateTrainingJob —
each a fresh process, as a user runs it:
- `sagebook launch CONFIG` (validation of both configs, the record in S3, the request
  validated against botocore's model);
- a minimal boto3 script: one put_object and one create_training_job with a hand-written
  request (the floor: interpreter, boto3 import, two calls);
- the SageMaker SDK v3: a ModelTrainer with the same settings, `train(wait=False)`, in the SDK
  venv (.venv-sdk, `make sdk-venv`).

Targets: sagebook within 1.2x of the minimal script (it writes a record and validates two
configs and the request on top of the same two calls) and faster than the SDK. The commands
run in turns, REPEATS times each after one warm-up run, and medians are compared; the machine
may be shared, so its load falls on all alike. sagebook keeps botocore's parsed models in the
user's cache folder (warm after the first launch): an informational row shows a launch with
an empty cache.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

import yaml
from run import Row, timed

REPO = Path(__file__).resolve().parents[1]
SDK_PYTHON = REPO / ".venv-sdk" / "bin" / "python"
REPEATS = 7
BUCKET = "bench"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagebook-training:latest"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"

BOTO3_SCRIPT = textwrap.dedent("""
    import sys, time
    import boto3
    config_file, run = sys.argv[1], f"bench-boto3-{time.time_ns()}"
    boto3.client("s3").upload_file(config_file, "bench", f"configs/{run}/training_config.yaml")
    boto3.client("sagemaker").create_training_job(
        TrainingJobName=run,
        AlgorithmSpecification={"TrainingImage": "%(image)s", "TrainingInputMode": "File"},
        RoleArn="%(role)s",
        InputDataConfig=[
            {"ChannelName": "config", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": f"s3://bench/configs/{run}",
                "S3DataDistributionType": "FullyReplicated"}}},
            {"ChannelName": "train", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": "s3://bench/data/train/",
                "S3DataDistributionType": "FullyReplicated"}}},
        ],
        OutputDataConfig={"S3OutputPath": "s3://bench/outputs"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1,
                        "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
""") % {"image": IMAGE, "role": ROLE}

SDK_SCRIPT = textwrap.dedent("""
    import sys
    import boto3
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.training.configs import Compute, InputData, OutputDataConfig
    from sagemaker.train import ModelTrainer
    config_folder = sys.argv[1]
    # a named default bucket keeps the SDK from asking STS at its fixed regional endpoint
    session = Session(boto_session=boto3.Session(), default_bucket="bench")
    ModelTrainer(
        sagemaker_session=session, training_image="%(image)s", role="%(role)s",
        base_job_name="bench-sdk",
        compute=Compute(instance_type="ml.m5.large", instance_count=1),
        output_data_config=OutputDataConfig(s3_output_path="s3://bench/outputs"),
        input_data_config=[InputData(channel_name="config", data_source=config_folder),
                           InputData(channel_name="train", data_source="s3://bench/data/train/")],
    ).train(wait=False)
""") % {"image": IMAGE, "role": ROLE}


def _medians(commands: dict[str, list[str]], env: dict[str, str],
             fresh_cache: tuple[str, ...] = ()) -> dict[str, float]:
    """Median wall time of each command, run in turns (a, b, c, a, b, c, …) so that a change
    in the machine's load falls on all of them alike. The commands in `fresh_cache` start
    each run with an empty XDG_CACHE_HOME, as on a new machine or after a botocore upgrade."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():
        timed(command, env)  # warm the file cache (and sagebook's cache of botocore's models)
    for _ in range(REPEATS):
        for name, command in commands.items():
            run_env = env
            if name in fresh_cache:
                run_env = {**env, "XDG_CACHE_HOME": tempfile.mkdtemp(prefix="sagebook-cold-")}
            times[name].append(timed(command, run_env))
            if name in fresh_cache:
                shutil.rmtree(run_env["XDG_CACHE_HOME"], ignore_errors=True)
    return {name: statistics.median(values) for name, values in times.items()}


def answer_role_checks() -> None:
    """Answer iam:SimulatePrincipalPolicy, which moto lacks, as AWS does for a role allowed to
    write to S3. The SDK calls it before uploading local inputs; without an answer it waits
    through botocore's retries of moto's 500s, which would be measured against it."""
    from moto.core.responses import ActionResult
    from moto.iam.responses import IamResponse

    def simulate_principal_policy(response: IamResponse) -> ActionResult:
        actions = response._get_param("ActionNames") or []
        resources = response._get_param("ResourceArns") or ["*"]
        return ActionResult({"EvaluationResults": [
            {"EvalActionName": a, "EvalResourceName": r, "EvalDecision": "allowed"}
            for a in actions for r in resources]})

    IamResponse.simulate_principal_policy = simulate_principal_policy  # type: ignore[attr-defined]


def run() -> list[Row]:
    import boto3
    from moto.server import ThreadedMotoServer

    answer_role_checks()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    scratch = Path(tempfile.mkdtemp(prefix="sagebook-bench-launch-"))
    opt_out = scratch / "sagemaker-config.yaml"  # the SDK must not send telemetry to AWS
    opt_out.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n"
                       "      TelemetryOptOut: true\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "SAGEMAKER_", "SAGEBOOK_"))}
    env.update({
        "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(opt_out), "SAGEMAKER_VALIDATE_ROLE": "false",
        "SAGEBOOK_WORK_DIR": str(scratch / "work"),
    })
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        # the image in ECR: sagebook resolves its tag to a digest and refuses a missing image
        ecr = boto3.client("ecr")
        ecr.create_repository(repositoryName="sagebook-training")
        ecr.put_image(repositoryName="sagebook-training", imageTag="latest", imageManifest=(
            '{"schemaVersion": 2, "mediaType": '
            '"application/vnd.docker.distribution.manifest.v2+json", "config": {}, "layers": []}'))
        training = REPO / "configs" / "training_config.yaml"
        config_folder = scratch / "config"
        config_folder.mkdir()
        shutil.copy(training, config_folder / "training_config.yaml")
        job = yaml.safe_load((REPO / "configs" / "sagemaker_config.yaml").read_text())
        job.update({
            "training_config": str(training), "source_dir": str(REPO / "sagemaker_container"),
            "image_uri": IMAGE, "role_arn": ROLE, "region": "us-east-1", "spot": False,
            "max_wait": None, "checkpoint_uri": None, "config_uri": None,
            "channels": {"train": f"s3://{BUCKET}/data/train/"},
            "output_uri": f"s3://{BUCKET}/outputs",
            "experiments_uri": f"s3://{BUCKET}/records", "wait": False,
        })
        config = scratch / "job.yaml"
        config.write_text(yaml.safe_dump(job))
        (scratch / "boto3_launch.py").write_text(BOTO3_SCRIPT)
        (scratch / "sdk_launch.py").write_text(SDK_SCRIPT)

        commands = {
            "sagebook": [sys.executable, "-m", "sagebook.cli", "launch", str(config)],
            "sagebook-cold": [sys.executable, "-m", "sagebook.cli", "launch", str(config)],
            "boto3": [sys.executable, str(scratch / "boto3_launch.py"),
                      str(config_folder / "training_config.yaml")],
        }
        if SDK_PYTHON.exists():
            commands["sdk"] = [str(SDK_PYTHON), str(scratch / "sdk_launch.py"),
                               str(config_folder)]
        else:
            print("bench_launch: no .venv-sdk (make sdk-venv): SDK figure skipped",
                  file=sys.stderr)
        median = _medians(commands, env, fresh_cache=("sagebook-cold",))
        ours = median["sagebook"]
        rows = [Row(f"launch to created job: sagebook vs boto3 script ({REPEATS} runs)",
                    ours, median["boto3"], "s", "<= 1.2x", ours <= 1.2 * median["boto3"]),
                Row("  the same, first launch with an empty cache folder",
                    median["sagebook-cold"], median["boto3"], "s", "informational", True)]
        if "sdk" in median:
            rows.append(Row(f"launch to created job: sagebook vs SDK v3 ({REPEATS} runs)",
                            ours, median["sdk"], "s", "<= 1.0x (faster)", ours <= median["sdk"]))
        return rows
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
