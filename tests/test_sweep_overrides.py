"""`-o` with a sweep: an override of a key the sweep varies (or of a section holding it, or a key
inside it) is refused, naming the key and the sweep file, before anything is written; any other
override reaches every trial and is recorded in each trial's manifest as a launch records its
own, and `--dry-run` and `show SWEEP` say the trials run with it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from sagebook.cli import main

from conftest import manifest, runs, sagebook

TRAIN = '''
import json, os
hps = json.loads(os.environ["SM_HPS"])
print(f"seen epochs={hps['epochs']} units={hps['units']} train_file={hps['data.train_file']}")
print(f"val_accuracy={1 - abs(hps['lr'] - 0.01):.4f}", flush=True)
'''

SWEEP = """\
objective: {metric: val_accuracy, goal: maximize}
parameters:
  training.lr: [0.01, 0.03]
  training.data.train_file: [a.csv, b.csv]
"""


@pytest.fixture
def job(tmp_path) -> Path:
    """A job config whose training (a line or two of output) has a nested `data` section."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(TRAIN)
    training = tmp_path / "training.yaml"
    training.write_text("units: 8\nlr: 0.01\nepochs: 2\ndata:\n  train_file: a.csv\n")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({
        "experiment": "tiny", "training_config": str(training), "source_dir": str(code),
        "training_schema": None, "instance_type": "local", "max_runtime": "10m",
        "metric_definitions": [{"name": "val_accuracy", "regex": r"val_accuracy=([0-9.]+)"}],
        "experiments_uri": str(tmp_path / "experiments"),
    }, sort_keys=False))
    return path


@pytest.fixture
def sweep(tmp_path) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP)
    return path


@pytest.mark.parametrize("override, swept, line", [
    ("training.lr=0.5", "training.lr", 3),
    # a section holding the swept key: the trial's train_file would replace the override's
    ("training.data={train_file: c.csv}", "training.data.train_file", 4),
    ("training.data.train_file=c.csv", "training.data.train_file", 4),
])
@pytest.mark.parametrize("dry_run", [True, False])
def test_override_of_a_swept_key_is_refused_naming_the_key_and_the_sweep_file(
        job, sweep, tmp_path, capsys, override, swept, line, dry_run):
    code = main(["sweep", str(job), "--sweep", str(sweep), "-o", "training.epochs=1",
                 "-o", override, *(["--dry-run"] if dry_run else [])])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.splitlines() == [
        "sagebook: invalid configuration:",
        f"  {sweep}:{line}: sweep.parameters.{swept}: -o {override} would be lost: every "
        f"trial sets {swept} from sweep.yaml; drop the -o, or change the sweep's values"]
    assert not (tmp_path / "experiments").exists()


def test_a_key_that_only_starts_like_a_swept_one_is_not_refused(job, sweep, tmp_path):
    """`training.lr_decay` is not inside `training.lr`: its override is the trials' to run."""
    result = sagebook("sweep", str(job), "--sweep", str(sweep), "-o", "training.lr_decay=0.5",
                      "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "overrides, in every trial: training.lr_decay=0.5"
    assert not (tmp_path / "experiments").exists()


def test_a_sweep_in_the_job_config_is_named_by_the_job_file(job, capsys):
    with job.open("a") as handle:
        handle.write("sweep:\n" + textwrap.indent(SWEEP, "  "))
    assert main(["sweep", str(job), "-o", "training.lr=0.5", "--dry-run"]) == 2
    line = job.read_text().splitlines().index("    training.lr: [0.01, 0.03]") + 1
    assert f"  {job}:{line}: sweep.parameters.training.lr: -o training.lr=0.5 would be lost: " \
           f"every trial sets training.lr from {job.name};" in capsys.readouterr().err


@pytest.mark.slow
def test_other_overrides_reach_every_trial_and_its_manifest(job, sweep, tmp_path):
    given = ["training.epochs=1", "training.units=5"]
    options = [arg for o in given for arg in ("-o", o)]
    planned = sagebook("sweep", str(job), "--sweep", str(sweep), *options, "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.splitlines()[-1] == f"overrides, in every trial: {', '.join(given)}"
    result = sagebook("sweep", str(job), "--sweep", str(sweep), *options)
    assert result.returncode == 0, result.stderr + result.stdout
    experiments = tmp_path / "experiments"
    sweep_dir = next((experiments / "_sweeps" / "tiny").iterdir())
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert record["config"]["overrides"] == given
    assert record["counts"] == {"Completed": 4}
    # what a launch with the same -o records of them
    single = sagebook("launch", str(job), *options)
    assert single.returncode == 0, single.stderr
    trials = {manifest(run)["run_id"]: run for run in runs(experiments)
              if "sweep" in manifest(run)}
    [launched] = [manifest(run) for run in runs(experiments) if "sweep" not in manifest(run)]
    assert launched["config"]["overrides"] == given
    assert len(trials) == 4
    for trial in record["trials"]:
        run = trials[trial["run_id"]]
        m = manifest(run)
        assert m["config"]["overrides"] == [*given, *trial["overrides"]]
        assert m["params"]["epochs"] == 1 and m["params"]["units"] == 5
        train_file = trial["parameters"]["training.data.train_file"]
        assert m["params"]["data.train_file"] == train_file
        log = (run / "logs" / "algo-1.log").read_text()
        assert f"seen epochs=1 units=5 train_file={train_file}" in log  # what the code got
    shown = sagebook("show", record["sweep_id"], "--store", str(experiments))
    assert shown.returncode == 0, shown.stderr
    assert f"overrides: {', '.join(given)}" in shown.stdout.splitlines()
