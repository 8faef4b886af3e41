"""Sweeps: the sweep block's validation (tests/bad_sweeps.yaml), local grids in parallel with a
record per trial, Ctrl-C in the middle, resume with linking, and list/show of a sweep.

The local trials run a tiny training script (a fraction of a second each), so that a grid of
six trials costs seconds; the example's real training is what the benchmark sweeps.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
import yaml

from sagebook.cli import main

from conftest import REPO, manifest, runs, sagebook, wait_for

CASES = yaml.safe_load((REPO / "tests" / "bad_sweeps.yaml").read_text())

SCHEMA = '''
from typing import Literal
from pydantic import BaseModel, ConfigDict, Field

class TrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    units: int = Field(8, ge=1, le=1024)
    lr: float = Field(0.01, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"
    epochs: int = Field(2, ge=1)
    pause: float = Field(0, ge=0)
'''

TRAIN = '''
import math, os, pathlib, sys, time, yaml
config_dir = pathlib.Path(os.environ["SM_CHANNEL_CONFIG"])
config = yaml.safe_load(next(config_dir.glob("*.yaml")).read_text())
hold = os.environ.get("HOLD_FILE")
print(f"started units={config['units']} lr={config['lr']}", flush=True)
print(f"cpus={sorted(os.sched_getaffinity(0))} gpus={os.environ.get('CUDA_VISIBLE_DEVICES')}",
      flush=True)
if config["units"] == 13:
    sys.exit("unlucky number of units")
for _ in range(6000):  # at most 5 min: a test that fails cannot leave it running for ever
    if not (hold and os.path.exists(hold)):
        break
    time.sleep(0.05)
for epoch in range(1, config["epochs"] + 1):
    accuracy = 1 - abs(math.log10(config["lr"]) + 2) / 10 - 1 / (config["units"] * epoch)
    time.sleep(config.get("pause", 0))
    print(f"epoch={epoch} val_accuracy={accuracy:.4f}", flush=True)
'''


@pytest.fixture
def tiny(tmp_path):
    """A job config for a tiny training script (and its schema) with records in tmp_path."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "schema.py").write_text(SCHEMA)
    (code / "train.py").write_text(TRAIN)
    training = tmp_path / "training.yaml"
    training.write_text("units: 8\nlr: 0.01\nepochs: 2\n")
    job = {
        "experiment": "tiny", "training_config": str(training), "source_dir": str(code),
        "instance_type": "local", "max_runtime": "10m",
        "metric_definitions": [{"name": "val_accuracy", "regex": r"val_accuracy=([0-9.]+)"}],
        "environment": {"HOLD_FILE": str(tmp_path / "hold")},
        "experiments_uri": str(tmp_path / "experiments"),
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def write_sweep(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# --------------------------------------------------------------------------------------------
# Validation


def test_the_corpus_is_large_and_names_are_unique():
    assert len(CASES) >= 15
    assert len({c["name"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_sweep_gets_a_message_with_file_line_and_key(case, tiny, tmp_path, capsys):
    args = ["sweep", str(tiny)]
    if "in_job" in case:
        with tiny.open("a") as handle:
            handle.write(case["in_job"])
        source = tiny
    else:
        source = write_sweep(tmp_path, case["sweep"])
        args += ["--sweep", str(source)]
    for override in case.get("overrides", []):
        args += ["-o", override]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith("sagebook: invalid configuration:\n")
    assert case["expect"] in err, err
    line = case["line"]
    if isinstance(line, str) and line.startswith("in_job+"):
        job_lines = tiny.read_text().splitlines()
        line = job_lines.index("sweep:") + 1 + int(line.split("+")[1])
    matching = [p for p in err.splitlines()[1:] if case["expect"] in p]
    where = f"  {source}:{line}: " if line is not None else "  "
    key = f"{case['key']}: " if case["key"] else ""
    assert any(p.startswith(where) and key in p for p in matching), (where, key, err)
    assert not (tmp_path / "experiments").exists()


def test_dry_run_prints_the_trial_table_and_writes_nothing(tiny, tmp_path):
    sweep = write_sweep(tmp_path, """
        objective: {metric: val_accuracy, goal: maximize}
        strategy: random
        max_trials: 3
        seed: 7
        parameters:
          training.lr: {min: 0.001, max: 0.1, scale: log}
          training.units: {min: 4, max: 64}
          training.optimizer: [adam, sgd]
    """)
    first = sagebook("sweep", str(tiny), "--sweep", str(sweep), "--dry-run")
    assert first.returncode == 0, first.stderr
    rows = first.stdout.splitlines()
    assert rows[0] == ("sweep of tiny: random, maximize val_accuracy; 3 trials, 1 at a time on "
                       "local")
    assert rows[1].split() == ["trial", "training.lr", "training.units", "training.optimizer"]
    values = [row.split() for row in rows[2:5]]
    assert [v[0] for v in values] == ["0", "1", "2"]
    for _, lr, units, optimizer in values:
        assert 0.001 <= float(lr) <= 0.1 and 4 <= int(units) <= 64 and optimizer in ("adam", "sgd")
    again = sagebook("sweep", str(tiny), "--sweep", str(sweep), "--dry-run")
    assert again.stdout == first.stdout  # the same seed draws the same trials
    assert not (tmp_path / "experiments").exists()


# --------------------------------------------------------------------------------------------
# Running locally


@pytest.mark.slow
def test_local_grid_runs_six_trials_two_at_a_time_each_a_record_of_the_sweep(tiny, tmp_path):
    sweep = write_sweep(tmp_path, """
        objective: {metric: val_accuracy, goal: maximize}
        parameters:
          training.lr: [0.001, 0.01, 0.1]
          training.units: [4, 32]
        max_parallel: 2
    """)
    # each trial trains for a second, so that trials started together overlap for sure
    result = sagebook("sweep", str(tiny), "--sweep", str(sweep), "-o", "training.epochs=1",
                      "-o", "training.pause=1",
                      env={**os.environ, "CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert result.returncode == 0, result.stderr + result.stdout
    experiments = tmp_path / "experiments"
    sweep_dir = next((experiments / "_sweeps" / "tiny").iterdir())
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert record["status"] == "Completed" and record["counts"] == {"Completed": 6}
    assert (sweep_dir / "sweep.yaml").read_text() == sweep.read_text()
    trial_runs = runs(experiments)
    assert len(trial_runs) == 6
    by_id = {run.name: manifest(run) for run in trial_runs}
    assert sorted(t["run_id"] for t in record["trials"]) == sorted(by_id)
    for trial in record["trials"]:
        run = by_id[trial["run_id"]]
        assert run["status"] == "Completed"
        assert run["sweep"]["id"] == record["sweep_id"] == sweep_dir.name
        assert run["sweep"]["trial"] == trial["trial"]
        assert run["sweep"]["parameters"] == trial["parameters"]
        assert run["sweep"]["record"] == str(sweep_dir)
        assert run["config"]["overrides"][-2:] == trial["overrides"]
        assert run["config"]["overrides"][:2] == ["training.epochs=1", "training.pause=1"]
        launched = yaml.safe_load(
            (experiments / "tiny" / trial["run_id"] / "config/training_config.yaml").read_text())
        assert launched["lr"] == trial["parameters"]["training.lr"]
        assert launched["units"] == trial["parameters"]["training.units"]
        assert launched["epochs"] == 1
        assert trial["objective"] == run["final_metrics"]["val_accuracy"]
    assert record["best"]["parameters"] == {"training.lr": 0.01, "training.units": 32}
    # two at a time: some trials overlapped, never more than two
    spans = sorted((_time(r, "InProgress"), _time(r, "Completed")) for r in by_id.values())
    overlaps = [sum(1 for s, e in spans if s < t < e) for t, _ in spans]
    assert max(overlaps) <= 1  # a trial started while at most one other ran
    assert any(overlaps)
    # each trial ran on its own share of the CPUs: two trials at once, two halves
    cpus = len(os.sched_getaffinity(0))
    seen = {re.search(r"cpus=(\[[0-9, ]*\])", (experiments / "tiny" / run_id /
                                                  "logs/algo-1.log").read_text()).group(1)
            for run_id in by_id}
    if cpus >= 2:
        assert len(seen) == 2 and all(len(json.loads(s)) == cpus // 2 for s in seen), seen
    gpus = {re.search(r"gpus=(\S+)", (experiments / "tiny" / run_id /
                                        "logs/algo-1.log").read_text()).group(1)
            for run_id in by_id}
    assert gpus == {"0,2", "1,3"}  # the four visible devices, two for each slot

    listing = sagebook("list", "--store", str(experiments), "--sweep", sweep_dir.name)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert "training.lr" in lines[0] and "training.units" in lines[0]
    assert "VAL_ACCURACY" in lines[0]
    assert record["best"]["run_id"] in lines[1]  # best first
    assert len(lines) == 7

    shown = sagebook("show", sweep_dir.name[-6:], "--store", str(experiments))
    assert shown.returncode == 0, shown.stderr
    assert f"sweep:    {sweep_dir.name}" in shown.stdout
    assert "6 completed" in shown.stdout
    assert re.search(r"best:\s+trial \d .*val_accuracy=0\.\d+", shown.stdout)
    assert "training.lr=0.01" in shown.stdout
    trial = sagebook("show", record["best"]["run_id"], "--store", str(experiments))
    assert (f"sweep:       {sweep_dir.name} (trial {record['best']['trial']}: training.lr=0.01, "
            "training.units=32)") in trial.stdout

    # the report's sweep page, and the dashboard's
    report = sagebook("report", "--store", str(experiments))
    assert report.returncode == 0, report.stderr
    site = experiments / "_report"
    index_page = (site / "index.html").read_text()
    assert f'href="sweeps/tiny/{sweep_dir.name}.html"' in index_page
    page = (site / "sweeps" / "tiny" / f"{sweep_dir.name}.html").read_text()
    over_time = re.search(r'<svg id="over-time".*?</svg>', page, re.S).group(0)
    assert over_time.count("<circle") == 6 and "<polyline" in over_time  # and the best so far
    scatters = re.findall(r'<svg class="scatter".*?</svg>', page, re.S)
    assert [re.search(r'aria-label="([^"]+)"', s).group(1) for s in scatters] == [
        "val_accuracy by training.lr", "val_accuracy by training.units"]
    assert all(s.count("<circle") == 6 for s in scatters)
    parallel = re.search(r'<svg id="parallel".*?</svg>', page, re.S).group(0)
    assert parallel.count('class="run"') == 6
    assert [a for a in re.findall(r'text-anchor="middle">([^<]+)</text>', parallel)] == [
        "training.lr", "training.units", "val_accuracy"]
    for link in re.findall(r'href="(\.\./\.\./runs/[^"]+)"', page):
        assert (site / "sweeps" / "tiny" / link).resolve().is_file(), link
    assert len(re.findall(r'href="\.\./\.\./runs/', page)) == 6

    from sagebook.dashboard import Dashboard

    board = Dashboard(str(experiments)).sweep(sweep_dir.name[-6:])
    assert board._repr_html_().count('class="run"') == 6


def _time(run: dict, status: str) -> str:
    return next(h["time"] for h in run["status_history"] if h["status"] == status)


def _training_processes(script: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if str(script) in (proc.info["cmdline"] or []):
            found.append(proc)
    return found


@pytest.mark.slow
def test_ctrl_c_stops_every_trial_then_resume_runs_only_the_rest(tiny, tmp_path):
    experiments = tmp_path / "experiments"
    grid = """
        objective: {metric: val_accuracy, goal: maximize}
        parameters:
          training.units: %s
        max_parallel: 2
    """
    # A finished run with the very config, code and data of trial 3 of the sweep below.
    earlier = write_sweep(tmp_path, grid % "[64]", "earlier.yaml")
    done = sagebook("sweep", str(tiny), "--sweep", str(earlier))
    assert done.returncode == 0, done.stderr + done.stdout
    (earlier_run,) = runs(experiments)

    hold = tmp_path / "hold"
    hold.write_text("the tiny script waits while this file exists")
    sweep = write_sweep(tmp_path, grid % "[8, 16, 32, 64]")
    proc = subprocess.Popen([sys.executable, "-m", "sagebook.cli", "sweep", str(tiny),
                             "--sweep", str(sweep)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    started = set()
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.match(r"\[trial (\d)\] started", line)
        if match:
            started.add(match.group(1))
        if len(started) == 2:
            break
    sweep_dir = next(p for p in (experiments / "_sweeps" / "tiny").iterdir()
                     if len(json.loads((p / "sweep.json").read_text())["trials"]) == 4)
    running = sagebook("sweep", "--resume", sweep_dir.name, "--store", str(experiments))
    assert running.returncode == 1 and f"process {proc.pid} on this machine" in running.stderr
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "stopping 2 running trials" in out
    assert "Traceback" not in out
    resume = next(line for line in out.splitlines()
                  if line.startswith(f"[sweep] {sweep_dir.name} interrupted; next: "))
    resume_command = shlex.split(resume.split("next: ", 1)[1].split("   ", 1)[0])
    assert resume_command == ["sagebook", "sweep", "--resume", sweep_dir.name,
                              "--store", str(experiments)]
    script = tiny.parent / "code" / "train.py"
    assert _training_processes(script) == []
    record = json.loads((sweep_dir / "sweep.json").read_text())
    statuses = {t["trial"]: t["status"] for t in record["trials"]}
    assert statuses == {0: "Stopped", 1: "Stopped", 2: "Pending", 3: "Pending"}
    for trial in record["trials"][:2]:
        run = manifest(experiments / "tiny" / trial["run_id"])
        assert run["status"] == "Stopped"
        assert run["sweep"]["id"] == sweep_dir.name
    stopped_runs = {t["run_id"] for t in record["trials"][:2]}

    hold.unlink()
    resumed = sagebook(*resume_command[1:])  # the command the interrupted sweep printed
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert f"same config, code and data as run {earlier_run.name}: linked" in resumed.stdout
    assert "3 trials to run" in resumed.stdout
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert record["status"] == "Completed"
    assert all(t["status"] == "Completed" for t in record["trials"])
    assert record["trials"][3]["run_id"] == earlier_run.name and record["trials"][3]["linked"]
    assert not stopped_runs & {t["run_id"] for t in record["trials"]}  # stopped ones re-ran
    assert {r for t in record["trials"] for r in t.get("earlier_runs", [])} == stopped_runs
    # 1 earlier + 2 stopped + 3 resumed; the linked trial did not run again
    assert len(runs(experiments)) == 6

    again = sagebook("sweep", "--resume", sweep_dir.name, "--store", str(experiments))
    assert again.returncode == 0 and "nothing to resume" in again.stdout
    wait_for(lambda: not _training_processes(script), 5, "no training process left")


# --------------------------------------------------------------------------------------------
# On SageMaker: one tuning job (moto's server), its training jobs driven from the test


SEARCH_SPACES = {
    "grid": "parameters:\n  training.learning_rate: [0.001, 0.01]\n"
            "  training.optimizer: [adam, sgd]\n",
    "random": "max_trials: 6\nseed: 3\nparameters:\n"
              "  training.learning_rate: {min: 0.001, max: 0.1, scale: log}\n"
              "  training.hidden_units: {min: 16, max: 128}\n",
    "bayesian": "max_trials: 12\nearly_stopping: true\n"
                "stop_when: {target: 0.99, no_improvement: 4}\n"
                "parameters:\n  training.learning_rate: {min: 0.001, max: 0.1, scale: log}\n"
                "  training.optimizer: [adam, sgd]\n"
                "  job.instance_type: [ml.m5.large, ml.c5.xlarge]\n",
    "hyperband": "max_trials: 9\nmax_runtime: 2h\nhyperband: {min_resource: 1, max_resource: 9}\n"
                 "parameters:\n  training.alpha: {min: 0.00001, max: 0.01, scale: log}\n",
}


def cloud_sweep(tmp_path: Path, strategy: str, extra: str = "") -> Path:
    return write_sweep(tmp_path, "objective: {metric: val_accuracy, goal: maximize}\n"
                       f"strategy: {strategy}\nmax_parallel: 3\n{extra}"
                       + SEARCH_SPACES[strategy], f"{strategy}.yaml")


def tuning_jobs() -> dict:
    from moto.sagemaker.models import sagemaker_backends

    return {name: job for account in sagemaker_backends.values() for region in account.values()
            for name, job in region.hyper_parameter_tuning_jobs.items()}


@pytest.mark.parametrize("strategy", list(SEARCH_SPACES))
def test_every_strategy_becomes_one_checked_tuning_job(strategy, fake, cloud_config, tmp_path,
                                                       capsys, s3, bucket):
    import boto3

    config = cloud_config(training={"epochs": 9})
    assert main(["sweep", str(config), "--sweep", str(cloud_sweep(tmp_path, strategy))]) == 0
    out = capsys.readouterr().out
    (name,) = tuning_jobs()
    assert f"tuning job {name} created" in out
    sent = boto3.client("sagemaker").describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    request_key = next(k for k in keys if k.endswith(f"{name}/request.json"))
    request = json.loads(s3.get_object(Bucket=bucket, Key=request_key)["Body"].read())
    tuning = sent["HyperParameterTuningJobConfig"]
    assert tuning == request["HyperParameterTuningJobConfig"]
    assert tuning["Strategy"] == strategy.capitalize()
    assert tuning["ResourceLimits"]["MaxParallelTrainingJobs"] == 3
    definitions = request.get("TrainingJobDefinitions") or [request["TrainingJobDefinition"]]
    for definition in definitions:
        static = definition["StaticHyperParameters"]
        assert static["epochs"] == "9"  # the training config, as static hyperparameters
        assert "learning_rate" not in static or strategy == "hyperband"
        assert all(c["ChannelName"] != "config" for c in definition["InputDataConfig"])
        assert definition["RoleArn"].endswith("role/SageMakerExecutionRole")
        image = definition["AlgorithmSpecification"]["TrainingImage"]
        assert "@sha256:" in image  # run by digest, as every launch
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags["sagebook:sweep"] == name and tags["sagebook:experiment"] == "digits-mlp"
    if strategy == "grid":
        assert tuning["ParameterRanges"]["CategoricalParameterRanges"] == [
            {"Name": "learning_rate", "Values": ["0.001", "0.01"]},
            {"Name": "optimizer", "Values": ["adam", "sgd"]}]
    elif strategy == "random":
        assert tuning["RandomSeed"] == 3
        assert tuning["ParameterRanges"]["IntegerParameterRanges"] == [
            {"Name": "hidden_units", "MinValue": "16", "MaxValue": "128",
             "ScalingType": "Linear"}]
    elif strategy == "bayesian":
        assert tuning["TrainingJobEarlyStoppingType"] == "Auto"
        assert tuning["TuningJobCompletionCriteria"] == {
            "TargetObjectiveMetricValue": 0.99,
            "BestObjectiveNotImproving": {"MaxNumberOfTrainingJobsNotImproving": 4}}
        assert [d["ResourceConfig"]["InstanceType"] for d in definitions] == [
            "ml.m5.large", "ml.c5.xlarge"]
        assert all(d["TuningObjective"] == {"Type": "Maximize", "MetricName": "val_accuracy"}
                   for d in definitions)
    else:
        assert tuning["StrategyConfig"] == {
            "HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 9}}
        assert tuning["ResourceLimits"]["MaxRuntimeInSeconds"] == 7200
        assert tuning["ParameterRanges"]["ContinuousParameterRanges"][0]["ScalingType"] == (
            "Logarithmic")


def test_a_request_the_model_refuses_is_refused_before_any_upload(fake, cloud_config, tmp_path,
                                                                  capsys, s3, bucket):
    sweep = cloud_sweep(tmp_path, "bayesian").read_text().replace("no_improvement: 4",
                                                                  "no_improvement: 1")
    path = write_sweep(tmp_path, sweep, "refused.yaml")
    assert main(["sweep", str(cloud_config()), "--sweep", str(path)]) == 2
    err = capsys.readouterr().err
    line = sweep.splitlines().index(next(ln for ln in sweep.splitlines()
                                         if ln.startswith("stop_when"))) + 1
    assert f"{path}:{line}: sweep.stop_when.no_improvement: at least 3 allowed, got 1" in err
    assert tuning_jobs() == {}
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    dry = main(["sweep", str(cloud_config()), "--sweep", str(path), "--dry-run"])
    assert dry == 2 and "at least 3 allowed, got 1" in capsys.readouterr().err


def test_max_cost_bounds_the_whole_sweep(fake, cloud_config, tmp_path, capsys, s3, bucket):
    from sagebook import prices

    hourly = prices.price("ml.m5.xlarge", "us-east-1").usd_per_hour
    per_trial = 2 * hourly  # max_runtime 2h, no spot: the dearer of the two instance types
    config = cloud_config(max_runtime="2h", max_cost=round(11.5 * per_trial, 2))
    sweep = write_sweep(tmp_path, "objective: {metric: val_accuracy, goal: maximize}\n"
                        "strategy: bayesian\nmax_trials: 12\nparameters:\n"
                        "  training.learning_rate: {min: 0.001, max: 0.1}\n"
                        "  job.instance_type: [ml.m5.large, ml.m5.xlarge]\n")
    assert prices.price("ml.m5.large", "us-east-1").usd_per_hour < hourly
    assert main(["sweep", str(config), "--sweep", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert "job.max_cost: a sweep of 12 trials, each at most worst case: 1 × ml.m5.xlarge" in err
    assert tuning_jobs() == {} and s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    config = cloud_config(max_runtime="2h", max_cost=round(12.5 * per_trial, 2))
    assert main(["sweep", str(config), "--sweep", str(sweep)]) == 0


def test_the_trials_of_a_cloud_sweep_are_listed_as_records(fake, cloud_config, tmp_path,
                                                          capsys, bucket):
    import boto3

    from sagebook.stores import open_store
    from sagebook.sweeps.record import find_sweep

    config = cloud_config()
    assert main(["sweep", str(config), "--sweep", str(cloud_sweep(tmp_path, "random"))]) == 0
    (name,) = tuning_jobs()
    tuning_jobs()[name].hyper_parameter_tuning_job_status = "InProgress"
    store_uri = f"s3://{bucket}/records"
    request = find_sweep(open_store(store_uri), name).read_text("request.json")
    definition = json.loads(request)["TrainingJobDefinition"]
    sagemaker = boto3.client("sagemaker")
    # The tuner's training jobs, as SageMaker creates them: the tuning job's tags, its static
    # hyperparameters plus the tuned ones.
    tried = [(0.01, 64, "Completed", 0.95), (0.05, 32, "Completed", 0.97),
             (0.002, 128, "Failed", None), (0.02, 16, "InProgress", None)]
    for number, (rate, units, _, _) in enumerate(tried, start=1):
        sagemaker.create_training_job(
            TrainingJobName=f"{name}-{number:03d}-0a1b2c3d",
            HyperParameters={**definition["StaticHyperParameters"],
                             "learning_rate": str(rate), "hidden_units": str(units)},
            AlgorithmSpecification=definition["AlgorithmSpecification"],
            RoleArn=definition["RoleArn"], OutputDataConfig=definition["OutputDataConfig"],
            ResourceConfig=definition["ResourceConfig"],
            StoppingCondition=definition["StoppingCondition"],
            Tags=json.loads(request)["Tags"])
    for number, (_, _, status, accuracy) in enumerate(tried, start=1):
        job = fake.job(f"{name}-{number:03d}-0a1b2c3d")
        job.training_job_status = status
        if accuracy is not None:
            job.final_metric_data_list = [{"MetricName": "val_accuracy", "Value": accuracy}]
            job.billable_time_in_seconds = job.training_time_in_seconds = 600
        if status == "Failed":
            job.failure_reason = "AlgorithmError: out of memory"
    capsys.readouterr()

    assert main(["list", "--store", store_uri, "--sweep", name[-6:]]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 1 + 4
    assert "learning_rate" in listing[0] and "VAL_ACCURACY" in listing[0]
    assert listing[1].startswith(f"{name}-002-") and "0.97" in listing[1]  # best first
    assert listing[2].startswith(f"{name}-001-") and "0.95" in listing[2]
    assert fake.progress == {}  # Search, never a describe per trial

    assert main(["show", name, "--store", store_uri]) == 0
    shown = capsys.readouterr().out
    assert "trials:   2 completed, 1 failed, 1 inprogress" in shown
    assert f"best:     trial 1 (run {name}-002-0a1b2c3d), val_accuracy=0.97" in shown
    from sagebook import prices

    hourly = prices.price("ml.m5.large", "us-east-1").usd_per_hour
    assert f"spend:    ${2 * 600 * hourly / 3600:,.2f} (2 trials priced)" in shown
    run = json.loads(boto3.client("s3").get_object(
        Bucket=bucket, Key=f"records/digits-mlp/{name}-003-0a1b2c3d/manifest.json")["Body"].read())
    assert run["status"] == "Failed" and run["failure_reason"] == "AlgorithmError: out of memory"
    assert run["sweep"] == {"id": name, "trial": 2, "parameters": {
        "training.learning_rate": 0.002, "training.hidden_units": 128},
        "record": f"{store_uri}/_sweeps/digits-mlp/{name}"}
    assert run["instance_type"] == "ml.m5.large"
    trial = json.loads(boto3.client("s3").get_object(
        Bucket=bucket, Key=f"records/digits-mlp/{name}-002-0a1b2c3d/manifest.json")["Body"].read())
    # a trial's record keeps what a single run's keeps of its job
    assert trial["billable_seconds"] == trial["training_seconds"] == 600
    assert trial["job_arn"].endswith(f":training-job/{name}-002-0a1b2c3d")
    assert trial["secondary_status"] == "Starting"  # as moto's job says it

    fake.job(f"{name}-004-0a1b2c3d").training_job_status = "Completed"
    fake.job(f"{name}-004-0a1b2c3d").final_metric_data_list = [
        {"MetricName": "val_accuracy", "Value": 0.99}]
    tuning_jobs()[name].hyper_parameter_tuning_job_status = "Completed"
    assert main(["show", name, "--store", store_uri, "--json"]) == 0
    sweep = json.loads(capsys.readouterr().out)
    assert sweep["status"] == "Completed" and sweep["best"]["run_id"].endswith("-004-0a1b2c3d")
    assert sweep["counts"] == {"Completed": 3, "Failed": 1}
    assert fake.progress == {}

    assert main(["report", "--store", store_uri]) == 0
    page = boto3.client("s3").get_object(
        Bucket=bucket, Key=f"records/_report/sweeps/digits-mlp/{name}.html")["Body"].read().decode()
    assert f"<tr><th>spend</th><td>${sweep['spend_usd']:.2f}</td></tr>" in page
    assert page.count('class="run"') == 3  # the three trials with an objective


def test_a_search_sagemaker_refuses_is_one_line_naming_the_tuning_job(tmp_path):
    from botocore.exceptions import ClientError

    from sagebook.errors import LaunchError
    from sagebook.stores import open_store
    from sagebook.sweeps import tuning
    from sagebook.sweeps.record import SweepRecord

    class Refusing:  # the tuning job is there; the Search of its training jobs is refused
        def describe_hyper_parameter_tuning_job(self, **_):
            return {"HyperParameterTuningJobStatus": "InProgress"}

        def search(self, **_):
            raise ClientError({"Error": {"Code": "AccessDeniedException",
                                         "Message": "not authorized to perform Search"}}, "Search")

    record = SweepRecord.create(open_store(str(tmp_path / "records")), "exp",
                                "sweep-20260101-000000-aaaaaa", {
                                    "backend": "sagemaker", "trials": [],
                                    "objective": {"metric": "loss", "goal": "minimize"},
                                    "tuning_job": {"name": "sweep-20260101-000000-aaaaaa"}})
    with pytest.raises(LaunchError) as info:
        tuning.sync(record, client=Refusing())
    assert str(info.value) == (
        "cannot ask SageMaker about tuning job sweep-20260101-000000-aaaaaa: An error occurred "
        "(AccessDeniedException) when calling the Search operation: not authorized to perform "
        "Search")


# --------------------------------------------------------------------------------------------
# From a notebook


@pytest.mark.slow
def test_papermill_runs_a_sweep_from_the_launch_notebook(tiny, tmp_path):
    sweep = write_sweep(tmp_path, """
        objective: {metric: val_accuracy, goal: maximize}
        parameters:
          training.units: [4, 16]
        max_parallel: 2
    """)
    out = tmp_path / "out.ipynb"
    papermill = Path(sys.executable).parent / "papermill"
    result = subprocess.run(
        [str(papermill), str(REPO / "notebooks" / "launch.ipynb"), str(out),
         "-p", "config", str(tiny), "-p", "sweep", str(sweep),
         "-p", "overrides", '["training.epochs=1"]'],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    experiments = tmp_path / "experiments"
    (sweep_dir,) = (experiments / "_sweeps" / "tiny").iterdir()
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert record["launched_via"] == "notebook" and record["status"] == "Completed"
    trial_runs = [manifest(run) for run in runs(experiments)]
    assert sorted(r["sweep"]["parameters"]["training.units"] for r in trial_runs) == [4, 16]
    assert all(r["launched_via"] == "notebook" and r["status"] == "Completed"
               for r in trial_runs)
    executed = out.read_text()
    assert f"record: {sweep_dir}" in executed and "[sweep] best: trial 1" in executed


@pytest.mark.parametrize("value", [5, "  ", ["a"]])
def test_a_sweep_parameter_of_the_wrong_type_is_refused(value, tiny):
    from sagebook.errors import ConfigError
    from sagebook.notebooks import launch

    with pytest.raises(ConfigError) as info:
        launch(str(tiny), sweep=value)
    assert str(info.value).startswith("parameter sweep: expected the path of a sweep file")


# --------------------------------------------------------------------------------------------
# From the config form (headless: the widgets' values set and buttons clicked as a user would)


@pytest.mark.slow
def test_the_form_checks_saves_and_runs_a_sweep(tiny, tmp_path):
    from sagebook.widgets import ConfigForm

    form = ConfigForm(tiny)
    part = form.sweep
    assert part.box in form.widget.children
    assert part.file.value == "sweep.yaml" and "metric: val_accuracy" in part.text.value
    assert part.problems and part.run_button.disabled  # the starter names no real key yet

    part.text.value = ("objective: {metric: val_accuracy, goal: maximize}\n"
                       "parameters:\n  training.unit: [4, 16]\nmax_parallel: 2\n")
    sweep_file = tmp_path / "sweep.yaml"
    assert f"{sweep_file}:3: sweep.parameters.training.unit: the training config has no key " \
           "'unit'; did you mean 'training.units'?" in part.check_view.value.replace("&#x27;", "'")
    assert part.save_button.disabled and part.run_button.disabled
    part.save_button.click()
    assert not sweep_file.exists()

    part.text.value = part.text.value.replace("training.unit:", "training.units:")
    assert not part.problems and not part.run_button.disabled
    assert "2 trials, 2 at a time" in part.check_view.value
    part.run_button.click()
    assert part.thread is not None
    part.thread.join(timeout=120)
    assert sweep_file.read_text() == part.text.value
    assert part.record_uri and "Completed" in part.status.value, part.status.value
    record = json.loads((Path(part.record_uri) / "sweep.json").read_text())
    assert record["launched_via"] == "form" and record["counts"] == {"Completed": 2}
    assert "sweep: " in part.log.value and not part.run_button.disabled


# --------------------------------------------------------------------------------------------
# Early stopping and completion criteria of local sweeps


def _sweep_with_history(tmp_path: Path, histories: dict[int, list[float]], **settings):
    """A sweep record whose trials' records hold these objective values by step."""
    from sagebook.stores import open_store
    from sagebook.sweeps.record import SweepRecord
    from sagebook.sweeps.spec import Sweep

    store = open_store(str(tmp_path / "store"))
    sweep = Sweep.model_validate({"objective": {"metric": "acc", "goal": "maximize"},
                                  "parameters": {"training.units": [1, 2, 3, 4]}, **settings})
    trials = []
    for index, values in histories.items():
        run_id = f"run-{index}"
        folder = tmp_path / "store" / "exp" / run_id
        folder.mkdir(parents=True)
        (folder / "metrics.jsonl").write_text("".join(
            json.dumps({"name": "acc", "value": v, "step": s}) + "\n"
            for s, v in enumerate(values)))
        trials.append({"trial": index, "parameters": {"training.units": index}, "run_id": run_id,
                       "status": "Completed", "objective": values[-1],
                       "ended": f"2026-01-01T00:00:0{index}"})
    record = SweepRecord.create(store, "exp", "sweep-x", {"objective": sweep.objective.model_dump(),
                                                          "trials": trials})
    return record, sweep


@pytest.mark.parametrize("latest, stopped", [(0.2, True), (0.9, False)])
def test_the_median_rule_stops_a_trial_worse_than_the_others_at_its_step(tmp_path, latest,
                                                                         stopped):
    from sagebook.sweeps import local

    record, sweep = _sweep_with_history(
        tmp_path, {0: [0.5, 0.7, 0.8], 1: [0.4, 0.6, 0.9], 2: [0.3, 0.5, 0.7], 3: [0.1, latest]},
        early_stopping={"min_trials": 3, "min_steps": 2})
    running = record.trials.pop()  # trial 3 is still running, at its step 1
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    trial = local._Running(3, proc, 0, tmp_path / "none.json", None, run_id=running["run_id"])
    try:
        local._median_rule(record, sweep, trial, {3: trial})
        assert trial.early_stopped is stopped  # the median at step 1 is 0.6
        assert (proc.wait(timeout=10) == -signal.SIGTERM) if stopped else proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_stop_when_ends_a_sweep_at_its_target_or_without_improvement(tmp_path):
    from sagebook.sweeps import local

    record, sweep = _sweep_with_history(tmp_path, {0: [0.5], 1: [0.9], 2: [0.7]},
                                        stop_when={"target": 0.95})
    assert not local._done_early(record, sweep)
    record.trials[2]["objective"] = 0.96
    assert local._done_early(record, sweep)
    record, sweep = _sweep_with_history(tmp_path / "b", {0: [0.9], 1: [0.5], 2: [0.7]},
                                        stop_when={"no_improvement": 2})
    assert local._done_early(record, sweep)  # two trials since the best
    record.trials[2]["objective"] = 0.95
    assert not local._done_early(record, sweep)


@pytest.mark.slow
def test_a_sweep_whose_every_trial_failed_exits_1(tiny, tmp_path):
    sweep = write_sweep(tmp_path, """
        objective: {metric: val_accuracy, goal: maximize}
        parameters:
          training.units: [13]
    """)
    result = sagebook("sweep", str(tiny), "--sweep", str(sweep))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[sweep] trial 0 failed" in result.stdout
    (run,) = runs(tmp_path / "experiments")
    assert manifest(run)["status"] == "Failed"
    assert "unlucky number of units" in (run / "logs/algo-1.log").read_text()


@pytest.mark.slow
def test_trials_stop_when_the_sweep_process_is_killed(tiny, tmp_path):
    (tmp_path / "hold").write_text("the tiny script waits while this file exists")
    sweep = write_sweep(tmp_path, """
        objective: {metric: val_accuracy, goal: maximize}
        parameters:
          training.units: [8]
    """)
    proc = subprocess.Popen([sys.executable, "-m", "sagebook.cli", "sweep", str(tiny),
                             "--sweep", str(sweep)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("[trial 0] started"):
            break
    proc.kill()  # no chance to stop anything: a killed kernel, an OOM kill
    proc.wait()
    experiments = tmp_path / "experiments"
    (run,) = runs(experiments)
    wait_for(lambda: manifest(run)["status"] == "Stopped", 30, "the orphaned trial to stop")
    script = tiny.parent / "code" / "train.py"
    wait_for(lambda: not _training_processes(script), 10, "no training process left")


# --------------------------------------------------------------------------------------------
# A damaged sweep record: named and passed over by every reader, rebuilt by --resume

GOOD, DAMAGED = "sweep-20261201-000001-aaaaaa", "sweep-20261201-000002-bbbbbb"
GRID = "objective: {metric: acc, goal: maximize}\nparameters:\n  training.lr: [0.1, 0.01]\n"


def _trial_run(store, sweep_id: str, trial: int, lr: float, job_file: str,
               status: str = "Completed") -> str:
    """A trial's run record as `sagebook.sweeps.trial` writes it: it names its sweep, trial,
    parameters and configs."""
    from sagebook.record import Record

    run_id = f"{sweep_id[6:21]}-t{trial}"
    record = Record.create(store, "exp-a", run_id, {
        "instance_type": "local", "backend": "LocalBackend", "launched_via": "sweep",
        "config": {"job_file": job_file, "overrides": [f"training.lr={lr}"]},
        "sweep": {"id": sweep_id, "trial": trial, "parameters": {"training.lr": lr},
                  "record": store.url(f"_sweeps/exp-a/{sweep_id}")}})
    record.set_status("InProgress")
    if status != "InProgress":
        record.set_status(status, final_metrics={"acc": 0.5 + trial / 10})
    return run_id


def _local_sweep(store, sweep_id: str, job_file: str, statuses=("Completed", "Completed")
                 ) -> list[str]:
    """A finished local grid of two trials, written as `sagebook sweep` writes it."""
    from sagebook.sweeps.record import SweepRecord

    trials, run_ids = [], []
    for trial, (lr, status) in enumerate(zip([0.1, 0.01], statuses, strict=True)):
        run_id = _trial_run(store, sweep_id, trial, lr, job_file, status)
        run_ids.append(run_id)
        trials.append({"trial": trial, "parameters": {"training.lr": lr}, "run_id": run_id,
                       "overrides": [f"training.lr={lr}"], "status": status,
                       "objective": 0.5 + trial / 10})
    record = SweepRecord.create(store, "exp-a", sweep_id, {
        "strategy": "grid", "objective": {"metric": "acc", "goal": "maximize"},
        "parameters": ["training.lr"], "instance_type": "local", "backend": "local",
        "launched_via": "cli", "max_parallel": 1, "trials": trials,
        "config": {"job_file": job_file, "sweep_file": "sweep.yaml", "overrides": []}})
    record.put_text("sweep.yaml", GRID)
    record.set_status("Completed")
    return run_ids


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# What a store writer can leave in a sweep.json, and the words that name what is wrong with it.
DAMAGES = {
    "garbage": (lambda text: b"\xff\xfe garbage \x00", "not valid JSON"),
    "truncated": (lambda text: text[:150].encode(), "not valid JSON"),
    "not an object": (lambda text: b"[]", "not a sweep record: Input should be a valid dict"),
    "trials null": (lambda text: _edit(text, lambda m: m.update(trials=None)),
                    "trials: Input should be a valid list"),
    "a string trial": (lambda text: _edit(text, lambda m: m["trials"].__setitem__(1, "oops")),
                       "trials[1]: Input should be a valid dict"),
    "a trial without overrides": (
        lambda text: _edit(text, lambda m: m["trials"][0].pop("overrides")),
        "trials[0].overrides: missing"),
    "a trial without parameters": (
        lambda text: _edit(text, lambda m: m["trials"][1].pop("parameters")),
        "trials[1].parameters: missing"),
    "status not a string": (lambda text: _edit(text, lambda m: m.update(status=7)),
                            "status: Input should be a valid string"),
    "a trial number as a string": (
        lambda text: _edit(text, lambda m: m["trials"][0].update(trial="0")),
        "trials[0].trial: Input should be a valid integer"),
    "an objective as a string": (
        lambda text: _edit(text, lambda m: m["trials"][1].update(objective="0.9")),
        "trials[1].objective: Input should be a valid number"),
    "a spend as a string": (lambda text: _edit(text, lambda m: m.update(spend_usd="12.5")),
                            "spend_usd: Input should be a valid number"),
    "no objective": (lambda text: _edit(text, lambda m: m.pop("objective")),
                     "objective: missing"),
    "nesting past the JSON parser": (
        lambda text: text.replace('"training.lr": 0.1', f'"training.lr": {_nested(100_000)}'
                                  ).encode(), "not valid JSON"),
    "nesting within the JSON parser": (
        lambda text: text.replace('"training.lr": 0.1', f'"training.lr": {_nested(900)}'
                                  ).encode(), "nested more than 32 levels deep"),
    "a run id that is a path": (
        lambda text: _edit(text, lambda m: m["trials"][0].update(run_id="../../victim")),
        "trials[0].run_id: '../../victim' is not a valid run id"),
    "another sweep's record": (
        lambda text: _edit(text, lambda m: m.update(sweep_id=GOOD)),
        f"names sweep exp-a/{GOOD}, but its folder is exp-a/{DAMAGED}"),
}


def _edit(text: str, change) -> bytes:
    manifest = json.loads(text)
    change(manifest)
    return json.dumps(manifest).encode()


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_sweep_record_is_named_and_passed_over_by_every_reader(
        damage, store, make_config, capsys):
    from conftest import run_cli

    job = str(make_config())
    _local_sweep(store, GOOD, job)
    trial_runs = _local_sweep(store, DAMAGED, job)
    key = f"_sweeps/exp-a/{DAMAGED}/sweep.json"
    where = store.url(key)
    damaged, reason = DAMAGES[damage]
    store.write_bytes(key, damaged(store.read_text(key)))
    named = f"{where}: "

    code, out, err = run_cli(capsys, "report", "--store", store.uri)
    assert code == 0, err
    skipped = [line for line in err.splitlines() if line.startswith(f"skipped {named}")]
    assert len(skipped) == 1 and reason in skipped[0], err
    assert store.exists(f"_report/sweeps/exp-a/{GOOD}.html")  # the other sweep is rendered
    assert not store.exists(f"_report/sweeps/exp-a/{DAMAGED}.html")
    assert DAMAGED not in store.read_text("_report/index.html")

    code, out, err = run_cli(capsys, "show", DAMAGED, "--store", store.uri)
    assert code == 1 and out == ""
    assert err.startswith(f"sagebook: {named}") and reason in err and err.count("\n") == 1, err
    assert "`sagebook fsck` says what to do" in err

    code, out, err = run_cli(capsys, "list", "--store", store.uri, "--sweep", DAMAGED[-6:])
    assert code == 0, err
    assert err.startswith(f"sagebook: skipped {named}") and reason in err.splitlines()[0], err
    rows = out.splitlines()
    assert "training.lr" in rows[0]  # the parameters its trials name
    assert sorted(row.split()[0] for row in rows[1:]) == sorted(trial_runs)

    code, out, err = run_cli(capsys, "fsck", "--store", store.uri)
    assert code == 1, out + err
    assert f"{named}" in out and reason in out
    assert (f"  what to do: `sagebook sweep --resume {DAMAGED}` rebuilds a local sweep's "
            "record") in out
    assert err.startswith("1 damaged files among 4 runs")

    # every trial had finished: the record is rebuilt from them, and nothing runs
    code, out, err = run_cli(capsys, "sweep", "--resume", DAMAGED, "--store", store.uri)
    assert code == 0, err
    assert (f"[sweep] {where} was damaged (") in out and reason in out
    assert "rebuilt from its sweep.yaml and the run records of 2 of its 2 trials" in out
    assert "every trial has finished; nothing to resume" in out
    rebuilt = json.loads(store.read_text(key))
    assert [(t["trial"], t["run_id"], t["status"], t["objective"]) for t in rebuilt["trials"]] \
        == [(0, trial_runs[0], "Completed", 0.5), (1, trial_runs[1], "Completed", 0.6)]
    assert rebuilt["config"] == {"job_file": job, "sweep_file": None, "overrides": []}
    code, out, err = run_cli(capsys, "show", DAMAGED, "--store", store.uri)
    assert code == 0 and "2 completed" in out, err
    code, out, err = run_cli(capsys, "fsck", "--store", store.uri)
    assert code == 0, out


def test_a_sweep_folder_that_is_no_sweep_id_is_named_and_never_read(store, capsys):
    from conftest import run_cli

    job = "/nonexistent/job.yaml"
    _local_sweep(store, GOOD, job)
    key = "_sweeps/exp-a/sweep \x1b[2J;x/sweep.json"
    store.write_bytes(key, store.read_bytes(f"_sweeps/exp-a/{GOOD}/sweep.json"))
    code, out, err = run_cli(capsys, "report", "--store", store.uri)
    assert code == 0, err
    shown = store.url(key).replace("\x1b", "\\x1b")  # the folder's name, as terminal text
    assert f"skipped {shown}: 'sweep \\x1b[2J;x' is not a valid sweep id" in err
    assert "\x1b" not in err
    code, out, err = run_cli(capsys, "fsck", "--store", store.uri)
    assert code == 1 and "is not a valid sweep id\n  what to do: rename or remove" in out


def test_resume_of_a_damaged_sweep_refuses_in_one_line_when_nothing_rebuilds_it(
        store, make_config, capsys):
    from conftest import run_cli

    job = str(make_config())
    key = f"_sweeps/exp-a/{DAMAGED}/sweep.json"
    _local_sweep(store, DAMAGED, job, statuses=("Completed", "InProgress"))
    store.write_bytes(key, b"{")
    code, out, err = run_cli(capsys, "sweep", "--resume", DAMAGED, "--store", store.uri)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"sagebook: cannot resume {DAMAGED}: {store.url(key)} is damaged "
                          "(not valid JSON")
    assert f"trial 1 (run {DAMAGED[6:21]}-t1) is still InProgress: wait for it" in err

    store.write_text(f"_sweeps/exp-a/{DAMAGED}/sweep.yaml", "objective: [\n")
    code, out, err = run_cli(capsys, "sweep", "--resume", DAMAGED, "--store", store.uri)
    assert code == 1 and err.count("\n") == 1, err
    assert (f", and so is {store.url(f'_sweeps/exp-a/{DAMAGED}/sweep.yaml')} (not valid YAML"
            in err and err.rstrip().endswith("start the sweep again"))

    other = "sweep-20261201-000003-cccccc"  # no trial of it ran: a run says so, planted
    store.write_text(f"_sweeps/exp-a/{other}/sweep.yaml", GRID)
    store.write_bytes(f"_sweeps/exp-a/{other}/sweep.json", b"\x00")
    planted = store.read_text(f"exp-a/{DAMAGED[6:21]}-t0/manifest.json").replace(
        DAMAGED, other).replace(DAMAGED[6:21], other[6:21]).replace(
        '"training.lr": 0.1', '"job.pass_aws_credentials": true').replace(
        "training.lr=0.1", "job.pass_aws_credentials=true")  # not a parameter it searches
    store.write_text(f"exp-a/{other[6:21]}-t0/manifest.json", planted)
    code, out, err = run_cli(capsys, "list", "--store", store.uri, "--reindex")
    assert code == 0 and "indexed 1 records" in err, err
    code, out, err = run_cli(capsys, "sweep", "--resume", other, "--store", store.uri)
    assert code == 1 and err.count("\n") == 1, err
    assert "none of its trials has a run record that names the configs it ran" in err
    assert store.read_bytes(f"_sweeps/exp-a/{other}/sweep.json") == b"\x00"  # left as it was


@pytest.mark.slow
def test_resume_rebuilds_a_garbled_sweep_and_runs_the_trials_left(tiny, tmp_path):
    experiments = tmp_path / "experiments"
    sweep = write_sweep(tmp_path, """
        objective: {metric: val_accuracy, goal: maximize}
        parameters:
          training.units: [8, 13]
    """)
    first = sagebook("sweep", str(tiny), "--sweep", str(sweep), "-o", "training.epochs=1")
    assert first.returncode == 0, first.stderr + first.stdout
    (sweep_dir,) = (experiments / "_sweeps" / "tiny").iterdir()
    before = json.loads((sweep_dir / "sweep.json").read_text())
    assert [t["status"] for t in before["trials"]] == ["Completed", "Failed"]
    (sweep_dir / "sweep.json").write_bytes(b"\x89PNG\r\n garbage")

    resumed = sagebook("sweep", "--resume", sweep_dir.name, "--store", str(experiments))
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "Traceback" not in resumed.stderr
    assert (f"[sweep] {sweep_dir / 'sweep.json'} was damaged (not UTF-8 text (byte 0)): rebuilt "
            "from its sweep.yaml and the run records of 2 of its 2 trials") in resumed.stdout
    assert "1 trials to run" in resumed.stdout
    after = json.loads((sweep_dir / "sweep.json").read_text())
    assert after["config"] == {"job_file": str(tiny), "sweep_file": None,
                               "overrides": ["training.epochs=1"]}
    assert [t["status"] for t in after["trials"]] == ["Completed", "Failed"]
    assert after["trials"][0]["run_id"] == before["trials"][0]["run_id"]
    assert after["trials"][1]["earlier_runs"] == [before["trials"][1]["run_id"]]
    assert len(runs(experiments)) == 3  # the failed trial ran once more
    shown = sagebook("show", sweep_dir.name, "--store", str(experiments))
    assert shown.returncode == 0 and "1 completed, 1 failed" in shown.stdout, shown.stderr
