"""Every message of a first hour leads somewhere: a missing login, a training config given as
the job config, an override without its prefix, a mistyped argument, `--where` or config path,
a command outside any project, and a sweep listed before its trials have the objective."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from sagebook import aws, project
from sagebook.stores import open_store

from conftest import IMAGE, REPO, ROLE, add_run, run_cli, sagebook


def _without_credentials(tmp_path: Path) -> dict[str, str]:
    """This process's environment with no AWS credentials anywhere boto looks."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k != "SAGEBOOK_EXPERIMENTS_URI"}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "no-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
               AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION="us-east-1")
    return env


def test_cloud_launch_without_credentials_says_so_first_as_doctor_does(make_config, tmp_path):
    config = make_config(instance_type="ml.m5.large", image_uri=IMAGE, role_arn=ROLE,
                         experiments_uri="s3://sagebook-test/records")
    env = _without_credentials(tmp_path)

    launched = sagebook("launch", str(config), env=env)
    assert launched.returncode == 1, launched.stderr
    # first and alone: no ECR warning before it, no failure to write a record after it
    assert launched.stderr == f"sagebook: {aws.NO_CREDENTIALS}\n"

    checked = sagebook("doctor", str(config), env=env)
    assert checked.returncode == 1
    assert aws.NO_CREDENTIALS in checked.stdout  # the same words: one source


def test_launch_with_credentials_goes_past_the_credentials_check(cloud_config):
    """The check asks only the local chain: with credentials (the local endpoint's), the launch
    gets to AWS itself, whose answer (no image in this empty account) is what stops it."""
    config = cloud_config()
    launched = sagebook("launch", str(config))
    assert launched.returncode != 0
    assert "no AWS credentials" not in launched.stderr
    assert "sagebook-training" in launched.stderr, launched.stderr  # the image it looked for


def test_training_config_given_as_job_config_is_named_in_one_line(make_config, tmp_path):
    job = make_config()
    training = tmp_path / "training-job.yaml"

    result = sagebook("launch", str(training), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "sagebook: invalid configuration:",
        f"  {training}:1: this looks like a training config (10 of its 10 keys are not job "
        "config keys, and it has none of experiment, instance_type, training_config); give "
        f"the job config ({job.name}, which names it as training_config)"]


def test_training_config_given_to_sweep_is_named_too(make_config, tmp_path):
    job = make_config()
    result = sagebook("sweep", str(tmp_path / "training-job.yaml"), "--dry-run", cwd=tmp_path)
    assert result.returncode == 2
    assert "no sweep section" not in result.stderr
    assert (f"this looks like a training config (10 of its 10 keys are not job config keys, and "
            f"it has none of experiment, instance_type, training_config); give the job config "
            f"({job.name}, which names it as training_config)") in result.stderr


def test_job_config_with_a_typo_is_not_taken_for_a_training_config(make_config, tmp_path):
    job = make_config()
    data = yaml.safe_load(job.read_text())
    data["instance_typ"] = data.pop("instance_type")
    job.write_text(yaml.safe_dump(data))

    result = sagebook("launch", str(job), "--dry-run")
    assert result.returncode == 2
    assert "looks like a training config" not in result.stderr
    assert "job.instance_typ: unknown key; did you mean 'instance_type'?" in result.stderr


@pytest.mark.parametrize(("override", "meant"), [
    ("epochs=3", "training.epochs=3"),
    ("epoch=3", "training.epochs=3"),
    ("data.train_file=x.csv", "training.data.train_file=x.csv"),
    ("max_runtime=2h", "job.max_runtime=2h"),
])
def test_override_without_prefix_names_the_full_key_path(make_config, override, meant):
    result = sagebook("launch", str(make_config()), "-o", override, "--dry-run")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "sagebook: invalid configuration:",
        f"  override {override!r}: the key must start with job. or training.; did you mean "
        f"{meant}?"]


def test_override_of_no_known_key_gives_the_form(make_config):
    result = sagebook("launch", str(make_config()), "-o", "zzz=1", "--dry-run")
    assert result.returncode == 2
    assert "must start with job. or training. (e.g. job.instance_type=local)" in result.stderr


def test_tag_without_a_value_is_an_argument_error(tmp_path, capsys):
    store = open_store(str(tmp_path / "records"))
    run = add_run(store)

    code, out, err = run_cli(capsys, "tag", run.run_id, "wip", "--store", store.uri)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "sagebook: invalid argument:",
        "  tag: expected KEY=VALUE, got 'wip' (--remove KEY removes a tag)"]


def test_a_config_problem_is_still_a_configuration_error(make_config):
    result = sagebook("launch", str(make_config(max_runtime="soon")), "--dry-run")
    assert result.returncode == 2
    assert result.stderr.startswith("sagebook: invalid configuration:\n")


@pytest.mark.parametrize(("where", "says"), [
    ("val_accuracy=>0.9", "'=>' in 'val_accuracy=>0.9' is no operator: expected NAME OP VALUE "
                          "with OP one of = != > >= < <= ~ (e.g. 'val_accuracy>0.95', "
                          "optimizer=adam, 'note~baseline'); did you mean 'val_accuracy>=0.9'?"),
    ("cost=<5", "did you mean 'cost<=5'?"),
    ("cost<", "nothing to compare with in 'cost<': expected NAME OP VALUE"),
    ("val_accuracy>>0.9", "'>>' in 'val_accuracy>>0.9' is no operator: expected NAME OP VALUE"),
])
def test_malformed_where_is_refused_with_the_grammar(tmp_path, capsys, where, says):
    store = open_store(str(tmp_path / "records"))
    add_run(store, metrics={"val_accuracy": 0.95})

    code, out, err = run_cli(capsys, "list", "--store", store.uri, "--where", where)
    assert code == 2 and out == ""
    assert err.startswith("sagebook: invalid argument:\n  --where: ")
    assert says in err


def test_well_formed_where_still_matches(tmp_path, capsys):
    store = open_store(str(tmp_path / "records"))
    run = add_run(store, metrics={"val_accuracy": 0.95})
    add_run(store, metrics={"val_accuracy": 0.5})

    code, out, err = run_cli(capsys, "list", "--store", store.uri, "--json",
                             "--where", "val_accuracy>=0.9")
    assert code == 0, err
    assert [json.loads(line)["run_id"] for line in out.splitlines()] == [run.run_id]


@pytest.mark.parametrize(("typed", "meant"), [
    ("configs/sagemaker_confg.yaml", "configs/sagemaker_config.yaml"),
    ("config/sagemaker_config.yaml", "configs/sagemaker_config.yaml"),
    ("configs/training.yaml", "configs/training_config.yaml"),
])
def test_mistyped_config_path_names_the_nearest_existing_one(typed, meant):
    result = sagebook("launch", typed, "--dry-run", cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "sagebook: invalid configuration:",
        f"  {REPO / typed}: file not found; did you mean {meant}?"]


def test_mistyped_config_path_of_list_names_the_nearest_one_too():
    result = sagebook("list", "-c", "configs/sagemaker_config.locl.yaml", cwd=REPO)
    assert result.returncode == 2
    assert ("configs/sagemaker_config.locl.yaml: file not found; did you mean "
            "configs/sagemaker_config.local.yaml?") in result.stderr


def test_missing_config_with_nothing_near_says_only_that(tmp_path):
    (tmp_path / "unrelated.yaml").write_text("a: 1\n")
    result = sagebook("launch", "job.yaml", cwd=tmp_path)
    assert result.stderr.splitlines()[1] == f"  {tmp_path / 'job.yaml'}: file not found"


def test_list_outside_any_project_says_how_to_name_a_store(tmp_path):
    if project.root(tmp_path) is not None:
        pytest.skip(f"{project.root(tmp_path)} around the test's folder is a project")
    env = {k: v for k, v in os.environ.items() if k != "SAGEBOOK_EXPERIMENTS_URI"}

    result = sagebook("list", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr == (
        f"sagebook: not in a project (no configs/ with a job config, nor experiments/, in "
        f"{tmp_path.resolve()} or above): give --store URI or -c JOBCONFIG, or run this in "
        "your project's folder\n")
    assert not (tmp_path / "experiments").exists()

    inside = tmp_path / "project"
    (inside / "experiments").mkdir(parents=True)
    listed = sagebook("list", cwd=inside, env=env)
    assert listed.returncode == 0 and listed.stderr.startswith("no runs in ")


def _sweep_with_trials(store, metrics: list[dict[str, float]]) -> tuple[str, list[str]]:
    """A SageMaker tuning job's record and its trials' runs, with these final metrics."""
    from sagebook.record import Record
    from sagebook.sweeps.record import SweepRecord

    sweep_id = "tune-20261207-135800-abcdef"
    run_ids = []
    for trial, final in enumerate(metrics):
        run_id = f"{sweep_id}-{trial + 1:03d}"
        record = Record.create(store, "exp-a", run_id, {
            "instance_type": "ml.m5.large", "backend": "SageMakerBackend",
            "launched_via": "sweep", "created": f"2026-12-07T14:0{trial}:00+00:00",
            "sweep": {"id": sweep_id, "trial": trial, "parameters": {"learning_rate": 0.1},
                      "record": store.url(f"_sweeps/exp-a/{sweep_id}")}})
        record.set_status("InProgress")
        record.set_status("Completed", final_metrics=final)
        run_ids.append(run_id)
    record = SweepRecord.create(store, "exp-a", sweep_id, {
        "strategy": "random", "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "parameters": ["learning_rate"], "instance_type": "local", "backend": "local",
        "launched_via": "cli", "max_parallel": 2, "trials": [
            {"trial": trial, "parameters": {"learning_rate": 0.1}, "run_id": run_id,
             "overrides": [], "status": "Completed"} for trial, run_id in enumerate(run_ids)],
        "config": {"job_file": "job.yaml", "sweep_file": "sweep.yaml", "overrides": []}})
    record.set_status("Completed")
    return sweep_id, run_ids


def test_list_sweep_without_the_objective_yet_lists_newest_first(tmp_path, capsys):
    store = open_store(str(tmp_path / "records"))
    sweep_id, run_ids = _sweep_with_trials(store, [{}, {"train_loss": 0.3}])

    code, out, err = run_cli(capsys, "list", "--store", store.uri, "--sweep", sweep_id)
    assert code == 0, err
    assert "--sort" not in err
    assert err == "sagebook: no run listed has 'val_accuracy' yet: newest first\n"
    rows = out.splitlines()[1:]
    assert [row.split()[0] for row in rows] == [run_ids[1], run_ids[0]]


def test_list_sweep_sorts_by_the_objective_once_trials_have_it(tmp_path, capsys):
    store = open_store(str(tmp_path / "records"))
    sweep_id, run_ids = _sweep_with_trials(
        store, [{"val_accuracy": 0.9}, {"val_accuracy": 0.7}, {}])

    code, out, err = run_cli(capsys, "list", "--store", store.uri, "--sweep", sweep_id)
    assert code == 0 and err == ""
    assert [row.split()[0] for row in out.splitlines()[1:]] == [run_ids[0], run_ids[1],
                                                                run_ids[2]]


def test_a_sort_the_user_names_is_still_checked(tmp_path, capsys):
    store = open_store(str(tmp_path / "records"))
    sweep_id, _ = _sweep_with_trials(store, [{}])

    code, _, err = run_cli(capsys, "list", "--store", store.uri, "--sweep", sweep_id,
                           "--sort", "val_accuracy")
    assert code == 2
    assert err.startswith("sagebook: invalid argument:\n  --sort: no column")
