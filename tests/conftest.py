"""Shared fixtures: a scratch project per test, and Jupyter kept away from the user's kernels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LOCAL_CONFIG = REPO / "configs" / "sagemaker_config.local.yaml"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagebook-training:latest"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
CHROMIUM = "/usr/bin/chromium"
# what sagebook's wheel is built from; the rest of the repository is not needed for a build
NOT_BUILT = shutil.ignore_patterns(".git", ".venv*", "experiments", "build", "dist", "tests",
                                   "benchmarks", "__pycache__", "*.egg-info", "test-artifacts",
                                   ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints")
# headless, and no calls home: this machine has no network beyond its package registries
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run"]


@pytest.fixture(autouse=True, scope="session")
def _isolated_jupyter(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A user kernel named python3, or JUPYTER_PATH, could otherwise run the notebooks in
    another Python; papermill then finds this venv's kernel."""
    base = tmp_path_factory.mktemp("jupyter")
    for name in ("JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "JUPYTER_CONFIG_DIR"):
        os.environ[name] = str(base / name.lower())
    os.environ.pop("JUPYTER_PATH", None)
    os.environ["SAGEBOOK_WORK_DIR"] = str(base / "work")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"  # never ask a metadata endpoint


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a job config (the local example's, with `changes`) into tmp_path; return its path.

    Paths are made absolute so the config can live anywhere; records go to tmp_path/experiments.
    """

    def make(name: str = "job.yaml", training: dict[str, Any] | None = None,
             **changes: Any) -> Path:
        data = yaml.safe_load(LOCAL_CONFIG.read_text())
        data["source_dir"] = str(REPO / "sagemaker_container")
        data["channels"] = {k: str((LOCAL_CONFIG.parent / v).resolve())
                            for k, v in data["channels"].items()}
        data["experiments_uri"] = str(tmp_path / "experiments")
        training_data = yaml.safe_load((REPO / "configs" / "training_config.yaml").read_text())
        training_data["epochs"] = 2
        training_data.update(training or {})
        training_path = tmp_path / f"training-{name}"
        training_path.write_text(yaml.safe_dump(training_data))
        data["training_config"] = str(training_path)
        data.update(changes)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return make


def sagebook(*args: str, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess:
    """The real `sagebook` command, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "sagebook.cli", *args], capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def start_launch(*args: str, until: str | None = None) -> subprocess.Popen:
    """`sagebook launch ARGS` in the background; with `until`, returned once a line of its
    output starts with that (the run is under way: time to interrupt it)."""
    proc = subprocess.Popen([sys.executable, "-m", "sagebook.cli", "launch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if until is not None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(until):
                break
        else:
            raise AssertionError(f"the launch ended without a line starting {until!r}: "
                                 f"{proc.communicate()[1][-2000:]}")
    return proc


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


def runs(experiments: Path) -> list[Path]:
    return sorted(p.parent for p in experiments.glob("*/*/manifest.json"))


def manifest(run: Path) -> dict[str, Any]:
    return json.loads((run / "manifest.json").read_text())


def wait_for(predicate: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    """Poll until `predicate` returns something truthy (for work that outlives a process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


@pytest.fixture(scope="session")
def moto_endpoint() -> Any:
    """A moto server on 127.0.0.1: boto3 talks to it over real HTTP, as it would to AWS."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Fake credentials and the local endpoint for this test and the processes it starts;
    the server's state is reset so each test starts from an empty account."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset",
                                                  method="POST")).read()
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookups
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    from sagebook import aws as access

    from fake_capacity import answer_quotas

    answer_quotas(monkeypatch)  # moto answers Service Quotas for `vpc` only
    access._clients.clear()  # fresh clients: a test may hook the session they are made from
    try:
        from papermill.s3 import S3

        S3.s3_session = (None, None, None)  # papermill caches its S3 session on the class
    except ImportError:
        pass
    return moto_endpoint


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A record store, once in a local folder and once on S3 (the local endpoint): a test that
    takes it runs against both."""
    from sagebook.stores import open_store

    if request.param == "local":
        return open_store(str(tmp_path / "records"))
    bucket = request.getfixturevalue("bucket")
    return open_store(f"s3://{bucket}/team/records")


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """The real command's code path, in this process (where the S3 endpoint lives): its exit
    code, stdout and stderr."""
    from sagebook import cli

    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def listed(capsys: pytest.CaptureFixture, store: Any, *args: str) -> list[dict[str, Any]]:
    """`sagebook list --json` of `store`, one dict per run."""
    code, out, err = run_cli(capsys, "list", "--store", store.uri, "--json", *args)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def bucket(aws: str) -> str:
    """An empty bucket on the local endpoint."""
    import boto3

    boto3.client("s3").create_bucket(Bucket="sagebook-test")
    return "sagebook-test"


def add_run(store: Any, experiment: str = "exp-a", *, status: str = "Completed",
            user: str = "ann", created: str | None = None, metrics: dict | None = None,
            tags: dict | None = None, instance_type: str = "local", training: dict | None = None,
            commit: str = "0123456789abcdef", dirty: bool = False, run_id: str | None = None,
            failure: str | None = None) -> Any:
    """A run written into `store` the way launches write them (create, configs, metrics,
    status changes), without running anything: for tests of what reads records."""
    from sagebook.record import Record, job_name, new_run_id
    from sagebook.request import parameters

    run_id = run_id or new_run_id()
    training = training or {"epochs": 2, "optimizer": "adam"}
    record = Record.create(store, experiment, run_id, {
        "created": created or time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "user": user, "instance_type": instance_type, "backend": "LocalBackend",
        "job_name": job_name(experiment, run_id), "tags": tags or {},
        "git": {"commit": commit, "dirty": dirty, "branch": "main"},
        "config": {"overrides": [], "digest": "d"}, "image_uri": "img:1",
        "params": parameters(training),
    })
    record.put_text("sagemaker_config.yaml", yaml.safe_dump(
        {"experiment": experiment, "instance_type": instance_type, "max_runtime": 600}))
    record.put_text("config/training_config.yaml", yaml.safe_dump(training))
    if metrics:
        record.put_text("metrics.jsonl", "".join(
            json.dumps({"name": k, "value": v * (step + 1) / 2, "step": step}) + "\n"
            for step in range(2) for k, v in metrics.items()))
    record.set_status("InProgress")
    if status != "InProgress":
        record.set_status(status, final_metrics=metrics or {}, failure_reason=failure)
    return record


def push_image(uri: str = IMAGE, layer: str = "") -> str:
    """Put `repo:tag` into the local ECR, as build_and_push.sh would; return its digest.
    A launch resolves the tag to this digest, and refuses an image ECR does not have."""
    import boto3

    account_host, _, rest = uri.partition("/")
    repository, _, tag = rest.partition(":")
    ecr = boto3.client("ecr", region_name=account_host.split(".")[3])
    try:
        ecr.create_repository(repositoryName=repository)
    except ecr.exceptions.RepositoryAlreadyExistsException:
        pass
    manifest = json.dumps({"schemaVersion": 2, "mediaType":
                           "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {}, "layers": [{"digest": layer}] if layer else []})
    try:
        ecr.put_image(repositoryName=repository, imageManifest=manifest, imageTag=tag)
    except ecr.exceptions.ImageAlreadyExistsException:
        pass
    [found] = ecr.describe_images(repositoryName=repository,
                                  imageIds=[{"imageTag": tag}])["imageDetails"]
    return found["imageDigest"]


@pytest.fixture
def fake(aws, monkeypatch, tmp_path) -> Any:
    """moto's SageMaker, with job lifecycles and logs scripted (see fake_sagemaker.py), and
    the training image in ECR."""
    from fake_sagemaker import FakeSageMaker

    monkeypatch.setenv("SAGEBOOK_POLL_SECONDS", "0.02")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # file digests, not in ~
    push_image()
    return FakeSageMaker(monkeypatch)


@pytest.fixture
def cloud_config(make_config, bucket):
    """A job config for ml.m5.large whose records live in the local S3 bucket."""

    def make(name: str = "job.yaml", **changes):
        settings = {"instance_type": "ml.m5.large", "image_uri": IMAGE, "role_arn": ROLE,
                    "experiments_uri": f"s3://{bucket}/records", **changes}
        return make_config(name, **settings)

    return make


@pytest.fixture
def s3():
    import boto3

    return boto3.client("s3")


@pytest.fixture
def proxy(aws, monkeypatch):
    """The fault proxy in front of moto, as the endpoint of this test and its processes."""
    from faults import FaultProxy

    server = FaultProxy(aws).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Any:
    """Debian's chromium driven by playwright (which cannot download browsers here)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: .ci/run installs it"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()
