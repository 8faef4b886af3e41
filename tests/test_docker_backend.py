"""`local-docker` / `local-gpu`: the docker command line exactly, a run through a recording
`docker` executable, and a live run where a Docker engine answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from sagebook.backends.docker import container_environment, docker_command

from conftest import REPO, manifest, runs, sagebook


def test_docker_command_mounts_the_tree_and_passes_env_by_name(tmp_path):
    data = tmp_path / "train"
    data.mkdir()
    single = tmp_path / "validation.csv"
    single.write_text("x")
    argv = docker_command("img:1", tmp_path / "opt_ml", ["B", "A"], "sagebook-job",
                          channel_mounts={"train": data, "validation": single})
    root = (tmp_path / "opt_ml").resolve()
    assert argv == [
        "docker", "run", "--rm", "--name", "sagebook-job", "--hostname", "algo-1",
        "--platform", "linux/amd64", "--stop-timeout", "120",
        "-v", f"{root}:/opt/ml",
        "-v", f"{data.resolve()}:/opt/ml/input/data/train:ro",
        "-v", f"{single.resolve()}:/opt/ml/input/data/validation/validation.csv:ro",
        "-e", "A", "-e", "B",
        "img:1", "train",
    ]


def test_gpu_isolation_and_custom_checkpoint_path(tmp_path):
    argv = docker_command("img", tmp_path, [], "n", gpu=True, network_isolation=True,
                          checkpoint_local_path="/ckpt")
    assert argv[-2:] == ["img", "train"]
    assert ["--gpus", "all", "--shm-size", "1g"] == argv[argv.index("--gpus"):][:4]
    assert ["--network", "none"] == argv[argv.index("--network"):][:2]
    assert f"{(tmp_path / 'checkpoints').resolve()}:/ckpt" in argv


def test_container_gets_no_aws_credentials_unless_asked(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    request = {"TrainingJobName": "j", "Environment": {"LOG_LEVEL": "INFO"}}
    env = container_environment(request, aws_credentials=False)
    assert env == {"LOG_LEVEL": "INFO", "TRAINING_JOB_NAME": "j",
                   "TRAINING_JOB_ARN": "arn:aws:sagemaker:local:000000000000:training-job/j"}
    assert container_environment(request, aws_credentials=True)["AWS_SECRET_ACCESS_KEY"] == (
        "s3cr3t")


STUB = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    log = os.environ["DOCKER_STUB_LOG"]
    with open(log, "a") as f:
        f.write(json.dumps({{"argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in
            [a for i, a in enumerate(sys.argv) if sys.argv[i - 1] == "-e"]}}}}) + "\\n")
    if sys.argv[1] == "run":
        root = [a for a in sys.argv if a.endswith(":/opt/ml")][0].rsplit(":", 1)[0]
        open(os.path.join(root, "model", "model.txt"), "w").write("trained")
        print("epoch=1 train_loss=0.5 val_loss=0.6 val_accuracy=0.7", flush=True)
        sys.exit(int(os.environ.get("DOCKER_STUB_EXIT", "0")))
""")


@pytest.fixture
def docker_stub(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "docker"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(0o755)
    log = tmp_path / "docker.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_STUB_LOG", str(log))
    return log


@pytest.mark.slow
def test_local_docker_run_records_like_a_local_run(make_config, docker_stub, tmp_path,
                                                    monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-pass")
    path = make_config(instance_type="local-docker", image_uri="sagebook-training:test")
    result = sagebook("launch", str(path))
    assert result.returncode == 0, result.stderr
    [call] = [json.loads(line) for line in docker_stub.read_text().splitlines()]
    argv = call["argv"]
    assert argv[:3] == ["run", "--rm", "--name"] and argv[-2:] == ["sagebook-training:test",
                                                                    "train"]
    assert "AWS_SECRET_ACCESS_KEY" not in argv
    assert call["env"]["TRAINING_JOB_NAME"].startswith("digits-mlp-")
    assert "do-not-pass" not in json.dumps(call)
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Completed" and m["backend"] == "DockerBackend"
    assert m["docker_command"][1:] == argv
    assert m["final_metrics"]["val_accuracy"] == 0.7
    assert m["model_artifact"].endswith("model.tar.gz")
    assert "do-not-pass" not in "".join(p.read_text(errors="replace")
                                        for p in run.rglob("*") if p.is_file())


@pytest.mark.slow
def test_local_docker_failure_explains_the_exit_code(make_config, docker_stub, tmp_path,
                                                     monkeypatch):
    monkeypatch.setenv("DOCKER_STUB_EXIT", "137")
    path = make_config(instance_type="local-docker", image_uri="img")
    assert sagebook("launch", str(path)).returncode == 1
    m = manifest(runs(tmp_path / "experiments")[0])
    assert m["status"] == "Failed" and m["exit_code"] == 137
    assert "out of memory" in m["failure_reason"]


@pytest.mark.slow
def test_local_docker_runs_a_container_per_host_on_a_network_of_its_own(make_config,
                                                                          docker_stub, tmp_path):
    path = make_config(instance_type="local-docker", image_uri="img:1", instance_count=2)
    result = sagebook("launch", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [json.loads(line)["argv"] for line in docker_stub.read_text().splitlines()]
    m = manifest(runs(tmp_path / "experiments")[0])
    network = f"sagebook-{m['job_name']}"
    assert calls[0] == ["network", "create", network]
    assert calls[-1] == ["network", "rm", network]
    # the containers start side by side: their calls come in any order
    by_host = {argv[argv.index("--hostname") + 1]: argv for argv in calls[1:-1]}
    assert sorted(by_host) == ["algo-1", "algo-2"]
    for host, argv in by_host.items():
        assert argv[argv.index("--name") + 1] == f"{network}-{host}"
        assert argv[argv.index("--network") + 1:argv.index("--network") + 4] == [
            network, "--network-alias", host]
        tree = [a for a in argv if a.endswith(":/opt/ml")][0].rsplit(":", 1)[0]
        config = json.loads(open(f"{tree}/input/config/resourceconfig.json").read())
        assert config["current_host"] == host and config["hosts"] == ["algo-1", "algo-2"]
    assert m["docker_commands"]["algo-2"][1:] == by_host["algo-2"]
    assert m["status"] == "Completed"


def _engine_answers() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True)
    return None if info.returncode == 0 else (info.stderr.strip().splitlines() or ["?"])[0]


@pytest.mark.docker
@pytest.mark.slow
def test_live_local_docker_run_of_the_example(make_config, tmp_path):
    reason = _engine_answers()
    if reason:
        pytest.skip(f"no Docker engine answers: {reason}")
    tag = "sagebook-training:test"
    subprocess.run(["docker", "build", "-t", tag, str(REPO)], check=True)
    result = sagebook("launch", str(make_config(instance_type="local-docker", image_uri=tag)),
                      timeout=600)
    assert result.returncode == 0, result.stderr
    assert manifest(runs(tmp_path / "experiments")[0])["status"] == "Completed"
