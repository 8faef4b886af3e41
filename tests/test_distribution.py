"""`distribution: torchrun | mpi` with processes per host: the command lines the image's `train`
entry and the local backend build, checked exactly through recording stubs of torchrun,
mpirun, sshd and pgrep (no torch, no Open MPI needed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, manifest, runs, sagebook

TRAIN = REPO / "sagemaker_container" / "train"

# Records how it was called, then runs the script it was given as plain Python, so a run
# goes on as it would under the real tool.
RECORDER = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    name = os.path.basename(sys.argv[0])
    record = {{"argv": sys.argv[1:],
               "env": {{k: v for k, v in os.environ.items() if k.startswith("SM_")}}}}
    with open(os.environ.get("STUB_LOG") or "/dev/null", "a") as log:
        log.write(json.dumps(record) + "\\n")
    print(name, json.dumps(sys.argv[1:]), flush=True)
    if os.environ.get("STUB_RUN"):
        os.execv(sys.executable, [sys.executable, sys.argv[-1]])
""")


def stub(folder: Path, name: str, text: str | None = None) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text or RECORDER.format(python=sys.executable))
    path.chmod(0o755)
    return path


def image_tree(tmp_path: Path, host: str, hosts: list[str]) -> Path:
    """/opt/ml as SageMaker lays it out on `host`, with the image's code."""
    program = tmp_path / "program"
    program.mkdir()
    shutil.copy2(TRAIN, program / "train")
    (program / "train.py").write_text("print('trained')\n")
    base = tmp_path / "opt_ml"
    (base / "input/config").mkdir(parents=True)
    (base / "input/config/resourceconfig.json").write_text(json.dumps(
        {"current_host": host, "hosts": hosts, "network_interface_name": "eth0"}))
    return program


def run_train(tmp_path: Path, program: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("SAGEBOOK_", "SM_"))}
    clean.update(PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
                 SAGEMAKER_BASE_DIR=str(tmp_path / "opt_ml"), TMPDIR=str(tmp_path), **env)
    return subprocess.run([str(program / "train")], env=clean, capture_output=True, text=True,
                          timeout=60)


def called(proc: subprocess.CompletedProcess, tool: str) -> list[str]:
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith(f"{tool} ")]
    return json.loads(line.removeprefix(f"{tool} "))


def test_train_starts_torchrun_with_the_cluster_from_resourceconfig(tmp_path):
    program = image_tree(tmp_path, "algo-2", ["algo-3", "algo-1", "algo-2"])
    stub(tmp_path / "bin", "torchrun")
    proc = run_train(tmp_path, program, SAGEBOOK_DISTRIBUTION="torchrun",
                     SAGEBOOK_PROCESSES_PER_HOST="4")
    assert proc.returncode == 0, proc.stderr
    assert called(proc, "torchrun") == [
        "--nnodes", "3", "--nproc_per_node", "4", "--node_rank", "1",
        "--master_addr", "algo-1", "--master_port", "7777", str(program / "train.py")]


def test_train_prefers_the_contract_variables_for_the_master(tmp_path):
    program = image_tree(tmp_path, "algo-1", ["algo-1"])  # not what the variables say
    stub(tmp_path / "bin", "torchrun")
    proc = run_train(tmp_path, program, SAGEBOOK_DISTRIBUTION="torchrun",
                     SM_HOSTS='["algo-1", "algo-2"]', SM_CURRENT_HOST="algo-2",
                     SM_MASTER_ADDR="127.0.0.1", SM_MASTER_PORT="40123")
    assert proc.returncode == 0, proc.stderr
    assert called(proc, "torchrun")[:10] == [
        "--nnodes", "2", "--nproc_per_node", "1", "--node_rank", "1",
        "--master_addr", "127.0.0.1", "--master_port", "40123"]


def test_train_starts_mpirun_on_the_first_host_over_every_hosts_slots(tmp_path):
    program = image_tree(tmp_path, "algo-1", ["algo-1", "algo-2", "algo-3"])
    stub(tmp_path / "bin", "mpirun")
    proc = run_train(tmp_path, program, SAGEBOOK_DISTRIBUTION="mpi",
                     SAGEBOOK_PROCESSES_PER_HOST="2")
    assert proc.returncode == 0, proc.stderr
    assert called(proc, "mpirun") == [
        "--host", "algo-1:2,algo-2:2,algo-3:2", "-np", "6", "--allow-run-as-root",
        "--bind-to", "none", "-mca", "plm_rsh_args", "-o StrictHostKeyChecking=no",
        "-x", "PATH", "-x", "PYTHONUNBUFFERED", "-x", "TRAINING_JOB_NAME",
        "python3", str(program / "train.py")]


def test_an_mpi_worker_serves_ssh_until_the_first_hosts_processes_are_done(tmp_path):
    program = image_tree(tmp_path, "algo-2", ["algo-1", "algo-2"])
    stub(tmp_path / "bin", "sshd")
    stub(tmp_path / "bin", "mpirun")
    # orted (mpirun's daemon) is absent, then runs for two checks, then is gone
    stub(tmp_path / "bin", "pgrep", textwrap.dedent(f"""\
        #!/usr/bin/env bash
        calls={tmp_path}/pgrep.calls
        echo "$*" >>"$calls"
        n=$(wc -l <"$calls")
        ((n >= 2 && n <= 3))
    """))
    proc = run_train(tmp_path, program, SAGEBOOK_DISTRIBUTION="mpi",
                     STUB_LOG=str(tmp_path / "calls.jsonl"))
    assert proc.returncode == 0, proc.stderr
    calls = [json.loads(x)["argv"] for x in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert calls == [["-D"]]  # sshd in the foreground, started in the background; no mpirun
    assert (tmp_path / "pgrep.calls").read_text().splitlines() == ["-x orted"] * 4
    assert "processes on this host are done" in proc.stderr


def test_train_refuses_an_unknown_distribution(tmp_path):
    program = image_tree(tmp_path, "algo-1", ["algo-1"])
    proc = run_train(tmp_path, program, SAGEBOOK_DISTRIBUTION="horovod")
    assert proc.returncode == 1
    assert "expected none, torchrun or mpi" in (tmp_path / "opt_ml/output/failure").read_text()


@pytest.mark.slow
def test_local_hosts_start_torchrun_over_the_loopback(make_config, tmp_path, monkeypatch):
    stub(tmp_path / "bin", "torchrun")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    log = tmp_path / "torchrun.jsonl"
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("print('a worker ran')\n")
    path = make_config(source_dir=str(code), training_schema=None, instance_count=2,
                       distribution="torchrun", processes_per_host=2,
                       environment={"STUB_LOG": str(log), "STUB_RUN": "1"})
    result = sagebook("launch", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    calls = sorted((json.loads(x) for x in log.read_text().splitlines()),
                   key=lambda c: c["env"]["SM_CURRENT_HOST"])
    assert [c["env"]["SM_CURRENT_HOST"] for c in calls] == ["algo-1", "algo-2"]
    for rank, call in enumerate(calls):
        port = call["env"]["SM_MASTER_PORT"]
        assert call["argv"] == [
            "--nnodes", "2", "--nproc_per_node", "2", "--node_rank", str(rank),
            "--master_addr", "algo-1", "--master_port", port, str(code / "train.py")]
    [run] = runs(tmp_path / "experiments")
    assert "a worker ran" in (run / "logs/algo-2.log").read_text()
    request = json.loads((run / "request.json").read_text())
    assert request["Environment"]["SAGEBOOK_DISTRIBUTION"] == "torchrun"
    assert request["Environment"]["SAGEBOOK_PROCESSES_PER_HOST"] == "2"
    assert manifest(run)["status"] == "Completed"


@pytest.mark.parametrize("distribution, message", [
    ("mpi", "distribution: mpi runs in the image"),
    ("torchrun", "torchrun is not on PATH"),
])
def test_local_refuses_what_it_cannot_start(make_config, tmp_path, distribution, message):
    if distribution == "torchrun" and shutil.which("torchrun"):
        pytest.skip("torchrun is installed here")
    result = sagebook("launch", str(make_config(distribution=distribution)))
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "experiments").exists()
