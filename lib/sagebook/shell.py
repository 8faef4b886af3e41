"""`sagebook shell RUN`: a shell (or one command) that sees a run as its training process does.

- `local`: while the run trains, the shell joins the training process's user and mount
  namespaces (`nsenter`, as the same unprivileged user that launched it), so it sees that
  host's private /opt/ml, and starts in the process's working folder with the environment the
  process was started with. Only a process this machine proves is the run's own is entered
  (see liveness). Once the run has ended (or its launcher is gone), the shell gets a view of
  the folders the run kept: the same namespace set-up around the kept tree, with the
  environment rebuilt from the run's request; nothing of the run runs any more.
- `local-docker` / `local-gpu`: `docker exec` into the host's container while it runs.
- `ml.*`: an AWS Systems Manager session into the job's container (`aws ssm start-session
  --target sagemaker-training-job:<job>_<host>`), which SageMaker offers when the job has
  `RemoteDebugConfig.EnableRemoteDebug` (the job config's `remote_debug: true`, or
  UpdateTrainingJob while the job downloads or trains: `--enable-remote-debug`).

`plan` says what would run (pure enough to test by its argv); `enter` runs it with this
terminal.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import aws, inputs
from .backends import contract, liveness, namespace
from .backends.docker import container_name
from .backends.sagemaker_api import describe, error_text
from .errors import LaunchError, StoreError
from .kinds import kind_of
from .printing import terminal_text
from .record import TERMINAL, Record
from .runs.lookup import read_optional

# SageMaker accepts UpdateTrainingJob's RemoteDebugConfig only in these secondary statuses.
UPDATABLE = ("Downloading", "Training")
SSM_PLUGIN = "session-manager-plugin"
PLUGIN_HELP = ("https://docs.aws.amazon.com/systems-manager/latest/userguide/"
               "session-manager-working-with-install-plugin.html")
CLI_HELP = "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"


@dataclass
class Entry:
    """How to get into a run: the argv, the environment and folder it starts with (None: this
    process's), what to say first, and what to say when it fails."""

    argv: list[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    note: str = ""
    on_failure: str = ""


def plan(record: Record, host: str | None = None, command: Sequence[str] = (), *,
         enable_remote_debug: bool = False,
         echo: Callable[[str], None] = print) -> Entry:
    """What `sagebook shell` runs for `record`'s `host` (default algo-1): `command`, or a shell
    when it is empty. LaunchError with what to do where the run cannot be entered."""
    request = _request(record)
    count = int(request.get("ResourceConfig", {}).get("InstanceCount") or 1)
    names = contract.host_names(count)
    host = host or names[0]
    if host not in names:
        raise LaunchError(f"run {record.run_id} has hosts {', '.join(names)}: no {host!r}")
    instance_type = str(record.manifest.get("instance_type") or "")
    kind = kind_of(instance_type)
    if kind is None:
        raise LaunchError(f"run {record.run_id} ran on {instance_type!r}, which no backend runs")
    if kind.remote:
        return _cloud(record, request, host, list(command), enable_remote_debug, echo)
    here = socket.gethostname()
    if record.manifest.get("host") not in (None, here):
        where = terminal_text(str(record.manifest.get("host")), one_line=True)
        raise LaunchError(f"run {record.run_id} ran on {where}: run `sagebook shell` there")
    if kind.needs_image:
        return _docker(record, request, host, count, list(command))
    return _local(record, instance_type, host, names, list(command))


def enter(entry: Entry, echo: Callable[[str], None] = print) -> int:
    """Run `entry` with this terminal and return its exit code. Ctrl-C is the shell's to
    handle: this process waits on until it ends, as the launcher does for `--pdb`."""
    if entry.note:
        echo(entry.note)
    try:
        proc = subprocess.Popen(entry.argv, env=entry.env, cwd=entry.cwd)
    except FileNotFoundError:
        raise LaunchError(f"{entry.argv[0]} not found") from None
    while True:
        try:
            proc.wait()
            break
        except KeyboardInterrupt:
            continue
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    if code and entry.on_failure:
        echo(entry.on_failure)
    return code


# --- local -----------------------------------------------------------------------------------


def _local(record: Record, instance_type: str, host: str, names: list[str],
           command: list[str]) -> Entry:
    work = liveness.run_folder(record.experiment, record.run_id, record.uri)
    root = work / "opt_ml" if len(names) == 1 else work / host / "opt_ml"
    running = record.status not in TERMINAL
    process = _training_process(record, root) if running else None
    if process is not None:
        return _join(process, command or _default_shell())
    if not root.is_dir():
        raise LaunchError(f"run {record.run_id}'s /opt/ml for {host} is not on this machine "
                          f"({root} is gone): nothing to look into")
    why = (f"run {record.run_id} is {record.status}" if not running else
           f"no training process of run {record.run_id} runs on this machine")
    request, image_environment = _kept_request(root), _image_environment(record)
    env = {**contract.machine_environment(os.environ),
           **contract.environment(request, contract.CONTAINER_BASE, instance_type, host=host,
                                  hosts=names, image_environment=image_environment)}
    if namespace.support().available:
        # `env -C`, not `sh -c cd`: dash drops variables whose names are no shell identifiers
        inner = ["env", "-C", contract.CONTAINER_BASE, *(command or _default_shell())]
        argv = namespace.wrap(inner, root, root.parent / "namespace", names)
        seen = f"its kept /opt/ml ({root})"
    else:
        env.update(contract.environment(request, str(root), instance_type, host=host,
                                        hosts=names, image_environment=image_environment))
        argv = command or _default_shell()
        seen = f"its kept tree at {root} (named by SAGEMAKER_BASE_DIR: no namespaces here)"
    return Entry(argv, env=env, cwd=root,
                 note=f"[sagebook] {why}: this shell sees {seen}, with the environment "
                      "rebuilt from its request; nothing of the run runs any more")


def _kept_request(root: Path) -> dict[str, Any]:
    """The request as this machine launched the run, from the tree it kept
    (`input/config/trainingjobconfig.json`, what SageMaker writes there too): the environment
    a shell starts with comes from this machine's own copy, never from a record in the shared
    store, where anyone on the team may write a request whose `Environment` sets LD_PRELOAD
    or BASH_ENV."""
    path = root / "input/config/trainingjobconfig.json"
    try:
        request = inputs.parse_json(inputs.read_bytes(path, inputs.MAX_RECORD_BYTES), str(path))
    except (inputs.UnreadableFile, StoreError) as exc:
        raise LaunchError(f"the run's kept request cannot be read: {exc}") from None
    if not isinstance(request, dict) or not isinstance(request.get("TrainingJobName"), str):
        raise LaunchError(f"{path}: not a training job request")
    return request


def _training_process(record: Record, root: Path) -> Any:
    """The training process of the host whose tree is `root`, when this machine proves it
    the run's own (see liveness.training_groups); None when none runs here."""
    import psutil  # reason: loaded only when a process is looked at, as in liveness

    for group in liveness.training_groups(record):
        try:
            leader = psutil.Process(group)
            # the supervisor names the host's tree: in the namespace set-up's arguments, or
            # as SAGEMAKER_BASE_DIR where there are no namespaces
            if str(root) not in leader.cmdline() and \
                    leader.environ().get("SAGEMAKER_BASE_DIR") != str(root):
                continue
            children = leader.children()
        except psutil.Error:
            continue
        if children:
            return children[0]
    return None


def _join(process: Any, command: list[str]) -> Entry:
    """Into a live training process's namespaces (when it has its own), its folder and its
    starting environment. `--preserve-credentials`: the namespace maps only the launching
    user, so nsenter may not set groups; that user is uid 0 inside, as the training is."""
    import psutil  # reason: as in _training_process

    try:
        env = process.environ()
        cwd = process.cwd()
        own = os.readlink(f"/proc/{process.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
    except (psutil.Error, OSError) as exc:
        raise LaunchError(f"the training process {process.pid} cannot be looked at: {exc}") \
            from None
    note = f"[sagebook] in training process {process.pid}'s view"
    if own:
        return Entry(command, env=env, cwd=Path(cwd), note=note + " (its folder, environment)")
    nsenter = shutil.which("nsenter")
    if nsenter is None:
        raise LaunchError("entering the run's namespaces needs nsenter (util-linux)")
    return Entry([nsenter, "--target", str(process.pid), "--user", "--mount",
                  "--preserve-credentials", "--wd", "--", *command], env=env,
                 note=note + " (its /opt/ml, folder and environment)")


def _default_shell() -> list[str]:
    return [os.environ.get("SHELL") or "/bin/sh"]


def _image_environment(record: Record) -> str:
    """The run's `image_environment`, from the job config its record keeps."""
    name = "sagemaker_config.yaml"
    try:
        data = inputs.parse_yaml_text(read_optional(record, name, limit=inputs.MAX_CONFIG_BYTES),
                                      record.url(name))
    except StoreError:  # DamagedFile: not YAML, a bomb, too large
        return "toolkit"
    value = data.get("image_environment") if isinstance(data, dict) else None
    return value if value in contract.IMAGE_ENVIRONMENTS else "toolkit"


# --- local-docker ----------------------------------------------------------------------------


def _docker(record: Record, request: dict[str, Any], host: str, count: int,
            command: list[str]) -> Entry:
    if record.status in TERMINAL:
        raise LaunchError(f"run {record.run_id} is {record.status}: its container is gone "
                          "(docker run --rm); its /opt/ml is kept in "
                          f"{liveness.run_folder(record.experiment, record.run_id, record.uri)}")
    return Entry(docker_exec(request["TrainingJobName"], host, count, command,
                             tty=os.isatty(0)))


def docker_exec(job_name: str, host: str, count: int, command: Sequence[str], *,
                tty: bool) -> list[str]:
    """The `docker exec` argv into one host's container, with the container's own environment
    and working folder; bash where the image has it, else sh."""
    shell = ["/bin/sh", "-c", "command -v bash >/dev/null && exec bash; exec sh"]
    return ["docker", "exec", "-i", *(["-t"] if tty else []),
            container_name(job_name, host, count), *(command or shell)]


# --- ml.* ------------------------------------------------------------------------------------


def _cloud(record: Record, request: dict[str, Any], host: str, command: list[str],
           enable: bool, echo: Callable[[str], None]) -> Entry:
    from botocore.exceptions import BotoCoreError, ClientError  # reason: boto3 on first use

    name = str(record.manifest.get("job_name") or request["TrainingJobName"])
    region, profile = aws.job_location(record.manifest)
    sagemaker = aws.client("sagemaker", profile, region)
    region = sagemaker.meta.region_name
    job = describe(sagemaker, name)
    if job is None:
        raise LaunchError(f"SageMaker has no job {name} in {region}: nothing to enter")
    status, secondary = job["TrainingJobStatus"], job.get("SecondaryStatus", "")
    if status != "InProgress":
        raise LaunchError(f"job {name} is {status}: only a running job can be entered")
    if not (job.get("RemoteDebugConfig") or {}).get("EnableRemoteDebug"):
        if not enable:
            raise LaunchError(
                f"job {name} was created without remote debugging: run `sagebook shell "
                f"{record.experiment}/{record.run_id} --enable-remote-debug` to turn it on now "
                f"(UpdateTrainingJob, while it is Downloading or Training; it is {secondary}), "
                "or launch with `remote_debug: true` in the job config")
        if secondary not in UPDATABLE:
            raise LaunchError(f"job {name} is {secondary}: SageMaker turns remote debugging on "
                              f"only while a job is {' or '.join(UPDATABLE)}; try again then")
        try:
            sagemaker.update_training_job(TrainingJobName=name,
                                          RemoteDebugConfig={"EnableRemoteDebug": True})
        except (ClientError, BotoCoreError) as exc:
            raise LaunchError(f"UpdateTrainingJob {name}: {error_text(exc)}") from None
        echo(f"[sagebook] remote debugging turned on for {name}: the container registers "
             "with Systems Manager within a few minutes; until then the session is refused")
    if shutil.which("aws") is None:
        raise LaunchError(f"a shell into {name} goes through the AWS CLI (v2), which is not on "
                          f"PATH: install it ({CLI_HELP})")
    if shutil.which(SSM_PLUGIN) is None:
        raise LaunchError(f"`aws ssm start-session` needs AWS's Session Manager plugin "
                          f"({SSM_PLUGIN} is not on PATH): install it ({PLUGIN_HELP})")
    return Entry(
        ssm_session(name, host, region, profile, command),
        note=f"[sagebook] opening a Session Manager session into {name} ({host})",
        on_failure=(
            "[sagebook] the session did not open: you need ssm:StartSession on "
            f"arn:aws:sagemaker:{region}:*:training-job/{name.lower()} (and on the SSM "
            "document for a command), the job's role the ssmmessages permissions, and the "
            "container must have registered (a minute or two after remote debugging is on): "
            "see the README, \"A shell into a run\""))


def ssm_session(job_name: str, host: str, region: str | None, profile: str | None,
                command: Sequence[str] = ()) -> list[str]:
    """The `aws ssm start-session` argv into one host of a job: its documented target, and a
    command through AWS-StartInteractiveCommand when one is given."""
    argv = ["aws", "ssm", "start-session", "--target",
            f"sagemaker-training-job:{job_name}_{host}"]
    if command:
        argv += ["--document-name", "AWS-StartInteractiveCommand", "--parameters",
                 json.dumps({"command": [shlex.join(command)]})]
    if region:
        argv += ["--region", region]
    if profile:
        argv += ["--profile", profile]
    return argv


def _request(record: Record) -> dict[str, Any]:
    """The run's CreateTrainingJob request, read within the store's bounds."""
    where = record.url("request.json")
    try:
        text = read_optional(record, "request.json")
        request = inputs.parse_json(text, where) if text is not None else None
    except StoreError as exc:  # DamagedFile: unreadable, too large, not JSON
        raise LaunchError(f"the run's request cannot be read: {exc}") from None
    if not isinstance(request, dict) or not isinstance(request.get("TrainingJobName"), str):
        raise LaunchError(f"{where}: no training job request")
    return request
