"""`instance_type: local`: the container contract, logs, metrics, outcomes and records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, manifest, runs, sagebook, start_launch, wait_for

PROBE = textwrap.dedent("""
    import json, os, pathlib
    base = pathlib.Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
    seen = {
        "env": {k: v for k, v in os.environ.items()
                if k.startswith(("SM_", "SAGEMAKER_", "TRAINING_JOB", "SAGEBOOK_", "LOG_"))},
        "files": sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()),
        "config": {n: json.loads((base / "input/config" / n).read_text())
                   for n in ("hyperparameters.json", "inputdataconfig.json",
                             "resourceconfig.json")},
        "training_config": (base / "input/data/config/training_config.yaml").read_text(),
    }
    (base / "output/data/contract.json").write_text(json.dumps(seen))
    (base / "model/weights.txt").write_text("42")
    print("loss=0.5 acc=0.25")
    print("loss=0.25 acc=0.75")
""")


@pytest.fixture
def probe_code(tmp_path: Path) -> Path:
    code = tmp_path / "probe_code"
    code.mkdir()
    (code / "train.py").write_text(PROBE)
    return code


def probe_config(make_config, code: Path, **changes):
    return make_config(
        source_dir=str(code), training_schema=None,
        metric_definitions=[{"name": "loss", "regex": r"loss=([0-9.]+)"},
                            {"name": "acc", "regex": r"acc=([0-9.]+)"}],
        **changes,
    )


@pytest.mark.slow
def test_local_run_emulates_the_container_contract(make_config, probe_code, tmp_path):
    path = probe_config(make_config, probe_code)
    result = sagebook("launch", str(path), "-o", "training.epochs=7")
    assert result.returncode == 0, result.stderr
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Completed" and m["exit_code"] == 0
    output = Path(m["output_artifact"])
    with tarfile.open(output) as tar:
        seen = json.load(tar.extractfile("contract.json"))
    # a private /opt/ml, as in the container: no SAGEMAKER_BASE_DIR needed
    base = "/opt/ml"
    env = seen["env"]
    assert m["opt_ml"] == "private namespace" and "SAGEMAKER_BASE_DIR" not in env
    assert env["TRAINING_JOB_NAME"] == m["job_name"]
    assert env["TRAINING_JOB_ARN"].endswith(f"training-job/{m['job_name']}")
    assert env["SM_MODEL_DIR"] == f"{base}/model"
    assert env["SM_CHANNEL_TRAIN"] == f"{base}/input/data/train"
    assert env["SM_CHANNEL_CONFIG"] == f"{base}/input/data/config"
    assert json.loads(env["SM_CHANNELS"]) == ["config", "train", "validation"]
    assert env["SM_HP_EPOCHS"] == "7"
    assert json.loads(env["SM_HPS"])["data.train_file"] == "train.csv"
    assert env["SM_CURRENT_HOST"] == "algo-1" and json.loads(env["SM_HOSTS"]) == ["algo-1"]
    assert env["SM_OUTPUT_DATA_DIR"] == f"{base}/output/data"
    assert env["SAGEBOOK_RUN_ID"] == m["run_id"] and env["LOG_LEVEL"] == "INFO"
    hps = seen["config"]["hyperparameters.json"]
    assert hps["epochs"] == "7" and all(isinstance(v, str) for v in hps.values())
    channels = seen["config"]["inputdataconfig.json"]
    assert channels["train"] == {"ContentType": "", "TrainingInputMode": "File",
                                 "S3DistributionType": "FullyReplicated",
                                 "RecordWrapperType": "None"}
    assert seen["config"]["resourceconfig.json"]["current_host"] == "algo-1"
    assert "input/data/train/train.csv" in seen["files"]
    assert "input/data/validation/validation.csv" in seen["files"]
    # the container reads the very file the record keeps
    assert seen["training_config"] == (run / "config/training_config.yaml").read_text()
    with tarfile.open(m["model_artifact"]) as tar:
        assert tar.extractfile("weights.txt").read() == b"42"
    assert m["final_metrics"] == {"loss": 0.25, "acc": 0.75}
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(x["name"], x["value"], x["step"]) for x in metrics] == [
        ("loss", 0.5, 0), ("acc", 0.25, 0), ("loss", 0.25, 1), ("acc", 0.75, 1)]
    assert all(isinstance(x["timestamp"], float) for x in metrics)
    assert "loss=0.25 acc=0.75" in (run / "logs/algo-1.log").read_text()
    assert "loss=0.25 acc=0.75" in result.stdout  # streamed live to the terminal
    request = json.loads((run / "request.json").read_text())
    assert request["TrainingJobName"] == m["job_name"]
    assert request["HyperParameters"] == hps
    assert f"record: {run}" in result.stdout


@pytest.mark.slow
def test_example_trains_and_records_the_run(make_config, tmp_path):
    result = sagebook("launch", str(make_config()), "-o", "training.epochs=3")
    assert result.returncode == 0, result.stderr
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Completed"
    assert [h["status"] for h in m["status_history"]] == ["Starting", "InProgress", "Completed"]
    assert m["final_metrics"]["val_accuracy"] > 0.8
    lines = (run / "logs/algo-1.log").read_text()
    assert "epoch=3 " in lines and "epoch=4 " not in lines
    steps = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    # the curve follows the log's own epochs; the final summary line is the final value only
    assert [x["step"] for x in steps if x["name"] == "val_accuracy"] == [1, 2, 3]
    assert m["config"]["overrides"] == ["training.epochs=3"]
    for key in ("user", "host", "created", "ended", "job_name", "git", "record_uri"):
        assert m[key] is not None
    assert (run / "sagemaker_config.yaml").read_text().startswith("# as launched from")


@pytest.mark.slow
def test_failing_training_records_failure_reason_and_traceback(make_config, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("pixel_0,label\n1.0,3\nnot-a-number,4\n")
    path = make_config(channels={"train": str(bad)})
    result = sagebook("launch", str(path), "-o", "training.data.train_file=bad.csv")
    assert result.returncode == 1
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Failed" and m["exit_code"] == 1
    assert m["failure_reason"]  # the training code's own words, first 1024 chars
    assert len(m["failure_reason"]) <= 1024
    failure = (run / "failure.txt").read_text()
    assert "Traceback (most recent call last)" in failure
    assert m["failure_reason"].splitlines()[0] == failure.splitlines()[0]
    assert "model_artifact" not in m
    assert "failed" in result.stderr or "Failed" in result.stdout


@pytest.mark.slow
def test_runs_keep_their_own_checkpoints_and_resume_only_when_asked(make_config, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    path = make_config(checkpoint_uri=str(checkpoints))
    first = sagebook("launch", str(path), "-o", "training.epochs=2")
    assert first.returncode == 0, first.stderr
    [run1] = runs(tmp_path / "experiments")
    saved = checkpoints / run1.name / "checkpoint.joblib"
    assert saved.is_file(), "checkpoints were not saved back into the run's own prefix"
    assert manifest(run1)["checkpoints"] == {"uri": saved.parent.as_uri()}
    before = saved.read_bytes()

    # Same checkpoint_uri, other settings: a fresh start, not the first run's epoch 2
    second = sagebook("launch", str(path), "-o", "training.epochs=3",
                      "-o", "training.learning_rate=0.02")
    assert second.returncode == 0, second.stderr
    assert "resuming" not in second.stdout and "epoch=1 " in second.stdout

    third = sagebook("rerun", run1.name, "--resume", "-o", "training.epochs=4",
                     "--store", str(tmp_path / "experiments"))
    assert third.returncode == 0, third.stderr
    assert "resuming from checkpoint at epoch 2" in third.stdout
    assert "epoch=1 " not in third.stdout and "epoch=3 " in third.stdout
    [run3] = [r for r in runs(tmp_path / "experiments") if manifest(r).get("parent")]
    shown = sagebook("show", run3.name, "--store", str(tmp_path / "experiments"))
    assert f"checkpoints: {(checkpoints / run3.name).as_uri()} (resumed from digits-mlp/" \
           f"{run1.name})" in shown.stdout
    assert manifest(run3)["checkpoints"] == {
        "uri": (checkpoints / run3.name).as_uri(), "resumed_from": saved.parent.as_uri(),
        "resumed_from_run": f"digits-mlp/{run1.name}"}
    assert saved.read_bytes() == before  # the run it resumed from keeps its own checkpoints
    assert sorted(p.name for p in checkpoints.iterdir()) == sorted(
        r.name for r in runs(tmp_path / "experiments"))


@pytest.mark.slow
def test_a_local_rerun_runs_the_recorded_code_not_todays(make_config, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("print('version 1')\n")
    path = make_config(source_dir=str(code), training_schema=None, metric_definitions=[])
    first = sagebook("launch", str(path))
    assert first.returncode == 0, first.stderr
    [parent] = runs(tmp_path / "experiments")
    [package] = manifest(parent)["uploads"]
    assert package["kind"] == "code" and package["source"] == str(code)
    assert (Path(package["uri"]) / "sourcedir.tar.gz").is_file()  # kept beside the records

    (code / "train.py").write_text("print('version 2')\n")  # an edit after the parent ran
    store = str(tmp_path / "experiments")
    again = sagebook("rerun", parent.name, "--store", store, "-c", str(path))
    assert again.returncode == 0, again.stderr
    assert "version 1" in again.stdout and "version 2" not in again.stdout
    assert f"the training code in {code} differs from the code run {parent.name} ran" \
        in again.stdout
    [child] = [r for r in runs(tmp_path / "experiments") if r != parent]
    assert manifest(child)["uploads"][0]["digest"] == package["digest"]
    assert manifest(child)["parent"]["code"] == "recorded"
    # the config as launched still names the user's source_dir, not the unpacked package
    assert f"source_dir: {code}" in (child / "sagemaker_config.yaml").read_text()

    current = sagebook("rerun", parent.name, "--store", store, "-c", str(path), "--code",
                       "current")
    assert current.returncode == 0, current.stderr
    assert "version 2" in current.stdout and "--code current" in current.stdout


@pytest.mark.slow
def test_tensorboard_files_reach_tensorboard_uri_as_on_sagemaker(make_config, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(textwrap.dedent("""
        import os, pathlib
        logs = pathlib.Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"), "output/tb")
        logs.mkdir(parents=True, exist_ok=True)
        (logs / "events.out.tfevents.1").write_text("scalars")
    """))
    board = tmp_path / "tensorboard"
    path = make_config(source_dir=str(code), training_schema=None, metric_definitions=[],
                       tensorboard_uri=str(board), tensorboard_local_path="/opt/ml/output/tb",
                       retries=2, profiler=False)
    result = sagebook("launch", str(path))
    assert result.returncode == 0, result.stderr
    assert (board / "events.out.tfevents.1").read_text() == "scalars"
    [run] = runs(tmp_path / "experiments")
    request = json.loads((run / "request.json").read_text())
    assert request["TensorBoardOutputConfig"] == {"S3OutputPath": board.as_uri(),
                                                  "LocalPath": "/opt/ml/output/tb"}
    assert request["RetryStrategy"] == {"MaximumRetryAttempts": 2}
    assert request["ProfilerConfig"] == {"DisableProfiler": True}


@pytest.mark.slow
def test_resume_from_nothing_or_without_checkpoint_uri_is_refused(make_config, tmp_path):
    path = make_config(checkpoint_uri=str(tmp_path / "checkpoints"),
                       resume_from="./no-such-folder")
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1)
                if text.startswith("resume_from:"))
    for dry_run in ([], ["--dry-run"]):
        result = sagebook("launch", str(path), *dry_run)
        assert result.returncode == 2
        assert f"{path}:{line}: job.resume_from: no checkpoints at " \
               f"{(tmp_path / 'no-such-folder').as_uri()}" in result.stderr
    path = make_config(resume_from="some-run")
    result = sagebook("launch", str(path))
    assert result.returncode == 2 and "resume_from needs checkpoint_uri" in result.stderr
    assert not (tmp_path / "experiments").exists()


@pytest.mark.slow
def test_sigterm_stops_the_run_and_the_record_says_stopped(make_config, tmp_path):
    path = make_config()
    proc = start_launch(str(path), "-o", "training.epochs=100000", until="epoch=")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err  # interrupted (README: Exit codes)
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Stopped"
    assert m["exit_code"] == 143
    assert "received SIGTERM: checkpoint saved" in (run / "logs/algo-1.log").read_text()


@pytest.mark.slow
def test_pdb_gives_the_training_process_the_terminal(make_config, tmp_path):
    code = tmp_path / "debug_code"
    code.mkdir()
    (code / "train.py").write_text("secret = 6 * 7\nbreakpoint()\nprint('after', secret)\n")
    path = make_config(source_dir=str(code), training_schema=None)
    result = sagebook("launch", str(path), "--pdb", input="p secret\nc\n")
    assert result.returncode == 0, result.stderr
    assert "(Pdb)" in result.stdout and "42" in result.stdout and "after 42" in result.stdout
    without = sagebook("launch", str(path))  # no terminal: breakpoints are skipped
    assert without.returncode == 0 and "(Pdb)" not in without.stdout


def test_missing_channel_folder_fails_before_a_record_exists(make_config, tmp_path):
    result = sagebook("launch", str(make_config()), "-o", "job.channels.train=/nope")
    assert result.returncode == 2
    assert "job.channels.train: path not found: /nope" in result.stderr
    assert not (tmp_path / "experiments").exists()


@pytest.mark.slow
def test_records_of_concurrent_launches_are_distinct(make_config, tmp_path):
    path = make_config()
    procs = [subprocess.Popen([sys.executable, "-m", "sagebook.cli", "launch", str(path),
                               "-o", "training.epochs=1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for _ in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    found = runs(tmp_path / "experiments")
    assert len(found) == 4
    assert len({manifest(r)["job_name"] for r in found}) == 4
    assert all(manifest(r)["status"] == "Completed" for r in found)


@pytest.mark.slow
def test_local_run_from_outside_the_repo_uses_config_relative_paths(tmp_path):
    """The example config works from any working directory."""
    env = {**os.environ, "SAGEBOOK_EXPERIMENTS_URI": str(tmp_path)}
    result = sagebook("launch", str(REPO / "configs/sagemaker_config.local.yaml"), "-o",
                      "training.epochs=1", "-o", f"job.experiments_uri={tmp_path / 'exp'}",
                      cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: runs(tmp_path / "exp"), what="a record")


@pytest.mark.slow
def test_record_names_the_commit_and_keeps_uncommitted_changes(make_config, probe_code,
                                                               tmp_path):
    def git(*args):
        return subprocess.run(["git", "-C", str(probe_code), *args], check=True,
                              capture_output=True, text=True).stdout.strip()

    git("init", "-q", "-b", "main")
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "probe")
    commit = git("rev-parse", "HEAD")
    path = probe_config(make_config, probe_code)
    assert sagebook("launch", str(path)).returncode == 0
    clean = manifest(runs(tmp_path / "experiments")[0])
    assert clean["git"] == {"commit": commit, "branch": "main", "dirty": False}

    with (probe_code / "train.py").open("a") as handle:
        handle.write("print('changed after the commit')\n")
    (probe_code / "notes.txt").write_text("new")
    assert sagebook("launch", str(path)).returncode == 0
    dirty_run = [r for r in runs(tmp_path / "experiments") if manifest(r)["git"]["dirty"]][0]
    state = manifest(dirty_run)["git"]
    assert state["commit"] == commit and state["changed"] == [".M train.py", "?? notes.txt"]
    assert "+print('changed after the commit')" in (dirty_run / "git.diff").read_text()


@pytest.mark.slow
def test_s3_channels_are_downloaded_for_a_local_run(make_config, probe_code, bucket, s3,
                                                   tmp_path):
    s3.put_object(Bucket=bucket, Key="datasets/train/part-0.csv", Body=b"a,b\n1,2\n")
    s3.put_object(Bucket=bucket, Key="datasets/train/nested/part-1.csv", Body=b"a,b\n3,4\n")
    path = probe_config(make_config, probe_code,
                        channels={"train": f"s3://{bucket}/datasets/train/"})
    result = sagebook("launch", str(path))
    assert result.returncode == 0, result.stderr
    m = manifest(runs(tmp_path / "experiments")[0])
    with tarfile.open(m["output_artifact"]) as tar:
        seen = json.load(tar.extractfile("contract.json"))
    assert "input/data/train/part-0.csv" in seen["files"]
    assert "input/data/train/nested/part-1.csv" in seen["files"]
    assert f"downloading channel train from s3://{bucket}/datasets/train/" in result.stdout
