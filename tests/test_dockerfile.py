"""The training image: Dockerfile, .dockerignore, the `train` entry point, and the linters
for every file of the image tooling (hadolint, and shellcheck for both scripts)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
TRAIN = REPO / "sagemaker_container" / "train"
SHELL_SCRIPTS = [TRAIN, REPO / "build_and_push.sh"]


def tool(name: str) -> str:
    """The linter installed with the test extra: next to this Python first, then on PATH.

    A missing linter fails the test rather than skipping it: an unchecked file must not
    look like a passing one.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found next to {sys.executable} or on PATH; install the test extra")
    return found


# --- linters ------------------------------------------------------------------------------


def test_dockerfile_is_clean_under_hadolint():
    proc = subprocess.run(
        [tool("hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: path.name)
def test_shell_script_is_clean_under_shellcheck(script):
    proc = subprocess.run(
        [tool("shellcheck"), "--severity=style", str(script)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- Dockerfile ---------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        result.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return result


def test_base_image_is_a_pinned_build_argument():
    steps = instructions(DOCKERFILE)
    froms = [args for keyword, args in steps if keyword == "FROM"]
    # the toolkit's build stage and the image start from the same base
    assert froms == ["${BASE_IMAGE} AS toolkit", "${BASE_IMAGE}"]
    assert ("ARG", "BASE_IMAGE=python:3.11-slim-bookworm") in steps
    assert steps.index(("ARG", "BASE_IMAGE=python:3.11-slim-bookworm")) < steps.index(
        ("FROM", "${BASE_IMAGE} AS toolkit")
    )


def test_image_follows_the_container_contract():
    steps = instructions(DOCKERFILE)
    keywords = [keyword for keyword, _ in steps]
    assert "ENTRYPOINT" not in keywords
    cmds = [args for keyword, args in steps if keyword == "CMD"]
    assert [json.loads(args) for args in cmds] == [["train"]]
    assert ("WORKDIR", "/opt/program") in steps

    env = " ".join(args for keyword, args in steps if keyword == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert 'PATH="/opt/program:${PATH}"' in env


def test_requirements_are_installed_in_their_own_cached_layer():
    steps = instructions(DOCKERFILE)
    copy_requirements = steps.index(
        ("COPY", "sagemaker_container/requirements.txt /opt/program/requirements.txt")
    )
    (install,) = [i for i, (k, args) in enumerate(steps)
                  if k == "RUN" and "pip install" in args and "requirements.txt" in args]
    copy_code = steps.index(("COPY", "sagemaker_container/ /opt/program/"))
    assert copy_requirements < install < copy_code
    assert "--no-cache-dir" in steps[install][1]
    assert "-r /opt/program/requirements.txt" in steps[install][1]


def test_dockerignore_keeps_the_build_context_small():
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".git", ".venv*", "experiments", "tests", "**/__pycache__", "**/*.py[cod]"):
        assert required in patterns
    assert not any(pattern.startswith("sagemaker_container") for pattern in patterns)
    assert not any(pattern.startswith("!") for pattern in patterns)


def test_train_is_executable():
    assert os.access(TRAIN, os.X_OK)
    assert TRAIN.read_text().startswith("#!/usr/bin/env bash\n")


# --- the train entry point ----------------------------------------------------------------

FAKE_TRAIN = """\
import os
import sys

print("entry:", os.path.realpath(__file__))
print("cwd:", os.path.realpath(os.getcwd()))
print("args:", sys.argv[1:])
"""


@pytest.fixture
def program(tmp_path) -> Path:
    """The image's /opt/program, outside the image: the train script next to a train.py."""
    folder = tmp_path / "program"
    folder.mkdir()
    shutil.copy2(TRAIN, folder / "train")
    (folder / "train.py").write_text(FAKE_TRAIN)
    return folder


@pytest.fixture
def base_dir(tmp_path) -> Path:
    folder = tmp_path / "opt_ml"
    (folder / "input" / "data").mkdir(parents=True)
    return folder


def train_env(base_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SAGEBOOK_")}
    env.update(SAGEMAKER_BASE_DIR=str(base_dir), TMPDIR=str(base_dir.parent), **extra)
    return env


def run_train(program: Path, base_dir: Path, *args: str, **env: str):
    return subprocess.run(
        [str(program / "train"), *args],
        env=train_env(base_dir, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def entry_of(stdout: str) -> Path:
    (line,) = [line for line in stdout.splitlines() if line.startswith("entry: ")]
    return Path(line.removeprefix("entry: "))


def test_runs_the_baked_in_code_without_a_code_channel(program, base_dir):
    proc = run_train(program, base_dir)
    assert proc.returncode == 0, proc.stderr
    assert entry_of(proc.stdout) == (program / "train.py").resolve()
    assert f"cwd: {program.resolve()}" in proc.stdout
    assert "baked-in code" in proc.stderr


def test_prefers_the_code_channel_folder(program, base_dir):
    channel = base_dir / "input" / "data" / "code"
    channel.mkdir()
    (channel / "train.py").write_text(FAKE_TRAIN)
    proc = run_train(program, base_dir)
    assert proc.returncode == 0, proc.stderr
    assert entry_of(proc.stdout) == (channel / "train.py").resolve()
    assert f"cwd: {channel.resolve()}" in proc.stdout
    assert "code channel" in proc.stderr


def test_unpacks_a_sourcedir_tarball_from_the_code_channel(program, base_dir, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    # The entry point imports a sibling module, as real training code does.
    (source / "train.py").write_text("import helper\n" + FAKE_TRAIN)
    (source / "helper.py").write_text("print('helper imported')\n")
    channel = base_dir / "input" / "data" / "code"
    channel.mkdir()
    with tarfile.open(channel / "sourcedir.tar.gz", "w:gz") as archive:
        for path in source.iterdir():
            archive.add(path, arcname=path.name)

    proc = run_train(program, base_dir)
    assert proc.returncode == 0, proc.stderr
    entry = entry_of(proc.stdout)
    assert entry.name == "train.py"
    assert entry.parent.name.startswith("sagebook-code.")
    assert entry.parent.parent == tmp_path.resolve()
    assert "helper imported" in proc.stdout
    assert "sourcedir.tar.gz" in proc.stderr


def test_entry_point_can_be_overridden(program, base_dir):
    channel = base_dir / "input" / "data" / "code"
    (channel / "jobs").mkdir(parents=True)
    (channel / "jobs" / "finetune.py").write_text(FAKE_TRAIN)
    proc = run_train(program, base_dir, SAGEBOOK_ENTRY_POINT="jobs/finetune.py")
    assert proc.returncode == 0, proc.stderr
    assert entry_of(proc.stdout) == (channel / "jobs" / "finetune.py").resolve()


def test_arguments_are_passed_to_the_training_script(program, base_dir):
    proc = run_train(program, base_dir, "--epochs", "3")
    assert proc.returncode == 0, proc.stderr
    assert "args: ['--epochs', '3']" in proc.stdout


def test_a_code_channel_without_code_fails_with_a_failure_reason(program, base_dir):
    channel = base_dir / "input" / "data" / "code"
    channel.mkdir()
    (channel / "README.md").write_text("not code\n")
    proc = run_train(program, base_dir)
    assert proc.returncode != 0
    assert "holds neither train.py nor sourcedir.tar.gz" in proc.stderr
    assert "train.py" not in proc.stdout
    failure = (base_dir / "output" / "failure").read_text()
    assert "holds neither train.py nor sourcedir.tar.gz" in failure


def test_a_missing_interpreter_fails_clearly(program, base_dir):
    proc = run_train(program, base_dir, SAGEBOOK_PYTHON="no-such-python")
    assert proc.returncode != 0
    assert "python interpreter not found: no-such-python" in proc.stderr


SIGNAL_TRAIN = """\
import os
import signal
import sys
import time

def stop(signum, frame):
    print("got SIGTERM", flush=True)
    sys.exit(42)

signal.signal(signal.SIGTERM, stop)
print("pid:", os.getpid(), flush=True)
time.sleep(60)
"""


def test_sigterm_reaches_the_python_process(program, base_dir):
    (program / "train.py").write_text(SIGNAL_TRAIN)
    proc = subprocess.Popen(
        [str(program / "train")],
        env=train_env(base_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        # exec: the training process is the process that was started, not a child of bash.
        assert first.strip() == f"pid: {proc.pid}"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "got SIGTERM" in out, err
    assert proc.returncode == 42


# --- live Docker --------------------------------------------------------------------------


@pytest.mark.docker
def test_image_builds_and_runs_the_code_channel(tmp_path):
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no Docker engine answers: the docker CLI is not on PATH")
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["docker info failed"])[-1]
        pytest.skip(f"no Docker engine answers: {reason}")

    image = f"sagebook-test:{uuid.uuid4().hex[:12]}"
    build = subprocess.run(
        [docker, "build", "--platform", "linux/amd64", "-t", image, str(REPO)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    try:
        channel = tmp_path / "opt_ml" / "input" / "data" / "code"
        channel.mkdir(parents=True)
        (channel / "train.py").write_text(FAKE_TRAIN)
        # No command: the image's CMD must start `train`, as SageMaker local mode does.
        run = subprocess.run(
            [
                docker,
                "run",
                "--rm",
                "--platform",
                "linux/amd64",
                "-v",
                f"{tmp_path / 'opt_ml'}:/opt/ml",
                image,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert entry_of(run.stdout) == Path("/opt/ml/input/data/code/train.py")
        assert "cwd: /opt/ml/input/data/code" in run.stdout
    finally:
        subprocess.run([docker, "rmi", "-f", image], capture_output=True, timeout=120)
