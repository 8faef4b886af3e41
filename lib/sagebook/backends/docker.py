"""`instance_type: local-docker` / `local-gpu`: the built image under Docker, as SageMaker runs it.

This checks what the `local` backend cannot: the image's paths, dependencies, platform and
`train` entry. The container gets the per-run /opt/ml tree (mounted), `train` as its command,
and only the environment SageMaker would give it (the job's `environment`, TRAINING_JOB_NAME,
TRAINING_JOB_ARN) — no `SM_*` variables and no AWS credentials unless the config asks.
Environment values are passed by name (`-e KEY`, value in the Docker CLI's own environment),
so no secret ever appears on a command line or in the record.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import LaunchError
from . import Backend, Job, Outcome, contract
from .contract import STOP_GRACE_SECONDS
from .limits import stop_grace
from .local import Host, ProcessRun


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
    host: str = contract.HOST,
    network: str | None = None,
) -> list[str]:
    """The `docker run` argv for one host of a job: pure, so it is tested exactly without an
    engine. Several hosts share `network`, on which each answers to its name (`algo-2`)."""
    argv = [
        "docker", "run", "--rm",
        "--name", name,
        "--hostname", host,  # resourceconfig.json's current_host resolves to itself
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
    if network:
        argv += ["--network", network, "--network-alias", host]
    elif network_isolation:
        argv += ["--network", "none"]
    return argv + [image, "train"]


def container_name(job_name: str, host: str | None, instance_count: int) -> str:
    """`sagebook-<job>`, and `-<host>` for each container of a several-host job: what `docker
    exec` (sagebook shell) names as the launch named it."""
    name = f"sagebook-{job_name}"
    return f"{name}-{host}" if host and instance_count > 1 else name


def network_commands(name: str, isolated: bool) -> tuple[list[str], list[str]]:
    """Create and remove the network of a several-host job. An isolated job's network is
    internal: its hosts reach each other, and nothing else, as with network isolation on
    SageMaker."""
    return (["docker", "network", "create", *(["--internal"] if isolated else []), name],
            ["docker", "network", "rm", name])


class DockerBackend(ProcessRun, Backend):
    # Symlinks would point outside the mounted tree: local channels are mounted instead.
    link_channels = False

    def start(self, job: Job) -> Outcome:
        if shutil.which("docker") is None:
            raise LaunchError("local-docker needs the Docker CLI: `docker` is not on PATH")
        hosts = self.prepare(job)
        cfg = job.config.job
        gpu = cfg.instance_type == "local-gpu"
        env = container_environment(job.request, cfg.pass_aws_credentials)
        checkpoint_path = job.request.get("CheckpointConfig", {}).get(
            "LocalPath", "/opt/ml/checkpoints")
        network = self.container_name(job) if len(hosts) > 1 else None
        for host in hosts:
            host.command = docker_command(
                cfg.image_uri or "", host.root, list(env), self.container_name(job, host.name),
                gpu=gpu, channel_mounts=self.sources, checkpoint_local_path=checkpoint_path,
                network_isolation=cfg.network_isolation, host=host.name, network=network)
            host.env = {**os.environ, **env}
            if job.pdb:
                host.command.insert(2, "-it")
        job.record.update(docker_command=hosts[0].command,
                          **({"docker_commands": {h.name: h.command for h in hosts}}
                             if network else {}))
        for host in hosts:
            job.echo(f"[sagebook] {' '.join(host.command)}")
        if network is None:
            return self.execute(job, hosts)
        create, remove = network_commands(network, cfg.network_isolation)
        job.echo(f"[sagebook] {' '.join(create)}")
        subprocess.run(create, capture_output=True, check=True)
        try:
            return self.execute(job, hosts)
        finally:
            subprocess.run(remove, capture_output=True, check=False)

    def container_name(self, job: Job, host: str | None = None) -> str:
        return container_name(job.request["TrainingJobName"], host,
                              job.config.job.instance_count)

    def stop_hosts(self, job: Job, hosts: list[Host]) -> None:
        """`docker stop` gives each container SIGTERM, then SIGKILL after the grace period."""
        grace = math.ceil(stop_grace())  # docker counts whole seconds
        job.echo(f"[sagebook] stopping: docker stop (SIGKILL after {grace}s)")
        subprocess.run(["docker", "stop", "--time", str(grace),
                        *(self.container_name(job, h.name) for h in hosts)],
                       capture_output=True, check=False)
        super().stop_hosts(job, hosts)
