"""`instance_type: local-docker` / `local-gpu`: the built image under Docker, as SageMaker runs it.

This checks what the `local` backend cannot: the image's paths, dependencies, platform and
`train` entry. The container gets the per-run /opt/ml tree (mounted), `train` as its command,
and only the environment SageMaker would give it (the job's `environment`, TRAINING_JOB_NAME,
TRAINING_JOB_ARN) — no `SM_*` variables and no AWS credentials unless the config asks.
Environment values are passed by name (`-e KEY`, value in the Docker CLI's own environment),
so no secret ever appears on a command line or in the record.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ..errors import LaunchError
from . import Backend, Job, Outcome, contract
from .local import STOP_GRACE_SECONDS, ProcessRun


def container_environment(request: dict, aws_credentials: bool) -> dict[str, str]:
    """What SageMaker sets in a training container, plus credentials only when asked for."""
    env = contract.container_variables(request)
    if aws_credentials:
        env.update(contract.aws_credentials(os.environ))
    return env


def docker_command(
    image: str,
    root: Path,
    env_names: list[str],
    name: str,
    gpu: bool = False,
    channel_mounts: dict[str, Path] | None = None,
    checkpoint_local_path: str = "/opt/ml/checkpoints",
    network_isolation: bool = False,
    platform: str = "linux/amd64",
) -> list[str]:
    """The `docker run` argv for one job: pure, so it is tested exactly without an engine."""
    argv = [
        "docker", "run", "--rm",
        "--name", name,
        "--hostname", contract.HOST,  # resourceconfig.json's current_host resolves to itself
        "--platform", platform,
        "--stop-timeout", str(STOP_GRACE_SECONDS),
        "-v", f"{root.resolve()}:{contract.CONTAINER_BASE}",
    ]
    for channel, source in sorted((channel_mounts or {}).items()):
        target = f"{contract.CONTAINER_BASE}/input/data/{channel}"
        if source.is_file():
            target += f"/{source.name}"
        argv += ["-v", f"{source.resolve()}:{target}:ro"]
    if not checkpoint_local_path.startswith(f"{contract.CONTAINER_BASE}/"):
        argv += ["-v", f"{(root / 'checkpoints').resolve()}:{checkpoint_local_path}"]
    for key in sorted(env_names):
        argv += ["-e", key]
    if gpu:
        argv += ["--gpus", "all", "--shm-size", "1g"]
    if network_isolation:
        argv += ["--network", "none"]
    return argv + [image, "train"]


class DockerBackend(ProcessRun, Backend):
    # Symlinks would point outside the mounted tree: local channels are mounted instead.
    link_channels = False

    def run(self, job: Job) -> Outcome:
        if shutil.which("docker") is None:
            raise LaunchError("local-docker needs the Docker CLI: `docker` is not on PATH")
        self.root = root = self.prepare(job)
        cfg = job.config.job
        gpu = cfg.instance_type == "local-gpu"
        env = container_environment(job.request, cfg.pass_aws_credentials)
        checkpoint_path = job.request.get("CheckpointConfig", {}).get(
            "LocalPath", "/opt/ml/checkpoints")
        argv = docker_command(
            cfg.image_uri or "", root, list(env), self.container_name(job), gpu=gpu,
            channel_mounts=self.sources, checkpoint_local_path=checkpoint_path,
            network_isolation=cfg.network_isolation,
        )
        job.record.update(docker_command=argv)
        job.echo(f"[sagebook] {' '.join(argv)}")
        if job.pdb:
            argv.insert(2, "-it")
        return self.execute(job, argv, {**os.environ, **env}, Path.cwd())

    def container_name(self, job: Job) -> str:
        return f"sagebook-{job.request['TrainingJobName']}"

    def stop(self, job: Job, proc: subprocess.Popen[bytes]) -> None:
        """`docker stop` gives the container SIGTERM, then SIGKILL after the grace period."""
        job.echo(f"[sagebook] stopping: docker stop (SIGKILL after {STOP_GRACE_SECONDS}s)")
        subprocess.run(["docker", "stop", "--time", str(STOP_GRACE_SECONDS),
                        self.container_name(job)], capture_output=True, check=False)
        super().stop(job, proc)
