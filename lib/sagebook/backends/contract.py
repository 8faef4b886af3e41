"""The SageMaker training container contract, emulated on this machine.

SageMaker hands a training container an `/opt/ml` tree (config files, channel data, folders for
the model, outputs and checkpoints) and a set of environment variables. The local backends build
the same tree in a per-run folder, so training code that resolves its paths as
`SM_*` → `$SAGEMAKER_BASE_DIR/...` → `/opt/ml/...` runs unchanged here and in the cloud.
The `SM_*` names are those of the sagemaker-training toolkit; the toolkit itself is not used
because it waits for cluster host names to resolve and installs packages on import.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..stores import open_store

HOST = "algo-1"
CONTAINER_BASE = "/opt/ml"

# What a process needs to run on this machine. Nothing else of the launcher's environment
# reaches the training code (no credentials, tokens, PYTHONPATH or virtualenv settings): a
# SageMaker container sees none of it, and code that works only thanks to a laptop variable
# would pass here and fail in the cloud.
MACHINE_VARIABLES = ("HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
                     "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES")
# Given to the training code only when the job config says `pass_aws_credentials: true`.
AWS_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
    "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_PROFILE",
)

EXIT_CODES = {
    1: "the training code raised an error",
    2: "the training code was started with wrong arguments",
    126: "the entry point is not executable",
    127: "the entry point or a command it runs was not found",
    134: "the process aborted (SIGABRT)",
    137: "killed (SIGKILL): usually out of memory",
    139: "segmentation fault (SIGSEGV)",
    143: "terminated (SIGTERM): the job was stopped",
}


def explain_exit(code: int) -> str:
    reason = EXIT_CODES.get(code)
    return f"exit code {code}" + (f" ({reason})" if reason else "")


def build_tree(root: Path, request: dict[str, Any], instance_type: str) -> None:
    """Create `root` as the job's /opt/ml: folders and the three JSON config files."""
    for sub in ("input/config", "input/data", "model", "output/data", "checkpoints"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    config = root / "input/config"
    _write_json(config / "hyperparameters.json", request.get("HyperParameters", {}))
    _write_json(config / "inputdataconfig.json", input_data_config(request))
    _write_json(config / "resourceconfig.json", resource_config(instance_type))
    _write_json(config / "trainingjobconfig.json", {
        k: v for k, v in request.items() if k not in ("Tags",)
    })


def input_data_config(request: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        channel["ChannelName"]: {
            "ContentType": channel.get("ContentType", ""),
            "TrainingInputMode": channel.get("InputMode", "File"),
            "S3DistributionType":
                channel["DataSource"]["S3DataSource"]["S3DataDistributionType"],
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
        }
        for channel in request.get("InputDataConfig", [])
    }


def resource_config(instance_type: str) -> dict[str, Any]:
    return {
        "current_host": HOST,
        "current_instance_type": instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": [HOST],
        "instance_groups": [{
            "instance_group_name": "homogeneousCluster",
            "instance_type": instance_type,
            "hosts": [HOST],
        }],
        "network_interface_name": "eth0",
    }


def machine_environment(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The launcher's variables a local process needs to run here, and nothing else.

    PATH starts with the launcher's interpreter folder, so `python` is the Python that runs
    the training code, whether or not its virtualenv is activated.
    """
    env = {k: v for k, v in environ.items() if k in MACHINE_VARIABLES or k.startswith("LC_")}
    interpreter = str(Path(sys.executable).parent)
    path = environ.get("PATH", os.defpath)
    env["PATH"] = path if path.split(os.pathsep)[0] == interpreter else (
        interpreter + os.pathsep + path)
    return env


def aws_credentials(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """This machine's AWS credentials and settings, for a job that opted in."""
    return {k: v for k, v in environ.items()
            if k in AWS_CREDENTIAL_VARIABLES or k.startswith("AWS_ENDPOINT_URL_")}


def container_variables(request: dict[str, Any]) -> dict[str, str]:
    """What SageMaker itself sets in a training container: the job's environment and name."""
    job_name = request["TrainingJobName"]
    return {
        **request.get("Environment", {}),
        "TRAINING_JOB_NAME": job_name,
        "TRAINING_JOB_ARN": f"arn:aws:sagemaker:local:000000000000:training-job/{job_name}",
    }


def environment(request: dict[str, Any], base: str, instance_type: str,
                gpus: int = 0) -> dict[str, str]:
    """The variables a job sees, with paths under `base`: /opt/ml, or a host folder where no
    private /opt/ml can be had (then also named by SAGEMAKER_BASE_DIR, which the toolkit and
    the example honour)."""
    path = Path(base)
    hps = request.get("HyperParameters", {})
    channels = [c["ChannelName"] for c in request.get("InputDataConfig", [])]
    job_name = request["TrainingJobName"]
    env = {
        **container_variables(request),
        **({"SAGEMAKER_BASE_DIR": str(path)} if base != CONTAINER_BASE else {}),
        "SM_MODEL_DIR": str(path / "model"),
        "SM_INPUT_DIR": str(path / "input"),
        "SM_INPUT_CONFIG_DIR": str(path / "input/config"),
        "SM_OUTPUT_DIR": str(path / "output"),
        "SM_OUTPUT_DATA_DIR": str(path / "output/data"),
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_HPS": json.dumps(hps),
        "SM_INPUT_DATA_CONFIG": json.dumps(input_data_config(request)),
        "SM_RESOURCE_CONFIG": json.dumps(resource_config(instance_type)),
        "SM_CURRENT_HOST": HOST,
        "SM_CURRENT_INSTANCE_TYPE": instance_type,
        "SM_HOSTS": json.dumps([HOST]),
        "SM_NETWORK_INTERFACE_NAME": "eth0",
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": str(gpus),
        "SM_LOG_LEVEL": "20",
    }
    for name in channels:
        env[f"SM_CHANNEL_{name.upper().replace('-', '_').replace('.', '_')}"] = str(
            path / "input/data" / name
        )
    for key, value in hps.items():
        env[f"SM_HP_{key.upper().replace('.', '_').replace('-', '_')}"] = value
    env["SM_TRAINING_ENV"] = json.dumps({
        "job_name": job_name,
        "current_host": HOST,
        "hosts": [HOST],
        "channel_input_dirs": {n: str(path / "input/data" / n) for n in channels},
        "hyperparameters": hps,
        "model_dir": str(path / "model"),
        "output_data_dir": str(path / "output/data"),
        "num_cpus": int(env["SM_NUM_CPUS"]),
        "num_gpus": gpus,
    })
    return env


def local_path(uri: str) -> Path | None:
    """The folder or file behind a file:// URI; None for S3."""
    if not uri.startswith("file://"):
        return None
    return Path(unquote(urlparse(uri).path))


def populate_channels(root: Path, request: dict[str, Any], link: bool = True,
                      store_options: dict[str, Any] | None = None,
                      echo: Callable[[str], None] = print) -> dict[str, Path]:
    """Fill input/data/<channel>: local folders linked (or left to mount), S3 downloaded.

    Returns the local sources of channels that were linked, for backends that mount them.
    """
    sources: dict[str, Path] = {}
    for channel in request.get("InputDataConfig", []):
        name = channel["ChannelName"]
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
        target = root / "input/data" / name
        source = local_path(uri)
        if source is None:
            target.mkdir(parents=True, exist_ok=True)
            echo(f"[sagebook] downloading channel {name} from {uri}")
            size = open_store(uri, **(store_options or {})).download_tree("", target)
            echo(f"[sagebook] channel {name}: {size} bytes")
            continue
        if not source.exists():
            raise FileNotFoundError(f"channel {name}: {source} does not exist")
        sources[name] = source
        if not link:
            target.mkdir(parents=True, exist_ok=True)
        elif source.is_dir():
            if target.is_symlink() or target.exists():
                _remove(target)
            target.symlink_to(source, target_is_directory=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            (target / source.name).symlink_to(source)
    return sources


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        for child in path.iterdir():
            _remove(child)
        path.rmdir()


def failure_reason(root: Path) -> str | None:
    """What the training code wrote to output/failure: SageMaker keeps the first 1024 chars."""
    path = root / "output/failure"
    if not path.is_file():
        return None
    text = path.read_text(errors="replace").strip()
    return text[:1024] or None


def pack(folder: Path, archive: Path) -> bool:
    """Tar-gzip the contents of `folder` as SageMaker does; False when it is empty."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        return False
    with tarfile.open(archive, "w:gz") as tar:
        for path in files:
            tar.add(path, arcname=path.relative_to(folder).as_posix())
    return True


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
