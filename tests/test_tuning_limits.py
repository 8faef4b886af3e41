"""A sweep is held to what SageMaker's CreateHyperParameterTuningJob accepts: every shape
constraint of the service model and every limit its documentation adds, each problem named at
its line of the sweep file (tests/tuning_corpus.py), the bounds sent as written; a local sweep
to the same limits as the tuning job it rehearses.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from tuning_corpus import CASES, DEFAULT_TRAINING, HEAD, RANDOM

from sagebook.cli import main

from conftest import IMAGE, ROLE, sagebook

TRAIN = "print('val_accuracy=0.5')\n"


def write_job(tmp_path: Path, where: str, training: dict[str, Any] | None = None,
              keys: int | None = None) -> tuple[Path, Path]:
    """A job config (local, or ml.m5.large) and its training config, without a schema: any
    key is a hyperparameter. Returns both paths."""
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "train.py").write_text(TRAIN)
    data = {**DEFAULT_TRAINING, **(training or {})}
    data = {k: v for k, v in data.items() if v is not None}
    for i in range(len(data), keys or 0):
        data[f"h{i}"] = 1
    training_path = tmp_path / "training.yaml"
    training_path.write_text(yaml.safe_dump(data, sort_keys=False, width=10_000))
    job: dict[str, Any] = {
        "experiment": "tuned", "training_config": str(training_path), "source_dir": str(code),
        "max_runtime": "10m", "training_schema": None,
        "metric_definitions": [{"name": "val_accuracy", "regex": "val_accuracy=([0-9.]+)"}],
    }
    if where == "cloud":
        job.update(instance_type="ml.m5.large", image_uri=IMAGE, role_arn=ROLE,
                   experiments_uri="s3://sagebook-test/records")
    else:
        job.update(instance_type="local", experiments_uri=str(tmp_path / "experiments"))
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path, training_path


def line_of(path: Path, marker: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if marker in line)


def at(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def test_the_corpus_is_large_mixed_and_names_are_unique():
    refused = [c for c in CASES if "refused" in c]
    assert len(CASES) >= 30 and len(refused) >= 15 and len(CASES) - len(refused) >= 10
    assert {c["where"] for c in refused} == {"cloud", "local"}
    assert len({c["name"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_a_sweep_is_refused_where_sagemaker_would_refuse_it(case, tmp_path, aws, capsys):
    job, training = write_job(tmp_path, case["where"], case.get("training"), case.get("keys"))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(case["sweep"])
    code = main(["sweep", str(job), "--sweep", str(sweep), "--dry-run"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    refused = case.get("refused")
    if refused is None:
        assert code == 0, err
        assert "sweep and configs are valid" in err
        if "sent" in case:
            request = json.loads(out[out.index("\n{") + 1:])
            for path, value in case["sent"].items():
                assert at(request, path) == value, (path, at(request, path))
        return
    assert code == 2, out + err
    assert err.startswith("sagebook: invalid configuration:\n"), err
    source = training if refused.get("file") == "training" else sweep
    where = f"  {source}:{line_of(source, refused['at'])}: {refused['key']}: "
    matching = [p for p in err.splitlines()[1:] if refused["expect"] in p]
    assert len(matching) == 1, err  # once, however many definitions share the problem
    assert matching[0].startswith(where), (where, err)
    assert not (tmp_path / "experiments").exists()


def test_refused_tuning_requests_fail_through_the_command(tmp_path, aws):
    """`sagebook sweep … --dry-run` as a user runs it: exit 2, one line per problem naming
    file, line and key, for a cloud and for a local job config alike."""
    for where in ("cloud", "local"):
        folder = tmp_path / where
        folder.mkdir()
        job, _ = write_job(folder, where, keys=80)
        sweep = folder / "sweep.yaml"
        sweep.write_text(RANDOM + "parameters:\n" + "".join(
            f"  training.c{i}: [a, b]\n" for i in range(16)) + "".join(
            f"  training.f{i}: {{min: 0.1, max: 0.9}}\n" for i in range(15)))
        result = sagebook("sweep", str(job), "--sweep", str(sweep), "--dry-run")
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"{sweep}:4: sweep.parameters: 31 hyperparameter ranges" in result.stderr
        assert f"{sweep}:4: sweep.parameters: 112 hyperparameters in total: 80 static + " \
               f"31 tuned + _tuning_objective_metric" in result.stderr
        assert result.stdout == "" and "Traceback" not in result.stderr
    job, _ = write_job(tmp_path, "cloud")
    sweep = tmp_path / "hyperband.yaml"
    sweep.write_text(HEAD + "strategy: hyperband\nmax_trials: 4\nparameters:\n"
                            "  training.epochs: [5, 10]\n")
    result = sagebook("sweep", str(job), "--sweep", str(sweep), "--dry-run")
    assert result.returncode == 2
    assert f"{sweep}:2: sweep.strategy: Hyperband without MaxResource" in result.stderr


def test_bounds_reach_the_request_and_the_summary_as_written(tmp_path, aws):
    job, _ = write_job(tmp_path, "cloud")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(RANDOM + "parameters:\n  training.lr: {min: 0.1234561, max: 0.1234564}\n"
                              "  training.alpha: {min: 1e-7, max: 1.0e-3, scale: log}\n")
    result = sagebook("sweep", str(job), "--sweep", str(sweep), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "training.lr: float in [0.1234561, 0.1234564], linear scale" in result.stdout
    assert "training.alpha: float in [1e-7, 1.0e-3], log scale" in result.stdout
    request = json.loads(result.stdout[result.stdout.index("\n{") + 1:])
    lr, alpha = request["HyperParameterTuningJobConfig"]["ParameterRanges"][
        "ContinuousParameterRanges"]
    assert (lr["MinValue"], lr["MaxValue"]) == ("0.1234561", "0.1234564")
    assert (alpha["MinValue"], alpha["MaxValue"]) == ("1e-7", "1.0e-3")


def test_a_sweep_in_the_job_config_keeps_its_bounds_as_written(tmp_path, aws):
    from sagebook.sweeps import control, tuning

    job, _ = write_job(tmp_path, "cloud")
    with job.open("a") as handle:
        handle.write("sweep:\n  objective: {metric: val_accuracy, goal: maximize}\n"
                     "  strategy: random\n  max_trials: 2\n  parameters:\n"
                     "    training.lr: {min: 0.12345678901234567, max: 2.5E-1}\n")
    plan = control.plan(job)
    (entry,) = tuning.parameter_ranges(plan.sweep)["ContinuousParameterRanges"]
    assert (entry["MinValue"], entry["MaxValue"]) == ("0.12345678901234567", "2.5E-1")


def test_local_random_draws_stay_inside_a_narrow_range():
    from sagebook.sweeps import spec

    parameter = spec.Parameter(min=0.1234561, max=0.1234564)
    draws = [spec.draw(parameter, random.Random(seed)) for seed in range(50)]
    assert all(0.1234561 <= d <= 0.1234564 for d in draws)
    assert len(set(draws)) > 10  # and still spread over it
    wide = spec.Parameter(min=0.001, max=0.1, scale="log")
    assert all(len(repr(spec.draw(wide, random.Random(s))).lstrip("0.")) <= 8
               for s in range(20))  # legible where six digits suffice
