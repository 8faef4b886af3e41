"""Interrupted notebook launches and concurrent launches: the record always ends honest.

SIGINT (Ctrl-C in the terminal) and SIGTERM (a closed terminal, a CI timeout) hit papermill
while the training runs; the executed notebook still reaches the record, the run is marked
Stopped or Interrupted, and no training process is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from conftest import REPO, manifest, runs, wait_for

pytestmark = pytest.mark.slow  # notebook launches, and twenty launches at once

SLOW_TRAINING = textwrap.dedent("""
    import os, pathlib, signal, sys, time
    pathlib.Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for step in range(600):
        print(f"step={step}", flush=True)
        time.sleep(0.1)
""")


@pytest.fixture
def slow_config(make_config, tmp_path):
    code = tmp_path / "slow"
    code.mkdir()
    (code / "train.py").write_text(SLOW_TRAINING)
    # the job's environment: the training process does not inherit the launcher's
    return make_config(source_dir=str(code), training_schema=None,
                       environment={"PID_FILE": str(tmp_path / "train.pid")})


def start_papermill(config: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "papermill"), str(REPO / "notebooks/launch.ipynb"),
         str(out), "-p", "config", str(config), "--log-output"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def training_gone(pid_file: Path) -> bool:
    pid = int(pid_file.read_text())
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def settled(experiments: Path) -> dict:
    def done():
        found = runs(experiments)
        m = manifest(found[0]) if found else {}
        if m.get("notebook", {}).get("status") not in (None, "pending"):
            return m
        return None
    return wait_for(done, timeout=60, what="the notebook capture")


def test_ctrl_c_during_a_notebook_launch_stops_the_run(slow_config, tmp_path):
    proc = start_papermill(slow_config, tmp_path / "out.ipynb")
    wait_for(lambda: (tmp_path / "train.pid").exists(), what="the training to start")
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    m = settled(tmp_path / "experiments")
    assert m["status"] in ("Stopped", "Interrupted")
    assert (runs(tmp_path / "experiments")[0] / "notebook.ipynb").is_file()
    wait_for(lambda: training_gone(tmp_path / "train.pid"), timeout=20, what="training to end")


def test_sigterm_to_papermill_interrupts_the_run_and_ends_the_training(slow_config, tmp_path):
    proc = start_papermill(slow_config, tmp_path / "out.ipynb")
    wait_for(lambda: (tmp_path / "train.pid").exists(), what="the training to start")
    proc.send_signal(signal.SIGTERM)  # papermill alone, as a supervisor would
    proc.communicate(timeout=60)
    m = settled(tmp_path / "experiments")
    assert m["status"] in ("Interrupted", "Stopped", "Failed")
    assert m["status"] != "Completed"
    assert (runs(tmp_path / "experiments")[0] / "notebook.ipynb").is_file()
    wait_for(lambda: training_gone(tmp_path / "train.pid"), timeout=30, what="training to end")


QUICK_TRAINING = "import os, pathlib\n" \
    "pathlib.Path(os.environ['SM_MODEL_DIR'], 'm.txt').write_text(os.environ['SAGEBOOK_RUN_ID'])\n"


@pytest.mark.parametrize("store", ["local", "s3"])
def test_twenty_concurrent_launches_leave_twenty_complete_records(store, make_config, tmp_path,
                                                                  request):
    code = tmp_path / "quick"
    code.mkdir()
    (code / "train.py").write_text(QUICK_TRAINING)
    uri = str(tmp_path / "experiments")
    if store == "s3":
        uri = f"s3://{request.getfixturevalue('bucket')}/records"
    path = make_config(source_dir=str(code), training_schema=None, experiments_uri=uri)
    procs = [subprocess.Popen([sys.executable, "-m", "sagebook.cli", "launch", str(path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(20)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, errors

    from sagebook.record import Record
    from sagebook.stores import open_store

    store_ = open_store(uri)
    manifests = sorted(k for k in store_.list("digits-mlp") if k.endswith("/manifest.json"))
    assert len(manifests) == 20
    records = [Record.open(store_, "digits-mlp", k.split("/")[1]) for k in manifests]
    assert len({r.manifest["job_name"] for r in records}) == 20
    for record in records:
        assert record.status == "Completed"
        # each record holds its own configs, request and model, none overwritten by another
        assert record.run_id in store_.read_text(f"{record.prefix}/request.json")
        assert store_.exists(f"{record.prefix}/config/training_config.yaml")
        assert record.manifest["model_artifact"].startswith(store_.url(record.prefix))
