"""`sagebook launch --interrupt-after`: a managed-spot interruption rehearsed locally, as
SageMaker does it (SIGTERM, the grace period, a fresh container with the checkpoint prefix
restored, the run going on to its end), and the record saying whether the code resumed."""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest

from sagebook.backends.interruption import STARTED_OVER, judge

from conftest import manifest, runs, sagebook

EPOCHS = 300  # the example's: the interruption lands mid-training on a fast machine too

# Prints an epoch line every 0.4 s and saves a checkpoint it never reads back; SIGTERM ends it
# (Python's default), as it ends code that does not handle it.
IGNORES_CHECKPOINTS = textwrap.dedent("""
    import os, pathlib, time
    base = pathlib.Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
    for epoch in range(1, EPOCHS + 1):
        time.sleep(0.4)
        print(f"epoch={epoch} loss={1 / epoch:.3f}", flush=True)
        (base / "checkpoints/state.txt").write_text(str(epoch))
    print("done", flush=True)
""")


def program_config(make_config, tmp_path: Path, epochs: int, **changes) -> Path:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "train.py").write_text(IGNORES_CHECKPOINTS.replace("EPOCHS", str(epochs)))
    return make_config(source_dir=str(code), training_schema=None, metric_definitions=[],
                       checkpoint_uri=str(tmp_path / "checkpoints"), **changes)


def launch(path: Path, *flags: str, grace: float = 20):
    return sagebook("launch", str(path), *flags,
                    env={**os.environ, "SAGEBOOK_STOP_GRACE_SECONDS": str(grace)})


def shown(tmp_path: Path, run_id: str) -> str:
    result = sagebook("show", run_id, "--store", str(tmp_path / "experiments"))
    assert result.returncode == 0, result.stderr
    return result.stdout


def report_page(tmp_path: Path, m: dict) -> str:
    result = sagebook("report", "--store", str(tmp_path / "experiments"))
    assert result.returncode == 0, result.stderr
    return (tmp_path / "experiments/_report/runs" / m["experiment"]
            / f"{m['run_id']}.html").read_text()


@pytest.mark.slow
def test_the_example_resumes_from_the_checkpoint_it_saved_at_sigterm(make_config, tmp_path):
    # late enough that the code has its SIGTERM handler (numpy and scikit-learn take a few
    # seconds to import on a busy machine), and epochs enough to land mid-training on a quiet
    # one (an epoch of the example takes ~0.1 s there)
    path = make_config(checkpoint_uri=str(tmp_path / "checkpoints"),
                       training={"epochs": EPOCHS})
    result = launch(path, "--interrupt-after", "6s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--interrupt-after 6s: the job is interrupted as SageMaker interrupts a spot job" \
        in result.stdout
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Completed"
    steps = [(h["status"], h.get("secondary_status")) for h in m["status_history"]]
    assert steps == [("Starting", None), ("InProgress", None), ("InProgress", "Interrupted"),
                     ("InProgress", "Restarting"), ("InProgress", "Training"),
                     ("Completed", None)]
    first = (run / "logs/algo-1.log").read_text()
    second = (run / "logs/algo-1.attempt-2.log").read_text()
    # the example's own words: what it saved at SIGTERM is what the fresh start read back
    [saved] = re.findall(r"received SIGTERM: checkpoint saved at epoch (\d+)", first)
    epoch = int(saved)
    assert f"resuming from checkpoint at epoch {epoch}\n" in second
    assert re.findall(r"^epoch=(\d+) ", second, re.MULTILINE) == \
        [str(e) for e in range(epoch + 1, EPOCHS + 1)]
    assert "final val_accuracy" in second and "final val_accuracy" not in first
    rehearsal = m["interruption"]
    assert rehearsal["resumed"] is True and rehearsal["resumed_from"] == epoch
    assert [(a["exit_code"], a["interrupted"], a["restored_files"])
            for a in rehearsal["attempts"]] == [(143, True, 0), (0, False, 1)]
    assert (tmp_path / "checkpoints" / run.name / "checkpoint.joblib").is_file()
    text = shown(tmp_path, m["run_id"])
    assert f"interruption: interrupted after 6 s (rehearsal); attempt 2 resumed from epoch " \
           f"{epoch} (its log: 'resuming from checkpoint at epoch {epoch}')" in text
    assert "attempt 2: logs/algo-1.attempt-2.log, exit 0" in text
    assert "InProgress (Interrupted)" in text and "InProgress (Restarting)" in text


@pytest.mark.slow
def test_code_that_ignores_its_checkpoints_is_said_to_start_over(make_config, tmp_path):
    path = program_config(make_config, tmp_path, epochs=6)
    result = launch(path, "--interrupt-after", "2s")
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Completed"
    first = (run / "logs/algo-1.log").read_text()
    assert "epoch=1 " in first and "done" not in first  # SIGTERM ended attempt 1 mid-way
    assert (run / "logs/algo-1.attempt-2.log").read_text().startswith("epoch=1 ")
    rehearsal = m["interruption"]
    assert rehearsal["resumed"] is False
    assert rehearsal["attempts"][1]["restored_files"] == 1  # it had one; it did not read it
    sentence = f"attempt 2 {STARTED_OVER} (its log begins again at epoch 1)"
    assert sentence in shown(tmp_path, m["run_id"])
    assert sentence in report_page(tmp_path, m)


@pytest.mark.slow
def test_max_runtime_counts_the_training_time_of_both_attempts(make_config, tmp_path):
    path = program_config(make_config, tmp_path, epochs=50, max_runtime=5)
    result = launch(path, "--interrupt-after", "2s", grace=5)
    assert result.returncode == 1, result.stdout + result.stderr
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Stopped" and m["secondary_status"] == "MaxRuntimeExceeded"
    assert [a["interrupted"] for a in m["interruption"]["attempts"]] == [True, False]
    # about 2 s of training, then about 3 s: 0.4 s an epoch, far from the 50 the code runs
    epochs = [len(re.findall(r"^epoch=", (run / name).read_text(), re.MULTILINE))
              for name in ("logs/algo-1.log", "logs/algo-1.attempt-2.log")]
    assert 1 <= epochs[0] <= 5 and 2 <= epochs[1] <= 8, epochs


# A `docker` whose `run` says what the fresh container found in its checkpoint folder, then
# trains as IGNORES_CHECKPOINTS does; every call is logged.
DOCKER_STUB = textwrap.dedent("""\
    #!{python}
    import json, os, pathlib, sys, time
    with open(os.environ["DOCKER_STUB_LOG"], "a") as log:
        log.write(json.dumps(sys.argv[1:]) + "\\n")
    if sys.argv[1] == "run":
        root = pathlib.Path([a for a in sys.argv if a.endswith(":/opt/ml")][0].rsplit(":", 1)[0])
        saved = root / "checkpoints/state.txt"
        print(f"restored={{saved.read_text() if saved.exists() else 'nothing'}}", flush=True)
        for epoch in range(1, 6):
            time.sleep(0.4)
            print(f"epoch={{epoch}} loss=0.1", flush=True)
            saved.write_text(str(epoch))
""")


@pytest.mark.slow
def test_local_docker_starts_a_fresh_container_with_the_checkpoints(make_config, tmp_path,
                                                                   monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(DOCKER_STUB.format(python=sys.executable))
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_STUB_LOG", str(tmp_path / "docker.log"))
    path = make_config(instance_type="local-docker", image_uri="img", metric_definitions=[],
                       checkpoint_uri=str(tmp_path / "checkpoints"))
    result = launch(path, "--interrupt-after", "2s")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [json.loads(line)[0] for line in (tmp_path / "docker.log").read_text().splitlines()]
    assert calls == ["run", "stop", "run"]  # docker stop: SIGTERM, SIGKILL after the grace
    [run] = runs(tmp_path / "experiments")
    first = (run / "logs/algo-1.log").read_text()
    last = re.findall(r"^epoch=(\d+) ", first, re.MULTILINE)[-1]
    assert first.startswith("restored=nothing")
    # the new container's checkpoint folder holds what the old one had saved, synced back
    assert (run / "logs/algo-1.attempt-2.log").read_text().startswith(f"restored={last}\n")
    m = manifest(run)
    assert m["status"] == "Completed"
    assert m["interruption"]["verdict"] == STARTED_OVER


@pytest.mark.slow
def test_a_run_that_ends_first_is_not_interrupted_and_says_so(make_config, tmp_path):
    path = program_config(make_config, tmp_path, epochs=2)
    result = launch(path, "--interrupt-after", "1m")
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Completed" and not (run / "logs/algo-1.attempt-2.log").exists()
    assert [a["interrupted"] for a in m["interruption"]["attempts"]] == [False]
    assert ("interruption: --interrupt-after 60 s: the run ended before that time, nothing "
            "was interrupted") in shown(tmp_path, m["run_id"])


@pytest.mark.slow
@pytest.mark.parametrize("flags, where", [
    (["--interrupt-after", "soon"], "--interrupt-after: expected a duration"),
    (["--interrupt-after", "0s"], "--interrupt-after: a duration must be positive"),
    (["--interrupt-after", "10m"], "max_runtime (300 s): the job would stop at its limit"),
    (["--interrupt-after", "30s", "--pdb"], "--pdb gives the training process this terminal"),
    (["--interrupt-after", "10m", "--dry-run"], "max_runtime (300 s): the job would stop"),
])
def test_an_interruption_that_cannot_be_had_is_refused(make_config, tmp_path, flags, where):
    path = make_config(max_runtime=300)
    result = sagebook("launch", str(path), *flags)
    assert result.returncode == 2, result.stdout + result.stderr
    assert where in result.stderr
    assert not (tmp_path / "experiments").exists()  # nothing written


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_sagemaker_job_is_not_interrupted_by_sagebook(cloud_config, bucket, s3, dry_run):
    result = sagebook("launch", str(cloud_config()), "--interrupt-after", "30s", *dry_run)
    assert result.returncode == 2, result.stdout + result.stderr
    assert ("--interrupt-after: job.instance_type: ml.m5.large runs on SageMaker, which "
            "interrupts spot jobs itself") in result.stderr
    assert s3.list_objects_v2(Bucket=bucket, Prefix="records/").get("KeyCount") == 0


def test_the_verdict_reads_the_second_attempt_log():
    first = ["epoch=1 loss=0.5", "epoch=2 loss=0.4"]
    said = judge(first, ["Resumed training at step 200", "step=201 loss=0.1"], 1)
    assert (said["resumed"], said["resumed_from"]) == (True, 200)
    quiet = judge(first, ["epoch=3 loss=0.3"], 1)  # no resume line: it went on at epoch 3
    assert (quiet["resumed"], quiet["resumed_from"]) == (True, 2)
    again = judge(first, ["epoch=1 loss=0.5"], None)
    assert again["verdict"] == STARTED_OVER
    assert again["evidence"] == ("its log begins again at epoch 1; the job has no "
                                 "checkpoint_uri: nothing was restored")
    assert judge(first, ["no numbers"], 0)["resumed"] is False
    assert judge(first, ["no numbers"], 3)["resumed"] is None  # nothing tells: not claimed
