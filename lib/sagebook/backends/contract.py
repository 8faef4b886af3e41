"""The SageMaker training container contract, emulated on this machine.

SageMaker hands a training container an `/opt/ml` tree (config files, channel data, folders for
the model, outputs and checkpoints) and a set of environment variables. The local backends build
the same tree in a per-run folder, so training code that resolves its paths as
`SM_*` → `$SAGEMAKER_BASE_DIR/...` → `/opt/ml/...` runs unchanged here and in the cloud.
The `SM_*` variables are those the sagemaker-training toolkit computes (see `toolkit`), given
only when the job's image has the toolkit (`image_environment`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..stores import open_store
from . import toolkit

HOST = "algo-1"
CONTAINER_BASE = "/opt/ml"
STOP_GRACE_SECONDS = 120  # SageMaker's grace between SIGTERM and SIGKILL on StopTrainingJob
MASTER_PORT = 7777  # what SageMaker's distributed drivers use on a cluster of its own

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


def build_tree(root: Path, request: dict[str, Any], instance_type: str, host: str = HOST,
               hosts: Sequence[str] = (HOST,)) -> None:
    """Create `root` as /opt/ml of one host of the job: folders and the JSON config files."""
    for sub in ("input/config", "input/data", "model", "output/data", "checkpoints"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    config = root / "input/config"
    _write_json(config / "hyperparameters.json", request.get("HyperParameters", {}))
    _write_json(config / "inputdataconfig.json", input_data_config(request))
    _write_json(config / "resourceconfig.json", resource_config(instance_type, host, hosts))
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


def resource_config(instance_type: str, host: str = HOST,
                    hosts: Sequence[str] = (HOST,)) -> dict[str, Any]:
    """resourceconfig.json as SageMaker writes it on `host` of a homogeneous cluster."""
    return {
        "current_host": host,
        "current_instance_type": instance_type,
        "current_group_name": toolkit.GROUP,
        "hosts": list(hosts),
        "instance_groups": [{
            "instance_group_name": toolkit.GROUP,
            "instance_type": instance_type,
            "hosts": list(hosts),
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


# What each `image_environment` gives the training code, in the words doctor and --dry-run use.
IMAGE_ENVIRONMENTS = {
    "toolkit": "the sagemaker-training toolkit's SM_* variables (SM_MODEL_DIR, SM_CHANNEL_<NAME>, "
               "SM_HP_<NAME>, …) besides SageMaker's own",
    "sagemaker": "only SageMaker's own variables (TRAINING_JOB_NAME, TRAINING_JOB_ARN and the "
                 "job's environment): no SM_* variables, so the code reads /opt/ml",
}


def describe_environment(image_environment: str) -> str:
    """One line saying which variables the training code gets, for doctor and --dry-run."""
    return f"image_environment: {image_environment}: {IMAGE_ENVIRONMENTS[image_environment]}"


def environment(request: dict[str, Any], base: str, instance_type: str, gpus: int = 0,
                host: str = HOST, hosts: Sequence[str] = (HOST,),
                master_addr: str | None = None, master_port: int = MASTER_PORT,
                image_environment: str = "toolkit") -> dict[str, str]:
    """The variables one host of a job sees, with paths under `base`: /opt/ml, or a host folder
    where no private /opt/ml can be had (then also named by SAGEMAKER_BASE_DIR, which the
    toolkit and the example honour).

    With `image_environment` "toolkit": the toolkit's `SM_*` variables, plus what SageMaker's
    distributed drivers add for several hosts: SM_HOST_COUNT, SM_CURRENT_HOST_RANK,
    SM_MASTER_ADDR, SM_MASTER_PORT. With "sagemaker": what SageMaker itself sets, and only
    for several hosts SM_MASTER_ADDR and SM_MASTER_PORT, since here the hosts share this
    machine's loopback and the first host's name and port 7777 would not reach it.
    """
    env = {
        **container_variables(request),
        **({"SAGEMAKER_BASE_DIR": base} if base != CONTAINER_BASE else {}),
    }
    if image_environment == "sagemaker":
        if len(hosts) > 1:
            env.update(SM_MASTER_ADDR=master_addr or hosts[0], SM_MASTER_PORT=str(master_port))
        return env
    return {
        **env,
        **toolkit.variables(base, request.get("HyperParameters", {}),
                            input_data_config(request),
                            resource_config(instance_type, host, hosts),
                            request["TrainingJobName"], gpus),
        "SM_HOST_COUNT": str(len(hosts)),
        "SM_CURRENT_HOST_RANK": str(list(hosts).index(host)),
        "SM_MASTER_ADDR": master_addr or hosts[0],
        "SM_MASTER_PORT": str(master_port),
    }


def host_names(count: int) -> list[str]:
    """`algo-1` … `algo-N`, as SageMaker names the hosts of a job."""
    return [f"algo-{n}" for n in range(1, count + 1)]


def local_path(uri: str) -> Path | None:
    """The folder or file behind a file:// URI; None for S3."""
    if not uri.startswith("file://"):
        return None
    return Path(unquote(urlparse(uri).path))


def populate_channels(root: Path, request: dict[str, Any], link: bool = True,
                      store_options: dict[str, Any] | None = None,
                      echo: Callable[[str], None] = print,
                      shard: tuple[int, int] = (0, 1)) -> dict[str, Path]:
    """Fill input/data/<channel>: local folders linked (or left to mount), S3 downloaded.

    `shard` is (this host's index, host count): a `ShardedByS3Key` channel gets only this
    host's share of the objects (see `shard_of`). Returns the local sources of channels that
    were linked whole, for backends that mount them.
    """
    sources: dict[str, Path] = {}
    for channel in request.get("InputDataConfig", []):
        name = channel["ChannelName"]
        s3 = channel["DataSource"]["S3DataSource"]
        uri = s3["S3Uri"]
        sharded = s3["S3DataDistributionType"] == "ShardedByS3Key" and shard[1] > 1
        target = root / "input/data" / name
        source = local_path(uri)
        if source is None:
            target.mkdir(parents=True, exist_ok=True)
            store = open_store(uri, **(store_options or {}))
            echo(f"[sagebook] downloading channel {name} from {uri}")
            if sharded:
                keys = shard_of(list(store.list("")), *shard)
                for key in keys:
                    (target / key).parent.mkdir(parents=True, exist_ok=True)
                    store.get_file(key, target / key)
                size = sum((target / key).stat().st_size for key in keys)
            else:
                size = store.download_tree("", target)
            echo(f"[sagebook] channel {name}: {size} bytes")
            continue
        if not source.exists():
            raise FileNotFoundError(f"channel {name}: {source} does not exist")
        if sharded:
            _place_shard(source, target, shard, link)
            continue
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


def shard_of(keys: list[str], index: int, count: int) -> list[str]:
    """The objects host `index` of `count` gets from a ShardedByS3Key channel.

    SageMaker documents only that each of n hosts gets about 1/n of the objects, each object
    on one host. Here the keys, sorted, are dealt out in turn: algo-1 gets the 1st, the
    (n+1)th…, so shares differ by at most one object and do not depend on object sizes.
    """
    return sorted(keys)[index::count]


def _place_shard(source: Path, target: Path, shard: tuple[int, int], link: bool) -> None:
    """This host's share of a local channel, file by file: linked, or copied where a link
    would point outside a container's mounted tree."""
    if target.is_symlink() or target.exists():
        _remove(target)
    target.mkdir(parents=True)
    files = {path.relative_to(source).as_posix(): path for path in source.rglob("*")
             if path.is_file()} if source.is_dir() else {source.name: source}
    for key in shard_of(list(files), *shard):
        (target / key).parent.mkdir(parents=True, exist_ok=True)
        if link:
            (target / key).symlink_to(files[key])
        else:
            shutil.copyfile(files[key], target / key)


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


def pack(folders: Sequence[Path], archive: Path) -> bool:
    """Tar-gzip the contents of `folders` (one per host) into one archive, as SageMaker
    aggregates /opt/ml/model and /opt/ml/output/data of every host; of two files with one
    name, the later host's wins. False when there is nothing to pack."""
    files: dict[str, Path] = {}
    for folder in folders:
        files.update({p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
                      if p.is_file()})
    if not files:
        return False
    with tarfile.open(archive, "w:gz") as tar:
        for name in sorted(files):
            tar.add(files[name], arcname=name)
    return True


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
