"""A record store on a full disk, or S3 out of reach mid-run: the launch ends with one line
naming the real cause and where the logs and metrics are kept, leaves no temp or partial file
behind, never hangs on a log it cannot write, and `sagebook sync` completes the record once
the store can be written again.

The full store is a small tmpfs (mounting needs root, as on this project's machines and CI);
the S3 outage comes from the fault proxy in front of the local S3 server."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import manifest, runs, sagebook, start_launch
from faults import xml_error

TRAINING = textwrap.dedent("""
    import os, pathlib

    def fill_the_store():
        with open(os.environ["FILLER"], "ab") as filler:
            try:
                while True:
                    filler.write(b"x" * 65536)
                    filler.flush()
            except OSError:
                pass

    print("training starts", flush=True)
    when = os.environ["FAULT_AT"]
    if when in ("manifest", "log"):
        fill_the_store()
    if when == "log":  # far more than a pipe holds: a reader that stopped would block us
        for step in range(5000):
            print(f"step {step} loss={1 / (step + 1):.6f} " + "." * 80, flush=True)
    if when == "model":  # incompressible, larger than the store's disk
        pathlib.Path(os.environ["SM_MODEL_DIR"], "weights.bin").write_bytes(os.urandom(3 << 20))
    print("training ends", flush=True)
""")


@pytest.fixture
def small_store(tmp_path: Path):
    store = tmp_path / "store"
    store.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(store)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield store
    subprocess.run(["umount", "-l", str(store)], check=False)


def launch_into(small_store: Path, make_config, tmp_path: Path, fault_at: str):
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(TRAINING)
    config = make_config(
        source_dir=str(code), training_schema=None, experiments_uri=str(small_store),
        environment={"FAULT_AT": fault_at, "FILLER": str(small_store / "filler")},
        metric_definitions=[{"name": "loss", "regex": r"loss=([0-9.]+)"}])
    return sagebook("launch", str(config), timeout=120)


def debris(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob(".*"))


@pytest.mark.parametrize("fault_at", ["manifest", "log"])
@pytest.mark.slow
def test_a_full_disk_ends_in_one_line_and_sync_completes_the_record(
        small_store, make_config, tmp_path, fault_at):
    result = launch_into(small_store, make_config, tmp_path, fault_at)
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    [run] = runs(small_store)
    assert line.startswith(f"sagebook: run {run.name} completed, but its record could not be "
                           f"completed: cannot write {run}/manifest.json: No space left on "
                           "device; its logs, metrics and final manifest are kept in "), line
    local_copy = Path(line.split(" are kept in ")[1].split(";")[0])
    assert (local_copy / "pending-manifest.json").is_file()
    assert debris(small_store) == []
    assert manifest(run)["status"] == "InProgress"  # what the store could be told

    (small_store / "filler").unlink()  # room again
    synced = sagebook("sync", run.name, "--store", str(small_store))
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout == "status: Completed\n"
    record = manifest(run)
    assert record["status"] == "Completed" and record["exit_code"] == 0
    log = (run / "logs/algo-1.log").read_text()
    assert log.startswith("training starts\n") and log.endswith("training ends\n")
    if fault_at == "log":
        assert record["log_error"] in (
            f"cannot write {run}/{name}: No space left on device"
            for name in ("logs/algo-1.log", "metrics.jsonl"))
        assert log.count("\nstep ") == 5000
        assert record["final_metrics"] == {"loss": pytest.approx(1 / 5000)}
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 5000
    assert not (local_copy / "pending-manifest.json").exists()
    assert debris(small_store) == []
    # once synced, nothing is left to do
    again = sagebook("sync", run.name, "--store", str(small_store))
    assert again.returncode == 0 and "nothing left to write" in again.stderr


@pytest.mark.slow
def test_a_full_disk_at_the_model_copy_fails_the_run_with_the_cause_and_no_partial_file(
        small_store, make_config, tmp_path):
    result = launch_into(small_store, make_config, tmp_path, "model")
    assert result.returncode == 1
    [run] = runs(small_store)
    record = manifest(run)
    assert record["status"] == "Failed"
    assert record["failure_reason"] == (
        f"sagebook: StoreError: cannot write {run}/output/{record['job_name']}/output/"
        "model.tar.gz: No space left on device")
    assert f"failure: {record['failure_reason']}" in result.stdout.splitlines()
    assert debris(small_store) == []
    assert result.stderr == ""


WAITING = textwrap.dedent("""
    import os, pathlib, time
    print("training starts", flush=True)
    while not pathlib.Path(os.environ["GO"]).exists():
        time.sleep(0.05)
    print("val_accuracy=0.9", flush=True)
    pathlib.Path(os.environ["SM_MODEL_DIR"], "model.txt").write_text("ok")
""")
UNAVAILABLE = xml_error(503, "ServiceUnavailable", "Service is unable to handle request.")


@pytest.mark.slow
def test_s3_out_of_reach_mid_run_then_sync_completes_the_record(
        make_config, bucket, proxy, s3, tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(WAITING)
    config = make_config(source_dir=str(code), training_schema=None,
                         experiments_uri=f"s3://{bucket}/records",
                         environment={"GO": str(tmp_path / "go")},
                         metric_definitions=[{"name": "val_accuracy",
                                              "regex": "val_accuracy=([0-9.]+)"}])
    launch = start_launch(str(config), until="training starts")
    proxy.fail(f"^[A-Z]+ /{bucket}", times=10_000, answer=UNAVAILABLE)  # S3 goes away
    (tmp_path / "go").touch()
    _, err = launch.communicate(timeout=120)
    assert launch.returncode == 1
    [line] = err.splitlines()
    assert f"failed (sagebook: StoreError: cannot upload to s3://{bucket}/records/" in line
    assert "but its record could not be completed: cannot write s3://" in line
    assert "ServiceUnavailable" in line and "Traceback" not in err
    local_copy = Path(line.split(" are kept in ")[1].split(";")[0])
    assert (local_copy / "logs/algo-1.log").read_text().endswith("val_accuracy=0.9\n")

    with proxy._lock:
        proxy.rules.clear()  # S3 is back
    [key] = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
             if o["Key"].endswith("/manifest.json")]
    run_id = key.split("/")[-2]
    synced = sagebook("sync", run_id, "--store", f"s3://{bucket}/records")
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout == "status: Failed\n"
    record = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert record["final_metrics"] == {"val_accuracy": 0.9}
    assert record["failure_reason"].startswith("sagebook: StoreError: cannot upload to ")
    log = s3.get_object(Bucket=bucket, Key=key.replace("manifest.json", "logs/algo-1.log"))
    assert log["Body"].read().decode().endswith("val_accuracy=0.9\n")


def test_sync_uploads_only_the_runs_own_local_copy_never_a_folder_a_record_names(tmp_path):
    """A record that names this host and any folder as its `local_copy` (someone's ~/.ssh)
    must not make `sync` upload that folder into the shared store."""
    import json
    import socket

    from sagebook.stores import open_store

    from conftest import add_run

    private = tmp_path / "home" / ".ssh"
    private.mkdir(parents=True)
    (private / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    store = open_store(str(tmp_path / "records"))
    record = add_run(store, status="InProgress")
    planted = {**record.manifest, "host": socket.gethostname(), "local_copy": str(private)}
    store.write_text(f"{record.prefix}/manifest.json", json.dumps(planted))

    synced = sagebook("sync", record.run_id, "--store", store.uri)
    assert synced.returncode == 0, synced.stderr
    assert "nothing left to write" in synced.stderr
    assert not list((tmp_path / "records").rglob("id_ed25519"))
