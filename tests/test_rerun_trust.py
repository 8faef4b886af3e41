"""`sagebook rerun` of a teammate's record says what will run (whose record, which code, which
image, which settings differ from my job config) and refuses the settings that would hand my
credentials or data to their code: `pass_aws_credentials`, an AWS profile of mine, buckets or
folders my config does not name to write to, local folders to read. `--trust-record`, or `-o`
of the key, is my say-so. Over a local folder and over S3 on the local endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sagebook.launch import launch
from sagebook.record import Record
from sagebook.rerun import differing_settings

from conftest import listed, run_cli

pytestmark = pytest.mark.slow  # each test first launches the run it reruns


def teammates_run(store: Any, make_config: Any, tmp_path: Path, **planted: Any
                  ) -> tuple[Record, Path]:
    """A run launched here, then made bob's, its job config as launched changed by `planted`;
    and my job config (the same project's)."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("import os\nprint('bob code ran, credentials:', "
                                   "'AWS_ACCESS_KEY_ID' in os.environ)\n")
    mine = make_config(source_dir=str(code), training_schema=None, metric_definitions=[],
                       experiments_uri=store.uri)
    parent = launch(mine, echo=lambda _: None)
    assert parent.outcome.status == "Completed"
    record = parent.record
    name = f"{record.prefix}/sagemaker_config.yaml"
    job = yaml.safe_load(store.read_text(name))
    store.write_text(name, yaml.safe_dump({**job, **planted}, sort_keys=False))
    record.update(user="bob")
    return record, mine


def store_keys(store: Any) -> list[str]:
    return sorted(k for k in store.list() if not k.startswith("_index/"))


def test_a_teammates_record_asking_for_my_credentials_is_refused_until_i_say_so(
        store, make_config, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    record, mine = teammates_run(store, make_config, tmp_path, pass_aws_credentials=True)
    digest = record.manifest["uploads"][0]["digest"]
    before = store_keys(store)

    code, out, err = run_cli(capsys, "rerun", record.run_id, "--store", store.uri, "-c",
                             str(mine))
    assert code == 2, err
    assert err.splitlines()[1:] == [
        f"sagebook: rerun of bob's record {record.experiment}/{record.run_id} refused: these "
        "settings would hand your credentials or data to its code (--trust-record runs it as "
        "recorded; -o KEY=VALUE sets one yourself)",
        "  job.pass_aws_credentials: true would give bob's training code your AWS "
        "credentials"]
    assert out.splitlines() == [
        f"[sagebook] run {record.experiment}/{record.run_id} is bob's record, not yours: a "
        "rerun runs bob's code with your credentials",
        f"[sagebook]   code:  bob's code package {digest}",
        "[sagebook]   image: none (instance_type local: a process on this machine)",
        f"[sagebook]   settings that differ from your {mine}:",
        "[sagebook]     job.pass_aws_credentials: true (yours: false)"]
    assert store_keys(store) == before  # nothing launched, written or uploaded
    assert len(listed(capsys, store)) == 1

    code, out, err = run_cli(capsys, "rerun", record.run_id, "--store", store.uri, "-c",
                             str(mine), "-o", "job.pass_aws_credentials=false")
    assert code == 0, err
    assert "bob code ran, credentials: False" in out

    code, out, err = run_cli(capsys, "rerun", record.run_id, "--store", store.uri, "-c",
                             str(mine), "--trust-record")
    assert code == 0, err
    assert "bob code ran, credentials: True" in out
    assert "is bob's record, not yours" in out
    children = [r for r in listed(capsys, store) if r.get("parent") == record.run_id]
    assert len(children) == 2


def test_a_teammates_record_writing_elsewhere_or_reading_my_folders_is_refused(
        store, make_config, tmp_path, capsys):
    secrets = tmp_path / "my-secrets"
    secrets.mkdir()
    record, mine = teammates_run(
        store, make_config, tmp_path, output_uri="s3://bob-elsewhere/out",
        experiments_uri="s3://bob-elsewhere/records", checkpoint_uri="/srv/bob/checkpoints",
        tensorboard_uri=str(tmp_path / "experiments" / ".." / ".." / "board"),
        profile="production", channels={"train": str(secrets)})
    before = store_keys(store)

    code, out, err = run_cli(capsys, "rerun", record.run_id, "--store", store.uri, "-c",
                             str(mine))
    assert code == 2, err
    writes = "bob's training code would write there with your credentials"
    assert err.splitlines()[2:] == [
        "  job.profile: production would run it with that AWS profile of yours (your "
        "config's: not set)",
        f"  job.experiments_uri: s3://bob-elsewhere/records is not a bucket or folder your "
        f"config names: {writes}",
        f"  job.output_uri: s3://bob-elsewhere/out is not a bucket or folder your config "
        f"names: {writes}",
        f"  job.checkpoint_uri: /srv/bob/checkpoints is not a bucket or folder your config "
        f"names: {writes}",
        f"  job.tensorboard_uri: {tmp_path / 'experiments/../../board'} is not a bucket or "
        f"folder your config names: {writes}",
        f"  job.channels.train: {secrets} is not a folder your config names: bob's training "
        "code would read it"]
    assert "[sagebook]     job.output_uri: s3://bob-elsewhere/out (yours: not set)" in out
    assert store_keys(store) == before

    overrides = [f"job.experiments_uri={store.uri}", f"job.output_uri={tmp_path / 'out'}",
                 f"job.checkpoint_uri={tmp_path / 'ckpt'}"]
    code, out, err = run_cli(capsys, "rerun", record.run_id, "--store", store.uri, "-c",
                             str(mine), *(arg for o in overrides for arg in ("-o", o)))
    assert code == 2  # what is not overridden is still refused
    assert [line.split(":")[0] for line in err.splitlines()[2:]] == [
        "  job.profile", "  job.tensorboard_uri", "  job.channels.train"]


def test_a_record_whose_job_config_is_not_a_mapping_is_named(store, make_config, tmp_path,
                                                            capsys):
    record, mine = teammates_run(store, make_config, tmp_path)
    store.write_text(f"{record.prefix}/sagemaker_config.yaml", "- a list\n- not settings\n")
    code, out, err = run_cli(capsys, "rerun", record.run_id, "--store", store.uri, "-c",
                             str(mine))
    assert code == 1
    assert err.splitlines()[1:] == [
        f"sagebook: {record.url('sagemaker_config.yaml')}: not a job config (a mapping of "
        "settings)"]


def test_a_long_setting_is_shown_on_one_line_cut_at_120_characters_with_an_ellipsis():
    [line] = differing_settings({"image_uri": "i" * 200}, {"image_uri": "mine\nx"})
    assert line == f"job.image_uri: {'i' * 119}… (yours: mine\\nx)"
