"""The config form, driven headlessly: widgets set by `.value`, buttons by `.click()`.

Every widget type, validation with the CLI's messages, saving that keeps comments and loads
back, and a launch on the local backend with a real kernel and papermill.
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
from pathlib import Path

import ipywidgets as widgets
import nbformat
import pytest
import yaml

from sagebook import config
from sagebook.errors import ConfigError
from sagebook.form_fields import (
    ChoiceEditor,
    CollectionEditor,
    ModelEditor,
    UnknownEditor,
)
from sagebook.kinds import offered_types
from sagebook.widgets import ConfigEditor, ConfigForm

from conftest import REPO, manifest, push_image, runs, sagebook

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagebook-training:latest"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The shipped local configs, comments and relative paths as they are, in a scratch copy
    of the project (training code and data linked): returns the job config's path."""
    (tmp_path / "configs").mkdir()
    for name in ("sagemaker_config.local.yaml", "training_config.yaml"):
        shutil.copy(REPO / "configs" / name, tmp_path / "configs" / name)
    (tmp_path / "sagemaker_container").symlink_to(REPO / "sagemaker_container")
    (tmp_path / "data").symlink_to(REPO / "data")
    return tmp_path / "configs" / "sagemaker_config.local.yaml"


def error_of(form: ConfigForm, key: str) -> str:
    editor = form.field(key)
    return editor.error.value if editor.error.layout.display != "none" else ""


def cli_problems(path: Path) -> list[str]:
    """The problem lines `sagebook launch --dry-run` prints for a config."""
    result = sagebook("launch", str(path), "--dry-run")
    assert result.returncode == 2, result.stderr
    return [line.strip() for line in result.stderr.splitlines()[1:] if line.strip()]


# --------------------------------------------------------------------------------------------
# The form is generated from the schemas


def test_every_schema_field_gets_the_widget_of_its_type(project):
    form = ConfigForm(project)
    schema = config.load_training_schema(config.load(project).job)
    for name in config.JobConfig.model_fields:
        assert form.field(f"job.{name}")
    for name in schema.model_fields:
        assert form.field(f"training.{name}")

    kinds = {
        "job.experiment": widgets.Text, "job.instance_count": widgets.Text,
        "job.max_runtime": widgets.Text, "job.spot": widgets.Checkbox,
        "job.instance_type": widgets.Combobox, "training.epochs": widgets.Text,
        "training.learning_rate": widgets.Text, "training.optimizer": widgets.Dropdown,
        "training.data.validation_fraction": widgets.Text,
    }
    for key, kind in kinds.items():
        assert type(form.field(key).widget) is kind, key
    assert form.field("job.max_runtime").widget.value == "30m"  # as written in the file
    offered = list(form.field("job.instance_type").widget.options)
    assert offered == offered_types()
    assert offered[:3] == ["local", "local-docker", "local-gpu"] and "ml.m5.xlarge" in offered
    assert not form.field("job.instance_type").widget.ensure_option  # free text too
    assert form.field("training.optimizer").widget.options == (("adam", "adam"), ("sgd", "sgd"))
    assert isinstance(form.field("training.data"), ModelEditor)
    assert isinstance(form.field("job.tags"), CollectionEditor)
    assert isinstance(form.field("job.subnets"), CollectionEditor)
    metrics = form.field("job.metric_definitions")
    assert [r.editor.fields["name"].widget.value for r in metrics.rows] == [
        "train_loss", "val_loss", "val_accuracy"]
    channel = form.field("job.channels.train")
    assert isinstance(channel, ModelEditor)  # written as a bare URI, shown with all options
    assert isinstance(channel.fields["input_mode"], ChoiceEditor)
    assert channel.fields["input_mode"].widget.value == "File"
    assert form.field("job.training_config").widget.disabled  # Save manages this link


def test_defaults_and_help_come_from_the_schema_and_defaults_are_not_written(project):
    form = ConfigForm(project)
    volume = form.field("job.volume_size_gb")
    assert volume.widget.value == "30"
    assert "EBS volume per host" in volume.help.value
    assert "default: 30" in volume.help.value and "≥ 1" in volume.help.value
    assert "default: 1h" in form.field("job.max_runtime").help.value
    assert "Strength of the L2 penalty" in form.field("training.alpha").help.value
    job, training = form.values()
    assert "volume_size_gb" not in job and "wait" not in job
    assert (job, training) == (yaml.safe_load(project.read_text()),
                               yaml.safe_load((project.parent / "training_config.yaml")
                                              .read_text()))
    assert not form.changed() and form.launch_button.description == "Launch"
    assert not form.problems and not form.save_button.disabled


def test_section_missing_from_the_file_shows_its_defaults_and_is_written_when_set(project):
    training = project.parent / "training_config.yaml"
    training.write_text("epochs: 3\n")
    form = ConfigForm(project)
    fraction = form.field("training.data.validation_fraction")
    assert fraction.widget.value == "0.2" and form.values()[1] == {"epochs": 3}
    fraction.widget.value = "0.1"
    assert form.values()[1] == {"epochs": 3, "data": {"validation_fraction": 0.1}}
    assert form.problems == []


def test_each_widget_type_sets_its_config_value(project):
    form = ConfigForm(project)
    form.field("training.epochs").widget.value = "3"
    form.field("training.learning_rate").widget.value = "0.05"
    form.field("training.optimizer").widget.value = "sgd"
    form.field("training.data.validation_fraction").widget.value = "0.25"
    form.field("job.max_runtime").widget.value = "2h"
    form.field("job.volume_size_gb").widget.value = "50"
    form.field("job.network_isolation").widget.value = True
    form.field("job.instance_type").widget.value = "local"
    form.field("job.region").widget.value = "eu-west-1"
    subnets = form.field("job.subnets")
    subnets.add_button.click()
    subnets.rows[0].editor.widget.value = "subnet-0abc"
    assert "at least 1 item needed, got 0" in error_of(form, "job.security_group_ids")
    groups = form.field("job.security_group_ids")  # SageMaker takes subnets only with them
    groups.add_button.click()
    groups.rows[0].editor.widget.value = "sg-0abc"
    tags = form.field("job.tags")
    tags.add_button.click()
    tags.rows[-1].key.value = "owner"
    tags.rows[-1].editor.widget.value = "me"
    form.field("job.channels.train.input_mode").widget.value = "FastFile"

    assert form.problems == []
    job, training = form.values()
    assert training["epochs"] == 3 and training["learning_rate"] == 0.05
    assert training["optimizer"] == "sgd" and training["data"]["validation_fraction"] == 0.25
    assert job["max_runtime"] == "2h" and job["volume_size_gb"] == 50
    assert job["network_isolation"] is True and job["region"] == "eu-west-1"
    assert job["subnets"] == ["subnet-0abc"] and job["security_group_ids"] == ["sg-0abc"]
    assert job["tags"] == {"team": "ml", "owner": "me"}
    assert job["channels"]["train"] == {"uri": "../data/digits/train.csv",
                                        "input_mode": "FastFile"}
    assert job["channels"]["validation"] == "../data/digits/validation.csv"  # untouched
    loaded = config.validate(job, training, project, project.parent / "training_config.yaml")
    assert loaded.job.max_runtime == 7200 and loaded.job.subnets == ["subnet-0abc"]
    assert form.launch_button.description == "Save and launch"


@pytest.mark.parametrize("text, stored", [("90m", "90m"), ("2h", "2h"), ("5400", 5400)])
def test_durations_are_typed_as_people_write_them(project, text, stored):
    form = ConfigForm(project)
    form.field("job.max_runtime").widget.value = text
    assert form.values()[0]["max_runtime"] == stored and not form.problems


# --------------------------------------------------------------------------------------------
# Validation as the user types


def test_invalid_training_value_shows_the_cli_message_and_blocks_save_and_launch(make_config):
    path = make_config(training={"epochs": 0, "optimizer": "adamw"})
    form = ConfigForm(path)
    assert sorted(form.problems) == sorted(cli_problems(path))
    assert error_of(form, "training.epochs") == (
        "training.epochs: Input should be greater than or equal to 1 (got 0)")
    assert error_of(form, "training.optimizer").startswith("training.optimizer: Input should be")
    assert form.save_button.disabled and form.launch_button.disabled

    form.field("training.epochs").widget.value = "2"
    assert error_of(form, "training.epochs") == ""
    assert form.save_button.disabled  # the optimizer is still wrong
    form.field("training.optimizer").widget.value = "sgd"
    assert form.problems == []
    assert not form.save_button.disabled and not form.launch_button.disabled


def test_invalid_job_value_shows_the_cli_message_under_its_field(make_config, tmp_path):
    form = ConfigForm(make_config())
    form.field("job.max_runtime").widget.value = "soon"
    form.field("job.experiments_uri").widget.value = "gs://bucket/x"
    assert form.save_button.disabled and form.launch_button.disabled
    # the CLI's verdict on the same values, written to a file
    broken = make_config("broken.yaml", max_runtime="soon", experiments_uri="gs://bucket/x")
    expected = [line.split(": ", 1)[1] for line in cli_problems(broken)]
    shown = [error_of(form, "job.max_runtime"), error_of(form, "job.experiments_uri")]
    assert sorted(html_unescape(s) for s in shown) == sorted(expected)

    form.field("job.max_runtime").widget.value = "20m"
    form.field("job.experiments_uri").widget.value = str(tmp_path / "experiments")
    assert form.problems == [] and not form.save_button.disabled


def html_unescape(text: str) -> str:
    import html

    return html.unescape(text)


def test_rule_across_fields_is_shown_under_the_field_it_names(project):
    form = ConfigForm(project)
    form.field("job.instance_type").widget.value = "local-docker"
    assert "job.image_uri: required for instance_type local-docker" in error_of(
        form, "job.image_uri")
    form.field("job.image_uri").widget.value = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/x"
    assert form.problems == []

    form.field("job.spot").widget.value = True
    assert "spot needs checkpoint_uri" in error_of(form, "job.spot")
    form.field("job.spot").widget.value = False
    assert form.problems == []


def test_unknown_key_names_the_nearest_option_and_can_be_removed(make_config):
    form = ConfigForm(make_config(training={"learning_rat": 0.1}))
    typo = form.field("training.learning_rat")
    assert isinstance(typo, UnknownEditor)
    assert "unknown key; did you mean &#x27;learning_rate&#x27;?" in typo.error.value
    assert form.save_button.disabled
    typo.remove.click()
    assert form.problems == [] and "learning_rat" not in form.values()[1]


def test_value_the_widget_cannot_show_is_edited_as_yaml_text(make_config):
    form = ConfigForm(make_config(training={"epochs": "ten"}))
    epochs = form.field("training.epochs")
    assert type(epochs.widget) is widgets.Text and epochs.widget.value == "ten"
    assert error_of(form, "training.epochs").startswith("training.epochs: Input should be")
    epochs.widget.value = "3"
    assert form.problems == [] and form.values()[1]["epochs"] == 3


def test_map_entries_need_distinct_names(project):
    form = ConfigForm(project)
    environment = form.field("job.environment")
    row = environment.add()
    assert "an entry has no name" in row.editor.error.value and form.save_button.disabled
    row.key.value = "LOG_LEVEL"
    assert "&#x27;LOG_LEVEL&#x27; is used twice" in row.editor.error.value
    row.key.value = "SEED"
    row.editor.widget.value = "7"
    assert form.problems == []
    assert form.values()[0]["environment"] == {"LOG_LEVEL": "INFO", "SEED": "7"}
    environment.rows[0].remove.click()
    assert form.values()[0]["environment"] == {"SEED": "7"}


def test_new_list_item_is_validated_like_the_file(project):
    form = ConfigForm(project)
    metrics = form.field("job.metric_definitions")
    row = metrics.add()
    row.editor.fields["name"].widget.value = "lr"
    row.editor.fields["regex"].widget.value = "lr=[0-9.]+"
    assert "regex needs a capture group around the value" in row.editor.error.value
    row.editor.fields["regex"].widget.value = "lr=([0-9.]+)"
    assert form.problems == []
    assert form.values()[0]["metric_definitions"][-1] == {"name": "lr", "regex": "lr=([0-9.]+)"}
    metrics.rows[1].remove.click()
    assert [m["name"] for m in form.values()[0]["metric_definitions"]] == [
        "train_loss", "val_accuracy", "lr"]


def test_missing_channel_path_is_reported_on_the_channel(project):
    form = ConfigForm(project)
    form.field("job.channels.train.uri").widget.value = "../data/digits/nope.csv"
    assert "path not found" in form.field("job.channels.train").error.value
    assert form.launch_button.disabled


def test_fields_that_differ_from_the_file_are_highlighted(project):
    form = ConfigForm(project)
    epochs = form.field("training.epochs")
    assert "sagebook-changed" not in epochs.box._dom_classes
    epochs.widget.value = "4"
    assert "sagebook-changed" in epochs.box._dom_classes
    epochs.widget.value = "10"  # back to the file's value
    assert "sagebook-changed" not in epochs.box._dom_classes
    tags = form.field("job.tags")
    tags.add()
    assert "sagebook-changed" in tags.box._dom_classes
    assert "sagebook-changed" not in form.field("job.environment").box._dom_classes


# --------------------------------------------------------------------------------------------
# Saving


def test_save_writes_the_open_files_keeping_comments_and_the_same_widgets(project):
    job_text = project.read_text()
    training_path = project.parent / "training_config.yaml"
    training_text = training_path.read_text()
    form = ConfigForm(project)
    form.field("training.epochs").widget.value = "2"
    form.field("training.data.validation_fraction").widget.value = "0.3"
    form.field("job.max_runtime").widget.value = "20m"
    form.field("job.environment").rows[0].remove.click()
    tags = form.field("job.tags")
    tags.add_button.click()
    tags.rows[-1].key.value = "owner"
    tags.rows[-1].editor.widget.value = "yes"  # PyYAML would read a bare yes as true
    form.field("job.wait").widget.value = True
    before = form.values()
    shown = form.widget.children
    epochs = form.field("training.epochs").widget

    form.save_button.click()

    assert "Saved" in form.status.value, form.status.value
    assert sorted(p.name for p in project.parent.iterdir()) == [
        "sagemaker_config.local.yaml", "training_config.yaml"]  # no numbered copies
    assert changed_lines(training_text, training_path.read_text()) == (
        ["epochs: 10", "  validation_fraction: 0.2"],
        ["epochs: 2", "  validation_fraction: 0.3"])
    removed, added = changed_lines(job_text, project.read_text())
    assert removed == ["max_runtime: 30m", "environment:", "  LOG_LEVEL: INFO",
                       ""]  # and one of two blank lines
    assert added == ["max_runtime: 20m", '  owner: "yes"', "wait: true"]
    for comment in re.findall(r"^\s*#.*$", job_text, re.MULTILINE):
        assert comment in project.read_text()

    loaded = config.load(project)
    assert loaded.training["epochs"] == 2 and loaded.job.max_runtime == 1200
    assert loaded.job.tags == {"team": "ml", "owner": "yes"} and loaded.job.environment == {}
    # the same widgets show the saved values, with nothing left to save or highlighted
    assert form.widget.children == shown and form.field("training.epochs").widget is epochs
    assert form.values() == before and not form.changed()
    assert not [e for e in form.job.walk() if "sagebook-changed" in e.box._dom_classes]
    assert form.launch_button.description == "Launch"

    form.field("training.epochs").widget.value = "3"  # and the next Save writes on top
    form.save_button.click()
    assert config.load(project).training["epochs"] == 3 and not form.changed()


def test_save_as_asks_for_names_and_writes_a_new_pair(project):
    job_text = project.read_text()
    training_path = project.parent / "training_config.yaml"
    training_text = training_path.read_text()
    form = ConfigForm(project)
    assert form.save_as.layout.display == "none"
    form.save_as_button.click()
    assert form.save_as.layout.display == "flex"
    assert form.save_name.value == "sagemaker_config.local-1.yaml"
    form.save_name.value = "small.yaml"
    form.training_save_name.value = "training-small.yaml"
    form.field("training.epochs").widget.value = "2"

    form.save_copy_button.click()

    saved, saved_training = project.parent / "small.yaml", project.parent / "training-small.yaml"
    assert "Saved" in form.status.value, form.status.value
    assert project.read_text() == job_text and training_path.read_text() == training_text
    assert changed_lines(job_text, saved.read_text()) == (
        ["training_config: training_config.yaml"], ["training_config: training-small.yaml"])
    assert config.load(saved).training["epochs"] == 2
    assert form.job_path == saved and form.training_path == saved_training
    assert not form.changed() and form.save_as.layout.display == "none"


def changed_lines(old: str, new: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.ndiff(old.splitlines(), new.splitlines()))
    return ([d[2:] for d in diff if d.startswith("- ")],
            [d[2:] for d in diff if d.startswith("+ ")])


def test_unchanged_training_config_is_not_copied(project):
    form = ConfigForm(project)
    form.field("job.max_runtime").widget.value = "45m"
    path = form.save(as_copy=True)
    assert path == project.parent / "sagemaker_config.local-1.yaml"
    assert not (project.parent / "training_config-1.yaml").exists()
    assert config.load(path).training_path == project.parent / "training_config.yaml"


def test_save_as_overwrites_only_on_request(project):
    other = project.parent / "other.yaml"
    other.write_text(project.read_text())
    text = other.read_text()
    form = ConfigForm(project)
    form.field("job.max_runtime").widget.value = "45m"
    form.save_name.value = other.name
    assert form.save(as_copy=True) is None
    assert "exists: tick" in form.status.value and other.read_text() == text
    form.overwrite.value = True
    assert form.save(as_copy=True) == other
    assert changed_lines(text, other.read_text()) == (["max_runtime: 30m"],
                                                      ["max_runtime: 45m"])


def test_save_is_refused_while_the_form_has_problems(project):
    form = ConfigForm(project)
    form.field("training.batch_size").widget.value = "0"
    assert form.save() is None and "fix the problems" in form.status.value
    assert sorted(p.name for p in project.parent.iterdir()) == [
        "sagemaker_config.local.yaml", "training_config.yaml"]


def test_revert_restores_the_file_values(project):
    form = ConfigForm(project)
    form.field("training.epochs").widget.value = "0"
    form.revert_button.click()
    assert form.field("training.epochs").widget.value == "10" and form.problems == []


def test_picker_lists_the_job_configs_next_to_the_file(project):
    (project.parent / "other.yaml").write_text(project.read_text())
    editor = ConfigEditor(project)
    assert [name for name, _ in editor.picker.options] == ["other.yaml",
                                                          "sagemaker_config.local.yaml"]
    editor.picker.value = project.parent / "other.yaml"
    assert editor.form.job_path == project.parent / "other.yaml"
    assert editor.widget.children[1] is editor.form.widget
    editor.form.field("job.max_runtime").widget.value = "40m"
    editor.form.save_as_button.click()
    editor.form.save_copy_button.click()  # the picker lists and selects the saved file
    assert editor.picker.value == project.parent / "other-1.yaml"
    assert "other-1.yaml" in [name for name, _ in editor.picker.options]


def test_unreadable_config_shows_the_problem_instead_of_a_form(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("experiment: [unclosed\n")
    form = ConfigForm(path)
    assert form.job is None and form.problems and "not valid YAML" in form.problems[0]


# --------------------------------------------------------------------------------------------
# config.validate: the rules of config.load on data held in memory


def test_validate_reports_job_and_training_problems_together(make_config):
    path = make_config()
    job = yaml.safe_load(path.read_text())
    training = yaml.safe_load(Path(job["training_config"]).read_text())
    assert config.validate(job, training, path).job.experiment == job["experiment"]
    job["max_runtime"] = "soon"
    training["epochs"] = 0
    schema = config.load_training_schema(config.load(path).job)
    with pytest.raises(ConfigError) as info:
        config.validate(job, training, path, job["training_config"], schema=schema)
    keys = [p.key for p in info.value.problems]
    assert keys == ["job.max_runtime", "training.epochs"]
    assert job["max_runtime"] == "soon"  # the caller's data is not touched


# --------------------------------------------------------------------------------------------
# Launching


@pytest.mark.slow
def test_launch_saves_runs_the_launch_notebook_and_ends_with_the_record(make_config, tmp_path):
    form = ConfigForm(make_config())
    form.field("training.epochs").widget.value = "1"
    assert form.launch_button.description == "Save and launch"

    form.launch_button.click()
    assert form.launch_button.disabled and form.save_button.disabled  # while it runs
    form.launch_thread.join(timeout=120)

    assert not form.launch_thread.is_alive()
    (run,) = runs(tmp_path / "experiments")
    record = manifest(run)
    assert form.record.value == f"record: {run}"
    assert record["status"] == "Completed" and record["launched_via"] == "notebook"
    assert record["config"]["job_file"] == str(tmp_path / "job.yaml")  # saved in place
    assert yaml.safe_load((run / "config" / "training_config.yaml").read_text())["epochs"] == 1
    assert "Completed" in form.run_status.value
    assert form.progress.value == form.progress.max and form.progress.bar_style == "success"
    assert "[sagebook] run" in form.log.value  # the notebook's output, followed live
    assert not form.launch_button.disabled and form.launch_button.description == "Launch"

    # in the record as soon as the form shows the end of the run
    assert manifest(run)["notebook"]["status"] == "completed"
    executed = nbformat.read(run / "notebook.ipynb", as_version=4)
    assert any("job.yaml" in "".join(cell.source) for cell in executed.cells)


@pytest.mark.slow
def test_failed_run_is_reported_with_its_record(make_config, tmp_path):
    form = ConfigForm(make_config(training={"target_column": "no_such_column"}))
    form.launch()
    form.launch_thread.join(timeout=120)
    (run,) = runs(tmp_path / "experiments")
    assert manifest(run)["status"] == "Failed"
    assert form.record.value == f"record: {run}"
    assert "Failed" in form.run_status.value and "RunFailed" in form.run_status.value
    assert form.run_status.value.count("DataError") == 1, form.run_status.value  # said once
    assert form.progress.bar_style == "danger"


# --------------------------------------------------------------------------------------------
# The notebook


@pytest.mark.slow
def test_edit_config_notebook_is_thin_and_shows_the_form_in_a_real_kernel(make_config, tmp_path):
    import papermill as pm

    notebook = REPO / "notebooks" / "edit_config.ipynb"
    committed = nbformat.read(notebook, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count")
               for c in committed.cells if c.cell_type == "code")
    assert set(pm.inspect_notebook(str(notebook))) == {"config"}

    out = tmp_path / "edit.ipynb"
    pm.execute_notebook(str(notebook), str(out), parameters={"config": str(make_config())},
                        progress_bar=False)
    outputs = [o for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"
               for o in c.outputs]
    assert not [o for o in outputs if o.output_type in ("error", "stream")], outputs
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
               for o in outputs)


@pytest.mark.slow
def test_sagemaker_launch_ends_with_the_record_and_the_job_name(make_config, bucket):
    import boto3

    push_image(IMAGE)  # a launch runs the image by the digest ECR gives its tag
    path = make_config(instance_type="ml.m5.large", role_arn=ROLE, image_uri=IMAGE,
                       experiments_uri=f"s3://{bucket}/records")
    form = ConfigForm(path)
    form.launch()
    form.launch_thread.join(timeout=120)

    record, job = form.record.value.split("<br>")
    match = re.fullmatch(rf"record: (s3://{bucket}/records/[\w-]+/[\w-]+)", record)
    assert match, form.record.value + form.run_status.value
    name = job.removeprefix("job: ")
    assert boto3.client("sagemaker").describe_training_job(TrainingJobName=name)
    stored = json.loads(boto3.client("s3").get_object(
        Bucket=bucket, Key=match[1].removeprefix(f"s3://{bucket}/") + "/manifest.json",
    )["Body"].read())
    assert stored["job_name"] == name and stored["launched_via"] == "notebook"
    assert form.progress.bar_style == "success"


def test_service_model_limits_show_under_their_field_and_request_is_an_editable_map(project):
    form = ConfigForm(project)
    form.field("job.keep_alive").widget.value = "7h"
    assert "job.keep_alive: at most 21,600 allowed, got 25,200" in error_of(form, "job.keep_alive")
    assert form.save_button.disabled
    form.field("job.keep_alive").widget.value = "6h"
    assert form.problems == []

    request = form.field("job.request")
    assert isinstance(request, CollectionEditor)
    request.add_button.click()
    row = request.rows[-1]
    row.key.value = "InfraCheckConfig"
    row.editor.widget.value = "{EnableInfraCheck: maybe}"
    assert "expected true or false, got str 'maybe'" in " ".join(form.problems)
    row.editor.widget.value = "{EnableInfraCheck: true}"
    assert form.problems == []
    assert form.values()[0]["request"] == {"InfraCheckConfig": {"EnableInfraCheck": True}}


# --------------------------------------------------------------------------------------------
# Typed numbers, every problem at once, the problem list, the smaller items


def test_text_in_a_number_field_is_named_under_it_and_blocks_save(project):
    form = ConfigForm(project)
    for text in ("abc", "1e", "2.5"):  # epochs is an int: 2.5 is no more a count than abc
        form.field("training.epochs").widget.value = text
        assert "training.epochs: Input should be a valid integer" in error_of(
            form, "training.epochs"), text
        assert form.save_button.disabled and form.launch_button.disabled
    form.field("training.learning_rate").widget.value = "1e"
    assert "training.learning_rate: Input should be a valid number" in error_of(
        form, "training.learning_rate")
    form.field("training.learning_rate").widget.value = "1e-3"
    form.field("training.epochs").widget.value = " 4 "
    assert form.problems == [] and not form.save_button.disabled
    assert form.values()[1]["epochs"] == 4 and form.values()[1]["learning_rate"] == 0.001


def test_an_unknown_instance_type_is_named_with_the_missing_keys(project):
    """Config problems (image and role missing for ml.*) no longer hide the request check's:
    the typo is named, with the nearest listed type, in the form and by launch --dry-run."""
    text = project.read_text().replace("instance_type: local", "instance_type: ml.m5.xlarg")
    project.write_text(text)
    form = ConfigForm(project)
    keys = [getattr(p, "key", None) for p in form.problems]
    assert keys == ["job.instance_type", "job.image_uri", "job.role_arn"], form.problems
    assert "nearest: ml.m5.xlarge" in error_of(form, "job.instance_type")
    assert "required for instance_type ml.m5.xlarg" in error_of(form, "job.image_uri")
    printed = cli_problems(project)
    assert any("job.instance_type: 'ml.m5.xlarg' is not one of the" in line
               and "nearest: ml.m5.xlarge" in line for line in printed), printed
    assert any("job.role_arn: required" in line for line in printed), printed

    form.field("job.instance_type").widget.value = "ml.m5.xlarge"  # the typo fixed
    assert [p.key for p in form.problems] == ["job.image_uri", "job.role_arn"]


def test_problem_list_links_each_problem_to_its_field_with_the_forms_value(project):
    form = ConfigForm(project)
    form.field("training.epochs").widget.value = "0"
    summary = form.summary.value
    assert "1 problem" in summary
    link = re.search(r"<a href='#' class='sagebook-problem-link' onclick=\"([^\"]+)\">"
                     r"([^<]+)</a>", summary)
    assert link, summary
    assert "sagebook-key-training-epochs" in link[1]
    assert "sagebook-key-training-epochs" in form.field("training.epochs").box._dom_classes
    # the value the form shows, not the file's line (which still says epochs: 10)
    assert link[2] == "training.epochs: Input should be greater than or equal to 1 (got 0)"
    assert "training_config.yaml:" not in summary


def test_optional_sections_required_fields_say_when(project):
    form = ConfigForm(project)
    assert "required when job.mlflow is set" in form.field("job.mlflow.arn").help.value
    assert "required" in form.field("job.training_config").help.value
    assert "Save writes this file" in form.field("job.training_config").help.value


def test_saving_many_times_keeps_every_field_and_the_values(project):
    form = ConfigForm(project)
    fields = [e.spec.key for e in [*form.job.walk(), *form.training.walk()]]
    widget_ids = [e.box.model_id for e in form.job.walk()]
    for round_ in range(20):
        if round_ % 2:
            form.field("training.epochs").widget.value = str(round_)
        form.save_button.click()
        assert "Saved" in form.status.value, form.status.value
        assert not form.changed()
    assert [e.spec.key for e in [*form.job.walk(), *form.training.walk()]] == fields
    assert [e.box.model_id for e in form.job.walk()] == widget_ids  # no widget was replaced
    assert config.load(project).training["epochs"] == 19
