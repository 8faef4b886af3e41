"""Bayesian and Hyperband sweeps on this machine: an Optuna study chooses the trials (TPE),
Hyperband stops trials from their live metrics, and the trials are runs with records, as a
grid's are. The trials run the tiny training script of tests/test_sweeps.py.
"""

from __future__ import annotations

import json
import math
import statistics
import textwrap
from pathlib import Path

import pytest
import test_sweeps
from test_sweeps import write_sweep

from conftest import manifest, runs, sagebook

tiny = test_sweeps.tiny  # the job config of the tiny training script, a fixture

BAYESIAN = """
    objective: {metric: val_accuracy, goal: maximize}
    strategy: bayesian
    max_trials: 5
    seed: %d
    parameters:
      training.lr: {min: 0.0001, max: 1, scale: log}
      training.units: [4, 8, 32]
"""

HYPERBAND = """
    objective: {metric: val_accuracy, goal: maximize}
    strategy: hyperband
    max_trials: 6
    seed: 1
    parameters:
      training.lr: {min: 0.0001, max: 1, scale: log}
      training.units: [4, 8, 32]
"""


def _sweep_dirs(experiments: Path) -> list[Path]:
    return sorted((experiments / "_sweeps" / "tiny").iterdir())


def _record(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "sweep.json").read_text())


def _objectives(run: Path) -> list[float]:
    return [json.loads(line)["value"] for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["name"] == "val_accuracy"]


def test_dry_run_of_a_local_bayesian_sweep_prints_its_search_space_and_limits(tiny, tmp_path):
    sweep = write_sweep(tmp_path, BAYESIAN % 3)
    result = sagebook("sweep", str(tiny), "--sweep", str(sweep), "--dry-run",
                      "-o", "training.epochs=1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "sweep of tiny: bayesian, maximize val_accuracy; trials chosen by Optuna (TPE sampler) "
        "on local",
        "search space:",
        "  training.lr: float in [0.0001, 1], log scale",
        "  training.units: one of 4, 8, 32",
        "limits: max_trials 5, max_parallel 1, seed 3",
        "overrides, in every trial: training.epochs=1",
    ]
    assert not (tmp_path / "experiments").exists()


def test_dry_run_of_a_local_hyperband_sweep_names_the_epochs_it_infers(tiny, tmp_path):
    sweep = write_sweep(tmp_path, HYPERBAND)
    result = sagebook("sweep", str(tiny), "--sweep", str(sweep), "--dry-run",
                      "-o", "training.epochs=9")
    assert result.returncode == 0, result.stderr
    assert "trials chosen by Optuna (TPE sampler, Hyperband pruner) on local" in result.stdout
    assert "limits: max_trials 6, max_parallel 1, seed 1, epochs per trial 1 to 9" \
        in result.stdout


def test_tpe_proposals_move_towards_the_best_objective_it_was_told(tmp_path):
    """The study learns: after its 10 random start-up trials, TPE proposes learning rates near
    the optimum (1e-2). At random over the four decades, a proposal is at a median 1 decade
    from it, and within 0.1 decade one time in 20."""
    from sagebook.stores import open_store
    from sagebook.sweeps.adaptive import AdaptiveSearch
    from sagebook.sweeps.record import SweepRecord
    from sagebook.sweeps.spec import Sweep

    sweep = Sweep.model_validate({
        "objective": {"metric": "acc", "goal": "maximize"}, "strategy": "bayesian",
        "max_trials": 30, "seed": 0,
        "parameters": {"training.lr": {"min": 0.0001, "max": 1, "scale": "log"}}})
    record = SweepRecord.create(open_store(str(tmp_path)), "exp", "sweep-x",
                                {"objective": {"metric": "acc", "goal": "maximize"}})
    search = AdaptiveSearch(sweep, record, {})
    distances = []
    while search.more():
        entry = search.propose()
        distance = abs(math.log10(entry["parameters"]["training.lr"]) + 2)
        entry.update(status="Completed", objective=1 - distance)
        search.tell(entry)
        distances.append(distance)
    assert len(record.trials) == 30 and [t["trial"] for t in record.trials] == list(range(30))
    learnt = distances[10:]
    assert statistics.median(learnt) < 0.7, distances
    assert sum(d < 0.1 for d in learnt) >= 3, distances


@pytest.mark.parametrize("budget", [6, 8])
def test_no_trial_repeats_another_while_the_space_has_untried_points(tmp_path, budget):
    """Six points of two lists: TPE's favourite is proposed once; past six trials, a
    repeat is run rather than none."""
    from sagebook.stores import open_store
    from sagebook.sweeps.adaptive import AdaptiveSearch
    from sagebook.sweeps.record import SweepRecord
    from sagebook.sweeps.spec import Sweep

    sweep = Sweep.model_validate({
        "objective": {"metric": "acc", "goal": "maximize"}, "strategy": "bayesian",
        "max_trials": budget, "seed": 0,
        "parameters": {"training.lr": [0.001, 0.01, 0.1], "training.units": [4, 32]}})
    record = SweepRecord.create(open_store(str(tmp_path)), "exp", "sweep-x",
                                {"objective": {"metric": "acc", "goal": "maximize"}})
    search = AdaptiveSearch(sweep, record, {})
    while search.more():
        entry = search.propose()
        lr, units = entry["parameters"]["training.lr"], entry["parameters"]["training.units"]
        entry.update(status="Completed", objective=units / 32 - abs(math.log10(lr) + 2))
        search.tell(entry)
    points = [tuple(t["parameters"].values()) for t in record.trials]
    assert len(points) == budget
    assert len(set(points[:6])) == 6, points


@pytest.mark.slow
def test_local_bayesian_sweep_runs_max_trials_chosen_by_the_seeded_study(tiny, tmp_path):
    experiments = tmp_path / "experiments"
    chosen = {}
    for name, seed in (("first", 3), ("again", 3), ("other", 4)):
        sweep = write_sweep(tmp_path, BAYESIAN % seed, f"{name}.yaml")
        result = sagebook("sweep", str(tiny), "--sweep", str(sweep), "-o", "training.epochs=1")
        assert result.returncode == 0, result.stderr + result.stdout
        assert "up to 5 trials chosen by Optuna as results come in" in result.stdout
        sweep_dir = next(d for d in _sweep_dirs(experiments)
                         if (d / "sweep.yaml").read_text() == sweep.read_text())
        record = _record(sweep_dir)
        assert record["status"] == "Completed" and record["counts"] == {"Completed": 5}
        assert record["strategy"] == "bayesian"
        assert [t["trial"] for t in record["trials"]] == [0, 1, 2, 3, 4]
        for trial in record["trials"]:
            run = manifest(experiments / "tiny" / trial["run_id"])
            assert run["status"] == "Completed"
            assert run["sweep"]["id"] == sweep_dir.name
            assert run["sweep"]["parameters"] == trial["parameters"]
            assert run["config"]["overrides"] == ["training.epochs=1", *trial["overrides"]]
            assert trial["objective"] == run["final_metrics"]["val_accuracy"]
            assert 0.0001 <= trial["parameters"]["training.lr"] <= 1
            assert trial["parameters"]["training.units"] in (4, 8, 32)
        best = max(record["trials"], key=lambda t: t["objective"])
        assert record["best"]["run_id"] == best["run_id"]
        chosen[name] = [t["parameters"] for t in record["trials"]]
    assert len(runs(experiments)) == 15
    # the same seed and the same results: the study proposes the same trials, in order;
    # another seed, others
    assert chosen["first"] == chosen["again"]
    assert chosen["other"] != chosen["first"]


@pytest.mark.slow
def test_local_hyperband_sweep_stops_the_trials_its_brackets_drop(tiny, tmp_path):
    experiments = tmp_path / "experiments"
    sweep = write_sweep(tmp_path, HYPERBAND)
    # nine epochs (the static epochs Hyperband's max resource is inferred from), 0.3 s each:
    # a trial dropped at epoch 1 or 3 is stopped long before its ninth
    result = sagebook("sweep", str(tiny), "--sweep", str(sweep), "-o", "training.epochs=9",
                      "-o", "training.pause=0.3")
    assert result.returncode == 0, result.stderr + result.stdout
    (sweep_dir,) = _sweep_dirs(experiments)
    record = _record(sweep_dir)
    assert len(record["trials"]) == 6 and len(runs(experiments)) == 6
    stopped = [t for t in record["trials"] if t.get("early_stopped")]
    finished = [t for t in record["trials"] if not t.get("early_stopped")]
    assert stopped and finished, record["trials"]
    for trial in stopped:
        run = experiments / "tiny" / trial["run_id"]
        assert trial["status"] == "Stopped" and manifest(run)["status"] == "Stopped"
        assert 1 <= len(_objectives(run)) < 9
        assert f"[sweep] trial {trial['trial']} stopped" in result.stdout
    for trial in finished:
        run = experiments / "tiny" / trial["run_id"]
        assert trial["status"] == "Completed" and len(_objectives(run)) == 9
    assert record["best"]["trial"] in [t["trial"] for t in finished]
    shown = sagebook("show", sweep_dir.name, "--store", str(experiments))
    assert shown.stdout.count("Stopped (early stop)") == len(stopped), shown.stdout


@pytest.mark.slow
def test_resume_of_a_bayesian_sweep_reruns_its_stopped_trial_then_proposes_the_rest(
        tiny, tmp_path):
    experiments = tmp_path / "experiments"
    sweep = write_sweep(tmp_path, BAYESIAN % 3)
    done = sagebook("sweep", str(tiny), "--sweep", str(sweep), "-o", "training.epochs=1")
    assert done.returncode == 0, done.stderr + done.stdout
    (sweep_dir,) = _sweep_dirs(experiments)
    # as a sweep interrupted in its third trial leaves its record: two trials not proposed yet
    record = _record(sweep_dir)
    first_three = record["trials"][:3]
    stopped_run = first_three[2]["run_id"]
    first_three[2]["status"] = "Stopped"
    record.update(trials=first_three, status="Stopped")
    (sweep_dir / "sweep.json").write_text(json.dumps(record))

    resumed = sagebook("sweep", "--resume", sweep_dir.name, "--store", str(experiments))
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "1 trials to run, then up to 2 new ones" in resumed.stdout
    record = _record(sweep_dir)
    assert record["status"] == "Completed" and record["counts"] == {"Completed": 5}
    assert record["trials"][:2] == first_three[:2]
    assert record["trials"][2]["parameters"] == first_three[2]["parameters"]
    assert record["trials"][2]["earlier_runs"] == [stopped_run]
    assert [t["trial"] for t in record["trials"]] == [0, 1, 2, 3, 4]
    assert len(runs(experiments)) == 5 + 3


def test_resume_of_a_damaged_bayesian_sweep_refuses_in_one_line(tmp_path, capsys):
    """Only its sweep.json says which trials a bayesian sweep chose: nothing rebuilds it."""
    from conftest import run_cli

    sweep_id = "sweep-20261201-000001-aaaaaa"
    folder = tmp_path / "experiments" / "_sweeps" / "tiny" / sweep_id
    folder.mkdir(parents=True)
    (folder / "sweep.yaml").write_text(textwrap.dedent(BAYESIAN % 3))
    (folder / "sweep.json").write_bytes(b"{")
    code, out, err = run_cli(capsys, "sweep", "--resume", sweep_id,
                             "--store", str(tmp_path / "experiments"))
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"sagebook: cannot resume {sweep_id}: ")
    assert "a bayesian sweep chooses its trials as results come in, and only its sweep.json " \
           "says which; restore it from a backup" in err
    assert (folder / "sweep.json").read_bytes() == b"{"
