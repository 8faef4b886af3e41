"""build_and_push.sh, driven through stub `aws`, `docker` and `git` executables.

The stubs come first on PATH; the rest of PATH is a folder of links to the real tools
minus aws, docker and git, so a test can also take a tool away entirely. Each stub call
appends one JSON line (tool, argv, stdin when read, selected environment) to a log, and
the stubs' answers are driven by STUB_* environment variables plus two state files
(repository created, image pushed) so that a lookup after a push finds the image.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "build_and_push.sh"

ACCOUNT = "123456789012"
REGION = "us-east-1"
SHA = "0123456789ab"
PUSHED_DIGEST = "sha256:" + "ab" * 32
EXISTING_DIGEST = "sha256:" + "cd" * 32
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
REPOSITORY_URI = f"{REGISTRY}/sagebook-training"
URI = f"{REPOSITORY_URI}@{PUSHED_DIGEST}"

# Exit codes documented in build_and_push.sh --help.
EXIT_USAGE = 2
EXIT_NO_AWS = 3
EXIT_NO_DOCKER = 4
EXIT_DOCKER_DOWN = 5
EXIT_NO_CREDENTIALS = 6
EXIT_NO_REGION = 7
EXIT_DIRTY = 8
EXIT_NO_COMMIT = 9
EXIT_LOGIN = 11
EXIT_BUILD = 12
EXIT_PUSH = 13
EXIT_CONFIG = 15

STUBBED_TOOLS = ("aws", "docker", "git")

STUB_SOURCE = r"""
import json
import os
import sys
from pathlib import Path

tool = os.path.basename(sys.argv[0])
args = sys.argv[1:]
env = os.environ
state = Path(env["STUB_STATE"])
record = {"tool": tool, "args": args}
for name in ("BUILDX_NO_DEFAULT_ATTESTATIONS", "AWS_PAGER"):
    if name in env:
        record.setdefault("env", {})[name] = env[name]
if tool == "docker" and "--password-stdin" in args:
    record["stdin"] = sys.stdin.read()
with open(state / "calls.jsonl", "a") as log:
    log.write(json.dumps(record) + "\n")


def fail(message, code):
    sys.stderr.write(message + "\n")
    sys.exit(code)


def aws(service, operation):
    if (service, operation) == ("configure", "get"):
        if env.get("STUB_AWS_REGION"):
            print(env["STUB_AWS_REGION"])
            return
        sys.exit(1)
    if (service, operation) == ("sts", "get-caller-identity"):
        if env.get("STUB_NO_CREDENTIALS"):
            fail("Unable to locate credentials. You can configure credentials by running "
                 '"aws configure".', 253)
        print(env["STUB_ACCOUNT"])
        return
    if (service, operation) == ("ecr", "describe-repositories"):
        if env.get("STUB_REPO_EXISTS") or (state / "repository-created").exists():
            print("uri-of-the-repository")
            return
        fail("An error occurred (RepositoryNotFoundException) when calling the "
             "DescribeRepositories operation: The repository does not exist", 254)
    if (service, operation) == ("ecr", "create-repository"):
        (state / "repository-created").touch()
        print("{}")
        return
    if (service, operation) == ("ecr", "describe-images"):
        if (state / "pushed").exists():
            print(env["STUB_PUSHED_DIGEST"] + "\t" + env["STUB_MEDIA_TYPE"])
            return
        if env.get("STUB_IMAGE_EXISTS"):
            print(env["STUB_EXISTING_DIGEST"] + "\t" + env["STUB_MEDIA_TYPE"])
            return
        fail("An error occurred (ImageNotFoundException) when calling the DescribeImages "
             "operation: The image requested does not exist", 254)
    if (service, operation) == ("ecr", "get-login-password"):
        print("stub-password")
        return
    fail(f"aws stub: unexpected call {args}", 99)


def docker(command):
    if command == "info":
        if env.get("STUB_DOCKER_DOWN"):
            fail("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                 "Is the docker daemon running?", 1)
        print("Server Version: stub")
    elif command == "login":
        if env.get("STUB_LOGIN_FAILS"):
            fail("Error response from daemon: login attempt failed", 1)
        print("Login Succeeded")
    elif command == "build":
        if env.get("STUB_BUILD_FAILS"):
            fail("ERROR: failed to solve: process did not complete successfully", 1)
        print("#1 building (stub)")
    elif command == "push":
        if env.get("STUB_PUSH_DENIED"):
            print("The push refers to repository [stub]")
            fail("denied: User: arn:aws:iam::123456789012:user/alice is not authorized to "
                 "perform: ecr:InitiateLayerUpload", 1)
        (state / "pushed").touch()
        print("stub: digest: " + env["STUB_PUSHED_DIGEST"] + " size: 1234")
    else:
        fail(f"docker stub: unexpected call {args}", 99)


def git(command):
    if env.get("STUB_GIT_NO_REPO"):
        fail("fatal: not a git repository (or any of the parent directories): .git", 128)
    if command == "rev-parse":
        print(env["STUB_GIT_SHA"])
    elif command == "status":
        sys.stdout.write(env.get("STUB_GIT_STATUS", ""))
    else:
        fail(f"git stub: unexpected call {args}", 99)


if tool == "aws":
    aws(args[0], args[1])
elif tool == "docker":
    docker(args[0])
else:
    git(args[0])
"""


@pytest.fixture(scope="session")
def system_bin(tmp_path_factory) -> Path:
    """A folder of links to every tool on PATH except the stubbed ones."""
    folder = tmp_path_factory.mktemp("system-bin")
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            target = folder / entry.name
            if entry.name in STUBBED_TOOLS or target.exists() or target.is_symlink():
                continue
            if entry.is_file() and os.access(entry.path, os.X_OK):
                target.symlink_to(entry.path)
    assert (folder / "bash").exists(), "bash is needed to run build_and_push.sh"
    return folder


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    calls: list[dict]

    def find(self, tool: str, *prefix: str) -> list[int]:
        """Indexes of the calls of `tool` whose argv starts with `prefix`."""
        return [
            i
            for i, call in enumerate(self.calls)
            if call["tool"] == tool and call["args"][: len(prefix)] == list(prefix)
        ]

    def only(self, tool: str, *prefix: str) -> dict:
        found = self.find(tool, *prefix)
        assert len(found) == 1, f"expected one {tool} {' '.join(prefix)} call: {self.calls}"
        return self.calls[found[0]]

    @property
    def last_line(self) -> str:
        lines = self.stdout.splitlines()
        return lines[-1] if lines else ""


class Stubs:
    def __init__(self, root: Path, system_bin: Path):
        self.bin = root / "stub-bin"
        self.state = root / "stub-state"
        self.bin.mkdir()
        self.state.mkdir()
        source = f"#!{sys.executable}\n{STUB_SOURCE}"
        for tool in STUBBED_TOOLS:
            path = self.bin / tool
            path.write_text(source)
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        home = root / "home"
        home.mkdir()
        # A clean environment: nothing of the caller's AWS or Docker setup leaks in.
        self.env = {
            "PATH": f"{self.bin}{os.pathsep}{system_bin}",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "TMPDIR": str(root),
            "STUB_STATE": str(self.state),
            "STUB_ACCOUNT": ACCOUNT,
            "STUB_AWS_REGION": REGION,
            "STUB_GIT_SHA": SHA,
            "STUB_PUSHED_DIGEST": PUSHED_DIGEST,
            "STUB_EXISTING_DIGEST": EXISTING_DIGEST,
            "STUB_MEDIA_TYPE": "application/vnd.docker.distribution.manifest.v2+json",
        }

    def remove(self, tool: str) -> None:
        (self.bin / tool).unlink()

    def run(self, *args: str, **stub_env: str) -> Result:
        log = self.state / "calls.jsonl"
        log.unlink(missing_ok=True)
        proc = subprocess.run(
            [str(SCRIPT), *args],
            env={**self.env, **stub_env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return Result(proc.returncode, proc.stdout, proc.stderr, calls)


@pytest.fixture
def stubs(tmp_path, system_bin) -> Stubs:
    return Stubs(tmp_path, system_bin)


def image_tag_of_build(result: Result) -> str:
    build = result.only("docker", "build")["args"]
    return build[build.index("-t") + 1]


def test_help_documents_every_exit_code(stubs):
    result = stubs.run("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: build_and_push.sh")
    documented = {int(code) for code in re.findall(r"^  (\d+)\s", result.stdout, re.M)}
    assert documented == set(range(16))
    assert result.calls == []


def test_unknown_option_is_a_usage_error(stubs):
    result = stubs.run("--frobnicate")
    assert result.returncode == EXIT_USAGE
    assert "unknown argument: --frobnicate" in result.stderr


def test_first_push_creates_repository_builds_pushes_and_prints_digest_uri(stubs):
    result = stubs.run()
    assert result.returncode == 0, result.stderr
    # stdout holds the URI alone: everything else is progress on stderr.
    assert result.stdout.splitlines() == [URI]

    create = result.only("aws", "ecr", "create-repository")["args"]
    assert create[create.index("--repository-name") + 1] == "sagebook-training"
    assert create[create.index("--image-scanning-configuration") + 1] == "scanOnPush=true"
    assert create[create.index("--image-tag-mutability") + 1] == "IMMUTABLE"

    login = result.only("docker", "login")
    assert login["args"] == ["login", "--username", "AWS", "--password-stdin", REGISTRY]
    assert login["stdin"].strip() == "stub-password"
    password = result.only("aws", "ecr", "get-login-password")["args"]
    assert password[password.index("--region") + 1] == REGION

    build = result.only("docker", "build")
    args = build["args"]
    assert args[args.index("--platform") + 1] == "linux/amd64"
    assert os.path.samefile(args[args.index("-f") + 1], REPO / "Dockerfile")
    assert args[args.index("-t") + 1] == f"{REPOSITORY_URI}:{SHA}"
    assert args[-1] == "."
    assert build["env"]["BUILDX_NO_DEFAULT_ATTESTATIONS"] == "1"

    assert result.only("docker", "push")["args"] == ["push", f"{REPOSITORY_URI}:{SHA}"]

    (create_at,) = result.find("aws", "ecr", "create-repository")
    (login_at,) = result.find("docker", "login")
    (build_at,) = result.find("docker", "build")
    (push_at,) = result.find("docker", "push")
    assert create_at < login_at < push_at
    assert build_at < push_at
    # The digest is read back from ECR after the push.
    assert result.find("aws", "ecr", "describe-images")[-1] > push_at
    # No AWS CLI pager may wait for a key press.
    assert all(call["env"]["AWS_PAGER"] == "" for call in result.calls if call["tool"] == "aws")


def test_existing_repository_is_not_created(stubs):
    result = stubs.run(STUB_REPO_EXISTS="1")
    assert result.returncode == 0, result.stderr
    assert result.find("aws", "ecr", "create-repository") == []
    assert result.find("docker", "push")
    assert result.last_line == URI


def test_existing_image_skips_build_and_push_and_needs_no_docker(stubs, tmp_path):
    stubs.remove("docker")
    config = tmp_path / "job.yaml"
    config.write_text("image_uri: old\n")
    result = stubs.run("--update-config", str(config), STUB_REPO_EXISTS="1", STUB_IMAGE_EXISTS="1")
    assert result.returncode == 0, result.stderr
    assert "already in ECR; skipping build and push" in result.stderr
    assert result.last_line == f"{REPOSITORY_URI}@{EXISTING_DIGEST}"
    assert not [call for call in result.calls if call["tool"] == "docker"]
    assert result.find("aws", "ecr", "get-login-password") == []
    assert config.read_text() == f"image_uri: {REPOSITORY_URI}@{EXISTING_DIGEST}\n"


def test_dirty_tree_is_refused(stubs):
    result = stubs.run(STUB_GIT_STATUS=" M sagemaker_container/train.py\n?? notes.txt\n")
    assert result.returncode == EXIT_DIRTY
    assert "uncommitted changes" in result.stderr
    assert "sagemaker_container/train.py" in result.stderr
    assert "--allow-dirty" in result.stderr
    assert result.stdout == ""
    assert not [call for call in result.calls if call["tool"] in ("aws", "docker")]


def test_dirty_tree_is_built_with_allow_dirty_under_a_dirty_tag(stubs):
    result = stubs.run("--allow-dirty", STUB_GIT_STATUS=" M sagemaker_container/train.py\n")
    assert result.returncode == 0, result.stderr
    assert "warning: building with uncommitted changes" in result.stderr
    image = image_tag_of_build(result)
    assert re.fullmatch(rf"{re.escape(REPOSITORY_URI)}:{SHA}-dirty-\d{{8}}T\d{{6}}Z", image)
    assert result.last_line == URI


def test_explicit_tag_works_outside_git_with_a_warning(stubs):
    result = stubs.run("--tag", "v1", STUB_GIT_NO_REPO="1")
    assert result.returncode == 0, result.stderr
    assert "not in a git repository; cannot check for uncommitted changes" in result.stderr
    assert image_tag_of_build(result) == f"{REPOSITORY_URI}:v1"


@pytest.mark.parametrize(
    ("args", "platform", "tag"),
    [
        (("--platform", "linux/arm64"), "linux/arm64", f"{SHA}-arm64"),
        (("--tag", "v1.2", "--platform", "linux/arm64"), "linux/arm64", "v1.2"),
        (("--name", "team/trainer", "--tag", "v1"), "linux/amd64", "v1"),
    ],
)
def test_tag_name_and_platform(stubs, args, platform, tag):
    result = stubs.run(*args)
    assert result.returncode == 0, result.stderr
    build = result.only("docker", "build")["args"]
    assert build[build.index("--platform") + 1] == platform
    name = args[args.index("--name") + 1] if "--name" in args else "sagebook-training"
    assert image_tag_of_build(result) == f"{REGISTRY}/{name}:{tag}"
    assert result.last_line == f"{REGISTRY}/{name}@{PUSHED_DIGEST}"


def test_other_dockerfile_gets_its_own_default_tag(stubs, tmp_path):
    dockerfile = tmp_path / "GPU.Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    result = stubs.run("--dockerfile", str(dockerfile))
    assert result.returncode == 0, result.stderr
    build = result.only("docker", "build")["args"]
    assert build[build.index("-f") + 1] == str(dockerfile)
    assert image_tag_of_build(result) == f"{REPOSITORY_URI}:{SHA}-gpu.dockerfile"


def test_profile_and_region_reach_every_aws_call(stubs):
    result = stubs.run("--profile", "team", "--region", "eu-west-1")
    assert result.returncode == 0, result.stderr
    aws_calls = [call["args"] for call in result.calls if call["tool"] == "aws"]
    assert aws_calls
    for args in aws_calls:
        assert args[args.index("--profile") + 1] == "team", args
        assert args[args.index("--region") + 1] == "eu-west-1", args
    assert (
        result.only("docker", "login")["args"][-1] == f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
    )


def test_region_comes_from_the_profile_configuration(stubs):
    result = stubs.run("--profile", "team", STUB_AWS_REGION="ap-southeast-2")
    assert result.returncode == 0, result.stderr
    configure = result.only("aws", "configure", "get")["args"]
    assert configure[:3] == ["configure", "get", "region"]
    assert configure[configure.index("--profile") + 1] == "team"
    assert result.last_line.startswith(f"{ACCOUNT}.dkr.ecr.ap-southeast-2.amazonaws.com/")


MUTATING = [
    ("aws", "ecr", "create-repository"),
    ("aws", "ecr", "get-login-password"),
    ("docker", "login"),
    ("docker", "build"),
    ("docker", "push"),
]


@pytest.mark.parametrize(
    ("stub_env", "remove", "code", "messages"),
    [
        ({}, "aws", EXIT_NO_AWS, ["the AWS CLI (aws) is not on PATH"]),
        ({}, "docker", EXIT_NO_DOCKER, ["the Docker CLI (docker) is not on PATH"]),
        (
            {"STUB_DOCKER_DOWN": "1"},
            None,
            EXIT_DOCKER_DOWN,
            ["the Docker daemon is not answering", "Cannot connect to the Docker daemon"],
        ),
        (
            {"STUB_NO_CREDENTIALS": "1"},
            None,
            EXIT_NO_CREDENTIALS,
            ["no usable AWS credentials", "Unable to locate credentials"],
        ),
        ({"STUB_AWS_REGION": ""}, None, EXIT_NO_REGION, ["no AWS region"]),
        ({"STUB_GIT_NO_REPO": "1"}, None, EXIT_NO_COMMIT, ["cannot name the current commit"]),
        ({"STUB_LOGIN_FAILS": "1"}, None, EXIT_LOGIN, ["docker login to", "failed"]),
        ({"STUB_BUILD_FAILS": "1"}, None, EXIT_BUILD, ["docker build failed"]),
        (
            {"STUB_PUSH_DENIED": "1"},
            None,
            EXIT_PUSH,
            ["docker push was denied", "not authorized", "ecr:PutImage"],
        ),
    ],
    ids=[
        "no-aws",
        "no-docker",
        "daemon-down",
        "no-credentials",
        "no-region",
        "no-commit",
        "login-fails",
        "build-fails",
        "push-denied",
    ],
)
def test_failures_have_a_message_and_their_own_exit_code(stubs, stub_env, remove, code, messages):
    if remove:
        stubs.remove(remove)
    result = stubs.run(**stub_env)
    assert result.returncode == code, result.stderr
    for message in messages:
        assert message in result.stderr
    assert result.stdout == ""
    if code in (EXIT_NO_AWS, EXIT_NO_DOCKER, EXIT_DOCKER_DOWN, EXIT_NO_CREDENTIALS):
        # Preconditions fail before anything is changed.
        for mutating in MUTATING:
            assert result.find(*mutating) == [], mutating


def test_dry_run_changes_nothing_and_prints_the_commands(stubs, tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text("image_uri: old  # keep me\n")
    result = stubs.run("--dry-run", "--update-config", str(config))
    assert result.returncode == 0, result.stderr
    for mutating in MUTATING:
        assert result.find(*mutating) == [], mutating
    assert not (stubs.state / "repository-created").exists()
    assert config.read_text() == "image_uri: old  # keep me\n"

    printed = [line for line in result.stdout.splitlines() if line.startswith("dry-run: ")]
    assert any(
        "aws ecr create-repository --repository-name sagebook-training" in line
        and "scanOnPush=true" in line
        and "IMMUTABLE" in line
        for line in printed
    )
    assert any(
        "aws ecr get-login-password" in line
        and f"| docker login --username AWS --password-stdin {REGISTRY}" in line
        for line in printed
    )
    assert any(
        line.startswith("dry-run: BUILDX_NO_DEFAULT_ATTESTATIONS=1 docker build ")
        and "--platform linux/amd64 -f " in line
        and line.endswith(f"/Dockerfile -t {REPOSITORY_URI}:{SHA} .")
        for line in printed
    )
    assert any(line == f"dry-run: docker push {REPOSITORY_URI}:{SHA}" for line in printed)
    assert any(f"set image_uri in {config}" in line for line in printed)


CONFIG_BEFORE = """\
# SageMaker job for the baseline model.
job_name_prefix: baseline   # shown in the console
instance_type: ml.g5.xlarge
image_uri: {value}   # filled in by build_and_push.sh
environment:
  # image_uri: this commented line is not a key
  LOG_LEVEL: info
"""


@pytest.mark.parametrize(
    ("value", "expected_line"),
    [
        ("old:latest", f"image_uri: {URI}   # filled in by build_and_push.sh"),
        ('"old:latest"', f'image_uri: "{URI}"   # filled in by build_and_push.sh'),
        ("'old:latest'", f"image_uri: '{URI}'   # filled in by build_and_push.sh"),
        # With no value, all the blanks before the comment stay with the comment.
        ("", f"image_uri: {URI}    # filled in by build_and_push.sh"),
    ],
    ids=["plain", "double-quoted", "single-quoted", "empty"],
)
def test_update_config_rewrites_only_the_image_uri_line(stubs, tmp_path, value, expected_line):
    before = CONFIG_BEFORE.format(value=value)
    config = tmp_path / "sagemaker_config.yaml"
    config.write_text(before)
    config.chmod(0o640)
    result = stubs.run("--update-config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.last_line == URI

    old_lines = before.splitlines()
    new_lines = config.read_text().splitlines()
    changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b]
    assert changed == [3]
    assert new_lines[3] == expected_line
    assert config.read_text().endswith("\n")
    assert stat.S_IMODE(config.stat().st_mode) == 0o640


def test_update_config_pushes_to_the_region_of_the_job_it_updates(stubs, tmp_path):
    config = tmp_path / "job.yaml"
    config.write_text("image_uri: old\nregion: 'eu-west-2'   # where the job runs\n")
    result = stubs.run("--update-config", str(config))  # the CLI's own region: us-east-1
    assert result.returncode == 0, result.stderr
    for call in result.calls:
        if call["tool"] == "aws" and call["args"][:2] != ["configure", "get"]:
            assert call["args"][call["args"].index("--region") + 1] == "eu-west-2", call
    far = f"{ACCOUNT}.dkr.ecr.eu-west-2.amazonaws.com/sagebook-training@{PUSHED_DIGEST}"
    assert result.last_line == far
    assert config.read_text().splitlines()[0] == f"image_uri: {far}"
    assert "pushing to eu-west-2, the region of the job in" in result.stderr

    result = stubs.run("--update-config", str(config), "--region", "us-east-1")
    assert result.returncode == EXIT_CONFIG
    assert f"--region us-east-1, but the job in {config} runs in eu-west-2" in result.stderr
    assert not any(result.find(*mutating) for mutating in MUTATING)
    assert config.read_text().splitlines()[0] == f"image_uri: {far}"


def test_update_config_keeps_indentation_and_crlf(stubs, tmp_path):
    config = tmp_path / "job.yaml"
    config.write_bytes(b"job:\r\n  image_uri: old\r\n  role: arn\r\n")
    result = stubs.run("--update-config", str(config))
    assert result.returncode == 0, result.stderr
    assert config.read_bytes() == f"job:\r\n  image_uri: {URI}\r\n  role: arn\r\n".encode()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("instance_type: ml.m5.large\n# image_uri: commented out\n", "has no image_uri: key"),
        ("image_uri: a\nother:\n  image_uri: b\n", "has 2 image_uri: keys"),
    ],
    ids=["missing", "ambiguous"],
)
def test_update_config_without_exactly_one_key_fails_before_any_work(
    stubs, tmp_path, content, message
):
    config = tmp_path / "job.yaml"
    config.write_text(content)
    result = stubs.run("--update-config", str(config))
    assert result.returncode == EXIT_CONFIG
    assert message in result.stderr
    assert result.calls == []
    assert config.read_text() == content


def test_update_config_missing_file(stubs, tmp_path):
    result = stubs.run("--update-config", str(tmp_path / "absent.yaml"))
    assert result.returncode == EXIT_CONFIG
    assert "not a writable file" in result.stderr


def test_non_docker_v2_manifest_is_warned_about(stubs):
    result = stubs.run(STUB_MEDIA_TYPE="application/vnd.oci.image.index.v1+json")
    assert result.returncode == 0, result.stderr
    assert "warning: the pushed manifest is application/vnd.oci.image.index.v1+json" in (
        result.stderr
    )
    assert result.last_line == URI


def test_script_is_executable():
    assert os.access(SCRIPT, os.X_OK)
