"""The environment a local run gives the training code is the configured image's
(`image_environment`): the sagemaker-training toolkit's SM_* variables for an image with the
toolkit (the project's own image, AWS's framework images), only SageMaker's own variables for an
image without it. A train.py that reads SM_MODEL_DIR ends the same way under `local` as the
image's `train` entry run with only what SageMaker sets (as tests/test_dockerfile.py runs it):
it completes with the toolkit, and fails with KeyError without it. doctor and --dry-run say
which environment the code gets.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sagebook.backends import contract

from conftest import REPO, manifest, runs, sagebook

TRAIN = REPO / "sagemaker_container" / "train"
# A Python with the toolkit: the SDK's venv (`make sdk-venv`), as test_toolkit_parity.py uses.
TOOLKIT_PYTHON = REPO / ".venv-sdk" / "bin" / "python"

READS_MODEL_DIR = """\
import os
from pathlib import Path

model_dir = Path(os.environ["SM_MODEL_DIR"])
(model_dir / "model.txt").write_text("trained\\n")
print("saved to", model_dir)
"""

REQUEST = {
    "TrainingJobName": "image-env-20261207-000000-abcdef",
    "HyperParameters": {"epochs": "2", "data.train_file": "train.csv"},
    "InputDataConfig": [{"ChannelName": "train", "InputMode": "File", "DataSource": {
        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/train",
                         "S3DataDistributionType": "FullyReplicated"}}}],
    "Environment": {"LOG_LEVEL": "INFO"},
}


def has_toolkit(python: Path) -> bool:
    return python.exists() and subprocess.run(
        [str(python), "-c", "import sagemaker_training"], capture_output=True).returncode == 0


# --- what contract.environment() gives --------------------------------------------------------


def test_sagemaker_gives_only_what_sagemaker_sets():
    env = contract.environment(REQUEST, contract.CONTAINER_BASE, "ml.m5.large",
                               image_environment="sagemaker")
    assert env == {
        "LOG_LEVEL": "INFO",
        "TRAINING_JOB_NAME": REQUEST["TrainingJobName"],
        "TRAINING_JOB_ARN": "arn:aws:sagemaker:local:000000000000:training-job/"
                            + REQUEST["TrainingJobName"],
    }


def test_sagemaker_on_a_host_folder_names_the_folder_and_several_hosts_their_master(tmp_path):
    hosts = contract.host_names(2)
    env = contract.environment(REQUEST, str(tmp_path), "ml.m5.large", host="algo-2",
                               hosts=hosts, master_addr="127.0.0.1", master_port=4242,
                               image_environment="sagemaker")
    # On this machine the hosts share one loopback: the master's address and port are not
    # algo-1:7777, so they are given; no other SM_* variable is.
    assert {k for k in env if k.startswith("SM_")} == {"SM_MASTER_ADDR", "SM_MASTER_PORT"}
    assert env["SM_MASTER_ADDR"] == "127.0.0.1" and env["SM_MASTER_PORT"] == "4242"
    assert env["SAGEMAKER_BASE_DIR"] == str(tmp_path)


def test_toolkit_gives_the_toolkits_variables():
    env = contract.environment(REQUEST, contract.CONTAINER_BASE, "ml.m5.large",
                               image_environment="toolkit")
    assert env["SM_MODEL_DIR"] == "/opt/ml/model"
    assert env["SM_CHANNEL_TRAIN"] == "/opt/ml/input/data/train"
    assert env["SM_HP_DATA.TRAIN_FILE"] == "train.csv"


# --- config, doctor and --dry-run --------------------------------------------------------------


def test_the_default_is_the_shipped_images_toolkit_and_the_dockerfile_installs_it():
    from sagebook.config import JobConfig

    assert JobConfig.model_fields["image_environment"].default == "toolkit"
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "FROM ${BASE_IMAGE} AS toolkit" in dockerfile
    assert '--wheel-dir /wheels \\\n        "sagemaker-training==' in dockerfile
    assert "COPY --from=toolkit /wheels /tmp/wheels" in dockerfile
    assert "python3 -m pip install --no-cache-dir /tmp/wheels/*.whl" in dockerfile


def test_an_unknown_image_environment_is_refused_at_its_key(make_config):
    result = sagebook("launch", str(make_config()), "--dry-run",
                      "-o", "job.image_environment=framework")
    assert result.returncode == 2
    assert "image_environment" in result.stderr
    assert "'toolkit' or 'sagemaker'" in result.stderr


@pytest.mark.parametrize("setting", ["toolkit", "sagemaker"])
def test_doctor_and_dry_run_name_the_environment(make_config, setting):
    config = str(make_config(image_environment=setting))
    line = contract.describe_environment(setting)
    doctor = sagebook("doctor", config)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert line in doctor.stdout
    dry = sagebook("launch", config, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"training code environment: {line}" in dry.stderr
    # the cloud config's dry run says the same for the same setting
    cloud = sagebook("launch", str(REPO / "configs" / "sagemaker_config.yaml"), "--dry-run",
                     "-o", f"job.image_environment={setting}")
    assert f"training code environment: {line}" in cloud.stderr, cloud.stderr


# --- the same outcome locally and from the image's entry ---------------------------------------


def run_image_entry(tmp_path: Path, python: str) -> subprocess.CompletedProcess:
    """The image's `train` next to the code, outside Docker, with only SageMaker's variables
    (and SAGEMAKER_BASE_DIR for /opt/ml, PATH to find bash and python)."""
    program = tmp_path / "program"
    program.mkdir()
    shutil.copy2(TRAIN, program / "train")
    (program / "train.py").write_text(READS_MODEL_DIR)
    base = tmp_path / "opt_ml"
    contract.build_tree(base, REQUEST, "ml.m5.large")
    env = {**contract.container_variables(REQUEST), "SAGEMAKER_BASE_DIR": str(base),
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SAGEBOOK_PYTHON": python}
    return subprocess.run([str(program / "train")], env=env, capture_output=True, text=True,
                          timeout=120)


def run_locally(make_config, tmp_path: Path, setting: str) -> tuple[dict, str]:
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(READS_MODEL_DIR)
    config = make_config(source_dir=str(code), training_schema=None, image_environment=setting)
    result = sagebook("launch", str(config), timeout=180)
    [run] = runs(tmp_path / "experiments")
    logs = "".join(p.read_text(errors="replace") for p in run.rglob("*.log"))
    return manifest(run), result.stdout + result.stderr + logs


@pytest.mark.slow
def test_without_the_toolkit_local_fails_as_the_image_entry_does(make_config, tmp_path):
    image = run_image_entry(tmp_path, sys.executable)
    assert image.returncode == 1
    assert "KeyError: 'SM_MODEL_DIR'" in image.stderr
    m, output = run_locally(make_config, tmp_path, "sagemaker")
    assert m["status"] == "Failed"
    assert "KeyError: 'SM_MODEL_DIR'" in output + json.dumps(m)


@pytest.mark.slow
@pytest.mark.skipif(not has_toolkit(TOOLKIT_PYTHON),
                    reason="the toolkit is missing: `make sdk-venv` installs it")
def test_with_the_toolkit_local_completes_as_the_image_entry_does(make_config, tmp_path):
    image = run_image_entry(tmp_path, str(TOOLKIT_PYTHON))
    assert image.returncode == 0, image.stderr
    assert "with the sagemaker-training toolkit's SM_* variables" in image.stderr
    assert (tmp_path / "opt_ml" / "model" / "model.txt").read_text() == "trained\n"
    m, output = run_locally(make_config, tmp_path, "toolkit")
    assert m["status"] == "Completed", output
    assert "saved to" in output
