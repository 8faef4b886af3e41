"""`sagebook shell RUN`: a command run in a local run's view (its /opt/ml, folder and
environment) while it trains, as root and as an unprivileged user, and in the folders it kept
once it ended; the `docker exec` argv of a local-docker run; and for ml.* the RemoteDebugConfig
a job is created with, the UpdateTrainingJob that turns it on, and the `aws ssm start-session`
argv, with what is said when a piece is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from sagebook.shell import docker_exec, ssm_session

from conftest import manifest, runs, sagebook

SLEEPER = textwrap.dedent("""\
    import time
    print("ready", flush=True)
    time.sleep(120)
""")
SHOW = "ls /opt/ml/input/config; echo host=$SM_CURRENT_HOST; echo cwd=$(pwd); id -u"


def sleeper_job(folder: Path) -> Path:
    code = folder / "code"
    code.mkdir()
    (code / "train.py").write_text(SLEEPER)
    (folder / "data").mkdir()
    (folder / "data" / "train.csv").write_text("a\n1\n")
    (folder / "training.yaml").write_text("tag: shell\n")
    job = {"experiment": "shell", "training_config": str(folder / "training.yaml"),
           "source_dir": str(code), "training_schema": None, "instance_type": "local",
           "channels": {"train": str(folder / "data")},
           "experiments_uri": str(folder / "experiments")}
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def launched(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """A launch in the background, returned once its training printed `ready`."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "ready":
            return proc
    raise AssertionError(f"the launch ended before its training: {proc.communicate()[1]}")


def check_view(result: subprocess.CompletedProcess, cwd: str) -> None:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == ["hyperparameters.json", "inputdataconfig.json", "resourceconfig.json",
                         "trainingjobconfig.json"]
    assert "host=algo-1" in lines and f"cwd={cwd}" in lines
    assert lines[-1] == "0"  # uid 0, as the training process sees itself


def shell_as(prefix: list[str], python: str, env: dict[str, str], *args: str):
    return subprocess.run([*prefix, python, "-m", "sagebook.cli", "shell", *args],
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.slow
def test_local_shell_sees_the_running_runs_opt_ml_then_its_kept_folders(tmp_path):
    config = sleeper_job(tmp_path)
    launch = launched([sys.executable, "-m", "sagebook.cli", "launch", str(config)],
                      dict(os.environ))
    try:
        [run] = runs(tmp_path / "experiments")
        ref = f"shell/{run.name}"
        store = ("--store", str(tmp_path / "experiments"))
        result = sagebook("shell", ref, *store, "--", "sh", "-c", SHOW)
        check_view(result, str(tmp_path / "code"))  # the training process's own folder
        assert "in training process" in result.stderr
        assert not Path("/opt/ml").exists()  # the machine's /opt is untouched
        # what the shell writes, the training process sees: one tree, not a copy; and `--`
        # right after RUN (the record's folder, no --store), which argparse itself drops
        touched = sagebook("shell", str(run), "--", "touch", "/opt/ml/output/from-shell")
        assert touched.returncode == 0, touched.stderr
        assert (Path(manifest(run)["work_dir"]) / "output/from-shell").is_file()
        assert sagebook("shell", ref, "--host", "algo-2", *store).stderr.strip() == \
            f"sagebook: run {run.name} has hosts algo-1: no 'algo-2'"
        assert sagebook("stop", ref, *store).returncode == 0
        launch.wait(timeout=60)
    finally:
        launch.kill()
    # a request planted in the shared store sets nothing in the shell: the environment comes
    # from the request this machine kept in the run's tree
    request = json.loads((run / "request.json").read_text())
    request["Environment"] = {"LD_PRELOAD": "/tmp/planted.so", "PLANTED": "yes"}
    (run / "request.json").write_text(json.dumps(request))
    planted = sagebook("shell", str(run), "--", "env")
    assert planted.returncode == 0, planted.stderr
    assert "PLANTED=" not in planted.stdout and "LD_PRELOAD" not in planted.stdout
    assert "TRAINING_JOB_NAME=" in planted.stdout
    kept = sagebook("shell", ref, *store, "--", "sh", "-c", SHOW)
    check_view(kept, "/opt/ml")
    assert f"run {run.name} is Stopped: this shell sees its kept /opt/ml" in kept.stderr
    assert "nothing of the run runs any more" in kept.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_an_unprivileged_user_enters_their_own_runs_namespaces(shared_folder):
    from test_local_contract import python_for_others

    python = python_for_others(shared_folder)
    config = sleeper_job(shared_folder)
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    env = {**os.environ, "HOME": str(shared_folder), "SAGEBOOK_WORK_DIR": str(shared_folder)}
    launch = launched([*as_nobody, python, "-m", "sagebook.cli", "launch", str(config)], env)
    try:
        [run] = runs(shared_folder / "experiments")
        ref, store = f"shell/{run.name}", ("--store", str(shared_folder / "experiments"))
        result = shell_as(as_nobody, python, env, ref, *store, "--", "sh", "-c", SHOW)
        check_view(result, str(shared_folder / "code"))
        assert "(its /opt/ml, folder and environment)" in result.stderr  # namespaces joined
        # another unprivileged user proves nothing of the run's: nothing is entered
        stranger = shell_as(["setpriv", "--reuid=65533", "--regid=65533", "--clear-groups"],
                            python, env, ref, *store, "--", "true")
        assert "in training process" not in stranger.stderr
    finally:
        launch.kill()
        subprocess.run([*as_nobody, python, "-m", "sagebook.cli", "stop", ref, *store],
                       capture_output=True, timeout=60, env=env)


@pytest.fixture
def shared_folder(tmp_path_factory):
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="sagebook-shell-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_docker_shell_execs_into_the_hosts_container():
    assert docker_exec("exp-20260101-000000-1", "algo-1", 1, ["ls", "-la"], tty=False) == [
        "docker", "exec", "-i", "sagebook-exp-20260101-000000-1", "ls", "-la"]
    argv = docker_exec("exp-20260101-000000-1", "algo-2", 2, [], tty=True)
    assert argv[:5] == ["docker", "exec", "-i", "-t", "sagebook-exp-20260101-000000-1-algo-2"]
    assert argv[5:7] == ["/bin/sh", "-c"]  # bash where the image has it, else sh


def test_ssm_argv_names_the_documented_target():
    assert ssm_session("digits-1", "algo-2", "eu-west-1", "team") == [
        "aws", "ssm", "start-session", "--target", "sagemaker-training-job:digits-1_algo-2",
        "--region", "eu-west-1", "--profile", "team"]
    argv = ssm_session("digits-1", "algo-1", "us-east-1", None, ["nvidia-smi", "-L"])
    assert argv[5:9] == ["--document-name", "AWS-StartInteractiveCommand", "--parameters",
                         json.dumps({"command": ["nvidia-smi -L"]})]


# --- ml.*: moto over HTTP, its SageMaker extended with RemoteDebugConfig ---------------------


@pytest.fixture
def remote_debug(fake, monkeypatch):
    """moto keeps a job's RemoteDebugConfig (its CreateTrainingJob ignores it) and answers
    UpdateTrainingJob, which it lacks; the updates are counted."""
    from moto.core.responses import ActionResult
    from moto.sagemaker import responses

    updates: list[dict] = []
    original = responses.SageMakerResponse.create_training_job

    def create(response):
        result = original(response)
        job = response.sagemaker_backend.training_jobs[response._get_param("TrainingJobName")]
        job.remote_debug_config = response._get_param("RemoteDebugConfig")
        return result

    def update(response):
        name = response._get_param("TrainingJobName")
        job = response.sagemaker_backend.training_jobs[name]
        job.remote_debug_config = response._get_param("RemoteDebugConfig")
        updates.append({"TrainingJobName": name, "RemoteDebugConfig": job.remote_debug_config})
        return ActionResult({"TrainingJobArn": job.arn})

    monkeypatch.setattr(responses.SageMakerResponse, "create_training_job", create)
    monkeypatch.setattr(responses.SageMakerResponse, "update_training_job", update,
                        raising=False)
    return updates


@pytest.fixture
def fake_cli(tmp_path):
    """`aws` and the Session Manager plugin as scripts that write down how they were run."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("aws", "session-manager-plugin"):
        script = folder / name
        script.write_text(f"#!{sys.executable}\nimport json, sys\n"
                          f"open({str(tmp_path / 'argv.json')!r}, 'w').write("
                          "json.dumps(sys.argv[1:]))\n")
        script.chmod(0o755)
    return folder


def cloud_run(cloud_config, fake, **changes) -> str:
    result = sagebook("launch", str(cloud_config(**changes)))
    assert result.returncode == 0, result.stderr
    fake.script({"secondary": "Training", "message": "Training image download completed"})
    return fake.job().training_job_name


def test_remote_debug_in_the_config_reaches_the_request_and_the_job(
        cloud_config, fake, remote_debug, bucket, s3, fake_cli, tmp_path):
    name = cloud_run(cloud_config, fake, remote_debug=True)
    [key] = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
             if o["Key"].endswith("/request.json")]
    request = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert request["RemoteDebugConfig"] == {"EnableRemoteDebug": True}
    assert fake.job().remote_debug_config == {"EnableRemoteDebug": True}
    env = {**os.environ, "PATH": f"{fake_cli}{os.pathsep}{os.environ['PATH']}"}
    result = sagebook("shell", name, "--store", f"s3://{bucket}/records", "--host", "algo-1",
                      env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "argv.json").read_text()) == [
        "ssm", "start-session", "--target", f"sagemaker-training-job:{name}_algo-1",
        "--region", os.environ["AWS_DEFAULT_REGION"]]
    assert remote_debug == []  # on from the start: nothing to update


def test_a_job_without_remote_debug_says_how_and_the_flag_turns_it_on(
        cloud_config, fake, remote_debug, bucket, fake_cli, tmp_path):
    name = cloud_run(cloud_config, fake)
    store = ("--store", f"s3://{bucket}/records")
    env = {**os.environ, "PATH": f"{fake_cli}{os.pathsep}{os.environ['PATH']}"}
    refused = sagebook("shell", name, *store, env=env)
    assert refused.returncode == 1 and not (tmp_path / "argv.json").exists()
    assert f"job {name} was created without remote debugging" in refused.stderr
    assert "--enable-remote-debug" in refused.stderr and "remote_debug: true" in refused.stderr
    # without the plugin: the update is made, then the missing piece named
    (fake_cli / "session-manager-plugin").unlink()
    missing = sagebook("shell", name, *store, "--enable-remote-debug", env=env)
    assert missing.returncode == 1
    assert remote_debug == [{"TrainingJobName": name,
                             "RemoteDebugConfig": {"EnableRemoteDebug": True}}]
    assert "needs AWS's Session Manager plugin (session-manager-plugin is not on PATH)" in \
        missing.stderr
    no_cli = sagebook("shell", name, *store, env={**os.environ, "PATH": "/nonexistent"})
    assert "goes through the AWS CLI (v2), which is not on PATH" in no_cli.stderr


def test_a_finished_cloud_job_cannot_be_entered(cloud_config, fake, remote_debug, bucket):
    name = cloud_run(cloud_config, fake, remote_debug=True)
    fake.script({"status": "Completed", "secondary": "Completed"})
    result = sagebook("shell", name, "--store", f"s3://{bucket}/records")
    assert result.returncode == 1
    assert f"job {name} is Completed: only a running job can be entered" in result.stderr


def test_a_command_without_its_double_dash_is_an_argument_error_that_shows_the_fix(tmp_path):
    result = sagebook("shell", "some-run", "--store", str(tmp_path / "store"), "ls", "-la")
    assert result.returncode == 2, result.stderr
    assert "invalid argument" in result.stderr
    assert "a command to run goes after --, as in: sagebook shell RUN -- ls -la" in result.stderr
