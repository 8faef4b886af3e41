"""README, "Running on SageMaker → From zero": its commands run one by one, in a new project,
against the local S3/SageMaker endpoint, as a new user would type them. Every AWS call that
sagebook makes on the way is checked against the README's launcher policy, every action that
policy lists must be one the code calls, and the execution policy must cover every S3
location of the job request. With `expected_bucket_owner` set, every S3 request on the wire
carries it."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import pytest

from sagebook.iam_policy import template
from sagebook.project import init

from conftest import REPO
from conftest import push_image as push_to_ecr

ACCOUNT = "123456789012"  # moto's
REGION = "eu-west-1"
BUCKET = "my-team-ml-bucket"
README = (REPO / "README.md").read_text()
LIB = "\n".join(p.read_text() for p in (REPO / "lib" / "sagebook").rglob("*.py"))


def walkthrough() -> list[str]:
    """The commands of the README's "From zero" block, continuation lines joined."""
    section = README[README.index("### From zero"):]
    start = section.index("```bash\n") + 8
    block = section[start:section.index("\n```", start)]
    commands, current = [], ""
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            commands.append(current.strip())
            current = ""
    return commands


def readme_block(title: str) -> str:
    """The text of the JSON block that follows `title` in the README."""
    after = README[README.index(title):]
    return after[after.index("```json\n") + 8:after.index("\n```", after.index("```json"))]


def readme_policy(title: str) -> dict:
    """The JSON policy that follows `title` in the README, placeholders filled in."""
    text = readme_block(title)
    for name, value in (("BUCKET", BUCKET), ("ACCOUNT", ACCOUNT), ("REGION", REGION)):
        text = text.replace(name, value)
    return json.loads(text)


LAUNCHER = "Least privilege for the person (or CI role) who launches"
EXECUTION = "The execution role (trusted by `sagemaker.amazonaws.com`)"


def allowed(policy: dict, action: str, resource: str, context: dict[str, str]) -> bool:
    """IAM's evaluation of Allow statements, for the conditions these policies use."""
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [
            statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [
            statement["Resource"]]
        if statement["Effect"] != "Allow" or not any(fnmatch.fnmatchcase(action, a)
                                                     for a in actions):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in resources):
            continue
        if all(_condition(op, key, wanted, context)
               for op, keys in statement.get("Condition", {}).items()
               for key, wanted in keys.items()):
            return True
    return False


def _condition(op: str, key: str, wanted: str | list[str], context: dict[str, str]) -> bool:
    values = wanted if isinstance(wanted, list) else [wanted]
    if key not in context:
        return op.endswith("IfExists")
    match = fnmatch.fnmatchcase if op.startswith("StringLike") else str.__eq__
    return any(match(context[key], v) for v in values)


def calls(seen) -> list[tuple[str, str, dict[str, str]]]:
    """(IAM action, resource, condition context) of each request the proxy saw."""
    found = []
    for request in seen:
        scope = re.search(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/",
                          request.headers.get("authorization", ""))
        region, service = scope.groups() if scope else (REGION, "")
        target = request.headers.get("x-amz-target")
        if target:
            prefix, operation = target.split(".")
            service = {"SageMaker": "sagemaker", "Logs_20140328": "logs",
                       "AmazonEC2ContainerRegistry_V20150921": "ecr",
                       "ServiceQuotasV20190624": "servicequotas"}[prefix]
            body = json.loads(request.body or b"{}")
            resource = "*"
            if service == "ecr" and body.get("repositoryName"):
                resource = (f"arn:aws:ecr:{region}:{body.get('registryId', ACCOUNT)}:"
                            f"repository/{body['repositoryName']}")
            if service == "logs":
                resource = (f"arn:aws:logs:{region}:{ACCOUNT}:log-group:"
                            f"{body['logGroupName']}:log-stream:")
            found.append((f"{service}:{operation}", resource, {}))
            if operation == "CreateTrainingJob":
                found.append(("iam:PassRole", body["RoleArn"],
                              {"iam:PassedToService": "sagemaker.amazonaws.com"}))
                if body.get("Tags"):
                    found.append(("sagemaker:AddTags", "*", {}))
        elif service in ("sts", "iam"):
            action = parse_qs(request.body.decode())["Action"][0]
            found.append((f"{service}:{action}", "*", {}))
        elif service == "s3":
            found += _s3_calls(request)
    return found


def _s3_calls(request) -> list[tuple[str, str, dict[str, str]]]:
    method, target = request.name.split(" ", 1)
    url = urlsplit(target)
    bucket, _, key = unquote(url.path).lstrip("/").partition("/")
    query = parse_qs(url.query, keep_blank_values=True)
    if not key:
        if method == "POST" and "delete" in query:
            return [("s3:DeleteObject", f"arn:aws:s3:::{bucket}/{k}", {})
                    for k in re.findall(r"<Key>([^<]+)</Key>", request.body.decode())]
        context = {"s3:prefix": query["prefix"][0]} if "prefix" in query else {}
        action = "s3:CreateBucket" if method == "PUT" else "s3:ListBucket"
        return [(action, f"arn:aws:s3:::{bucket}", context)]
    action = {"GET": "s3:GetObject", "HEAD": "s3:GetObject", "PUT": "s3:PutObject",
              "POST": "s3:PutObject", "DELETE": "s3:DeleteObject"}[method]
    found = [(action, f"arn:aws:s3:::{bucket}/{key}", {})]
    source = request.headers.get("x-amz-copy-source")
    if source:
        found.append(("s3:GetObject", f"arn:aws:s3:::{unquote(source).lstrip('/')}", {}))
    return found


def push_image(region: str = REGION) -> None:
    """What `./build_and_push.sh` leaves behind, without Docker: the image in ECR."""
    ecr = boto3.client("ecr", region_name=region)
    try:  # the `fake` fixture pushed the tests' image already
        ecr.create_repository(repositoryName="sagebook-training")
        ecr.put_image(repositoryName="sagebook-training", imageTag="latest",
                      imageManifest=json.dumps(
                          {"schemaVersion": 2, "config": {}, "layers": [], "mediaType":
                           "application/vnd.docker.distribution.manifest.v2+json"}))
    except ecr.exceptions.RepositoryAlreadyExistsException:
        pass


def _image_of_this_commit(tag: str) -> None:
    """The image `./build_and_push.sh` would build, already in ECR under the commit's tag, so
    the script runs as typed (its checks, ECR look-ups and config update) and builds nothing."""
    push_to_ecr(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/sagebook-training:{tag}")


@pytest.mark.parametrize("kind", ["launcher", "execution"])
def test_readme_policy_is_the_one_sagebook_prints(kind):
    """README's policy blocks are lib/sagebook/policies/<kind>.json: a permission added to
    one and not the other fails here, naming the actions that differ."""
    title = {"launcher": LAUNCHER, "execution": EXECUTION}[kind]
    readme, shipped = json.loads(readme_block(title)), json.loads(template(kind))

    def actions(policy: dict) -> set[str]:
        return {a for s in policy["Statement"] for a in (
            s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}

    assert actions(readme) == actions(shipped), (
        f"only in README: {sorted(actions(readme) - actions(shipped))}; only in "
        f"lib/sagebook/policies/{kind}.json: {sorted(actions(shipped) - actions(readme))}")
    assert readme == shipped, f"README's {kind} policy is not lib/sagebook/policies/{kind}.json"


@pytest.fixture
def project(tmp_path, fake, proxy, monkeypatch) -> Path:
    """A new project, an `aws` CLI on PATH, a job that trains and completes when followed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    aws = bin_dir / "aws"
    aws.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} "
                   f"{shlex.quote(str(REPO / 'tests' / 'aws_cli.py'))} \"$@\"\n")
    aws.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}")
    fake.script(
        {"secondary": "Training", "message": "Training image download completed",
         "logs": {"algo-1": ["epoch=1 train_loss=0.9 val_accuracy=0.81",
                             "epoch=2 train_loss=0.4 val_accuracy=0.93"]}},
        {"status": "Completed", "secondary": "Completed", "billable": 95,
         "metrics": {"val_accuracy": 0.93}})
    folder = tmp_path / "project"
    init(folder)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "new project"]):
        subprocess.run([*git, *command], cwd=folder, check=True)
    return folder


def run_commands(commands: list[str], cwd: Path, proxy, on_build=push_image) -> list[dict]:
    """Each command in bash as typed (variables carry over), `<run id>` as the launch printed
    it; returns, per command, its output and the requests it made. `on_build` stands in for
    the Docker build of `./build_and_push.sh`, which runs as typed when `on_build` takes the
    image's tag (it then finds the image in ECR and builds nothing)."""
    env = dict(os.environ)
    results: list[dict] = []
    run_id = None
    for command in commands:
        if command.startswith("./build_and_push.sh"):
            if on_build is push_image:
                on_build()
                continue
            tag = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, text=True,
                                 capture_output=True, check=True).stdout.strip()
            on_build(tag)
        if "<run id>" in command:
            assert run_id, f"no run id printed before {command!r}"
            command = command.replace("<run id>", run_id)
        before = len(proxy.seen())
        env_file = cwd.parent / ".env-after"  # outside the project: its tree stays as typed
        script = f"set -a\n{command}\nstatus=$?\nenv -0 > {shlex.quote(str(env_file))}\n" \
                 "exit $status\n"
        result = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True,
                                text=True, timeout=180)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        env = dict(item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item)
        found = re.search(r"^run:\s+(\S+)", result.stdout, re.MULTILINE)
        run_id = found[1] if found else run_id
        results.append({"command": command, "stdout": result.stdout, "stderr": result.stderr,
                        "requests": proxy.seen()[before:]})
    return results


@pytest.mark.slow
def test_readme_walkthrough_from_zero(project, proxy, fake):
    commands = walkthrough()
    assert [c.split()[0] for c in commands] == [
        "export", "ACCOUNT=$(aws", "sed", "aws", "aws", "aws", "sagebook", "./build_and_push.sh",
        "sagebook", "sagebook", "sagebook", "sagebook", "sagebook"]
    os.environ["BUCKET"] = "placeholder"  # the README's export must set it, not the test
    try:
        results = run_commands(commands, project, proxy, on_build=_image_of_this_commit)
    finally:
        del os.environ["BUCKET"]
    # no step undid another: the tree holds the committed project and the edited config
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project, text=True,
                            capture_output=True, check=True).stdout
    assert status == " M configs/sagemaker_config.yaml\n", status
    config = (project / "configs" / "sagemaker_config.yaml").read_text()
    assert f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/sagebook-training@sha256:" in config
    iam = boto3.client("iam")
    applied = iam.get_role_policy(RoleName="SageMakerExecutionRole", PolicyName="sagebook")
    assert applied["PolicyDocument"] == readme_policy(EXECUTION)
    trust = iam.get_role(RoleName="SageMakerExecutionRole")["Role"]["AssumeRolePolicyDocument"]
    assert trust == json.loads(template("trust"))
    by_name = {r["command"].split(" -c ")[0].split(" s3://")[0]: r for r in results}

    s3 = boto3.client("s3", region_name=REGION)
    assert s3.get_bucket_location(Bucket=BUCKET)["LocationConstraint"] == REGION
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert {"datasets/digits/train.csv", "datasets/digits/validation.csv"} <= set(keys)
    doctor = by_name["sagebook doctor configs/sagemaker_config.yaml"]["stdout"]
    assert "FAIL" not in doctor and "warn" not in doctor, doctor
    listing = by_name["sagebook list"]["stdout"]
    [run_id] = re.findall(r"^(\d{8}-\d{6}-[0-9a-f]{6})", listing, re.MULTILINE)
    attach = by_name[f"sagebook attach {run_id}"]["stdout"]
    assert f"run:    {run_id} (Completed)" in attach and "epoch=2" in attach
    prefix = f"sagebook/experiments/digits-mlp/{run_id}"
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}/manifest.json")["Body"]
                          .read())
    assert manifest["status"] == "Completed" and manifest["final_metrics"]["val_accuracy"] == 0.93
    assert "sagebook/experiments/_report/index.html" in by_name["sagebook report"]["stdout"]
    assert (f"to open it here: aws s3 sync s3://{BUCKET}/sagebook/experiments/_report/ "
            "sagebook-report/") in by_name["sagebook report"]["stderr"]
    request = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}/request.json")["Body"]
                         .read())
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                for c in request["InputDataConfig"]}
    assert channels["train"] == f"s3://{BUCKET}/datasets/digits/train.csv"

    # the launcher policy allows every call sagebook made, and lists only calls the code makes
    launcher = readme_policy(LAUNCHER)
    made = [call for r in results if r["command"].startswith("sagebook")
            for call in calls(r["requests"])]
    denied = sorted({(a, res) for a, res, ctx in made if not allowed(launcher, a, res, ctx)})
    assert not denied, denied
    listed = {a for s in launcher["Statement"] for a in (
        s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    made_actions = {a for a, _, _ in made}
    for action in listed - made_actions:
        method = re.sub(r"(?<!^)(?=[A-Z])", "_", action.split(":")[1]).lower()
        called = f".{method}(" in LIB or f'get_paginator("{method}")' in LIB
        assert called, f"{action} is in the policy, but no code calls it"

    # the execution role can read every input and write every output of the job request
    execution = readme_policy(EXECUTION)
    needs = [("s3:GetObject", uri) for uri in channels.values()]
    needs += [("s3:PutObject", request["OutputDataConfig"]["S3OutputPath"])]
    if "CheckpointConfig" in request:
        needs += [("s3:PutObject", request["CheckpointConfig"]["S3Uri"]),
                  ("s3:GetObject", request["CheckpointConfig"]["S3Uri"])]
    for action, uri in needs:
        resource = "arn:aws:s3:::" + uri.removeprefix("s3://").rstrip("/") + "/some-object"
        if not uri.endswith("/") and action == "s3:GetObject" and "." in uri.rsplit("/", 1)[1]:
            resource = "arn:aws:s3:::" + uri.removeprefix("s3://")  # one object
        assert allowed(execution, action, resource, {}), (action, uri)


@pytest.mark.slow
def test_every_s3_request_names_the_expected_bucket_owner(project, proxy, fake, bucket):
    """upload, doctor, launch (code and a local channel uploaded, the config copied), attach,
    list, show, report, and a local run that downloads an S3 channel and syncs checkpoints."""
    push_image("us-east-1")
    boto3.client("iam").create_role(RoleName="SageMakerExecutionRole", AssumeRolePolicyDocument=(
        '{"Statement": [{"Effect": "Allow", "Principal": {"Service": '
        '"sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]}'))
    owner = f"expected_bucket_owner: '{ACCOUNT}'\n"
    cloud = project / "configs" / "sagemaker_config.yaml"
    cloud.write_text(cloud.read_text().replace("my-ml-bucket", bucket)
                     .replace("eu-west-1", "us-east-1") + owner + "upload_code: true\n")
    local = project / "configs" / "sagemaker_config.local.yaml"
    local.write_text(local.read_text()
                     .replace("../data/digits/train.csv",
                              f"s3://{bucket}/datasets/digits/train.csv")
                     .replace("experiments_uri: ../experiments",
                              f"experiments_uri: s3://{bucket}/sagebook/local-runs")
                     + owner + f"checkpoint_uri: s3://{bucket}/sagebook/checkpoints\n")
    commands = [
        f"sagebook upload data/digits s3://{bucket}/datasets/digits/ -c {cloud}",
        f"sagebook doctor {cloud}",
        f"sagebook launch {cloud} -o job.channels.validation=../data/digits/validation.csv",
        f"sagebook attach <run id> -c {cloud}",
        f"sagebook list -c {cloud}",
        f"sagebook show <run id> -c {cloud}",
        f"sagebook report -c {cloud}",
        f"sagebook launch {local} -o training.epochs=1",
        f"sagebook list -c {local}",
    ]
    results = run_commands(commands, project, proxy)
    s3_requests = [(r["command"], q) for r in results for q in r["requests"]
                   if "/s3/" in q.headers.get("authorization", "")]
    assert len(s3_requests) > 50
    assert {q.name.split(" ")[0] for _, q in s3_requests} >= {"GET", "PUT", "HEAD", "POST"}
    missing = [(command, q.name) for command, q in s3_requests
               if q.headers.get("x-amz-expected-bucket-owner") != ACCOUNT]
    assert not missing, missing[:10]


def test_upload_of_a_missing_folder_is_bad_input(tmp_path):
    from conftest import sagebook

    result = sagebook("upload", str(tmp_path / "nothing"), "s3://some-bucket/data/")
    assert result.returncode == 2
    assert result.stderr == f"sagebook: {tmp_path / 'nothing'}: no such file or folder\n"
