"""Faults between sagebook and AWS, injected by the fault proxy in front of the local endpoint:
transient ones are retried with backoff and the launch succeeds; persistent ones end in a clear
error, and no record claims an upload or a job that did not happen."""

from __future__ import annotations

import json
import textwrap

import pytest

from conftest import manifest, sagebook, wait_for
from faults import SLOW_DOWN, THROTTLING, xml_error

pytestmark = pytest.mark.slow  # full launches through the fault proxy

S3_INTERNAL = xml_error(500, "InternalError", "We encountered an internal error.")
QUICK = textwrap.dedent("""
    import os, pathlib
    pathlib.Path(os.environ["SM_MODEL_DIR"], "model.txt").write_text("ok")
    print("val_accuracy=0.9", flush=True)
""")


@pytest.fixture
def quick_s3_config(make_config, bucket, tmp_path):
    """A local run (quick training code) whose record lives in S3, behind the proxy."""
    code = tmp_path / "quick"
    code.mkdir()
    (code / "train.py").write_text(QUICK)
    return make_config(source_dir=str(code), training_schema=None,
                       experiments_uri=f"s3://{bucket}/records",
                       metric_definitions=[{"name": "val_accuracy",
                                            "regex": "val_accuracy=([0-9.]+)"}])


def records(s3, bucket):
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="records/digits-mlp/")
    return sorted(o["Key"] for o in listed.get("Contents", []))


def the_manifest(s3, bucket):
    [key] = [k for k in records(s3, bucket) if k.endswith("/manifest.json")]
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_s3_errors_slow_downs_and_resets_are_retried(quick_s3_config, proxy, bucket, s3):
    run_prefix = r"^PUT /sagebook-test/records/digits-mlp/[^/]+/"
    proxy.fail(run_prefix + "manifest.json", times=2, answer=S3_INTERNAL)
    proxy.fail(run_prefix + "request.json", times=1, answer=SLOW_DOWN)
    proxy.reset(run_prefix + "config/training_config.yaml", times=2)
    proxy.reset(r"^GET /sagebook-test/records/digits-mlp/[^/]+/config/", times=1)
    result = sagebook("launch", str(quick_s3_config))
    assert result.returncode == 0, result.stderr
    assert [s.status for s in proxy.seen(run_prefix + "manifest.json")][:3] == [500, 500, 200]
    assert [s.status for s in proxy.seen(run_prefix + "request.json")][:2] == [503, 200]
    assert [s.status for s in proxy.seen(run_prefix + "config/training")][:3] == [0, 0, 200]
    m = the_manifest(s3, bucket)
    assert m["status"] == "Completed" and m["final_metrics"] == {"val_accuracy": 0.9}
    assert any(k.endswith("/output/model.tar.gz") for k in records(s3, bucket))


def test_answers_that_come_too_late_are_retried(quick_s3_config, proxy, bucket, s3,
                                                monkeypatch):
    monkeypatch.setenv("SAGEBOOK_AWS_TIMEOUT", "1")
    proxy.delay(r"^PUT /sagebook-test/records/digits-mlp/[^/]+/request.json", seconds=3)
    result = sagebook("launch", str(quick_s3_config))
    assert result.returncode == 0, result.stderr
    # the first timed out and a retry succeeded (the late one is logged when it is answered)
    wait_for(lambda: len(proxy.seen(r"request.json")) == 2, timeout=10, what="the late PUT")
    assert sorted(s.faulted for s in proxy.seen(r"request.json")) == [False, True]
    assert the_manifest(s3, bucket)["status"] == "Completed"


def test_a_store_that_keeps_failing_ends_clearly_with_no_record(quick_s3_config, proxy, bucket,
                                                                s3, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("SAGEBOOK_WORK_DIR", str(tmp_path / "work"))
    proxy.fail(r"^PUT /sagebook-test/records/digits-mlp/[^/]+/manifest.json", times=100,
               answer=S3_INTERNAL)
    result = sagebook("launch", str(quick_s3_config))
    assert result.returncode == 1
    assert "cannot write s3://sagebook-test/records/digits-mlp/" in result.stderr
    assert "InternalError" in result.stderr and "Traceback" not in result.stderr
    assert records(s3, bucket) == []  # no record, so nothing claims the run happened
    # and nothing ran: no run's folder, only the packed code (hashed before the record)
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["_code"]


def test_persistent_throttling_of_create_leaves_an_honest_record(cloud_config, fake, proxy,
                                                                bucket, s3, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    proxy.fail("SageMaker.CreateTrainingJob", times=100, answer=THROTTLING)
    result = sagebook("launch", str(cloud_config()))
    assert result.returncode == 1
    assert "ThrottlingException" in result.stderr and "Traceback" not in result.stderr
    assert len(proxy.seen("SageMaker.CreateTrainingJob")) == 2
    assert fake.created == []
    m = the_manifest(s3, bucket)
    assert m["status"] == "Failed" and "job_arn" not in m
    assert "ThrottlingException" in m["failure_reason"]


def test_a_reset_create_is_retried_once_and_creates_one_job(cloud_config, fake, proxy, bucket,
                                                            s3):
    proxy.reset("SageMaker.CreateTrainingJob", times=1)
    result = sagebook("launch", str(cloud_config()))
    assert result.returncode == 0, result.stderr
    m = the_manifest(s3, bucket)
    assert fake.created == [m["job_name"]] and m["status"] == "InProgress"


def test_local_store_writes_leave_no_temporary_files(make_config, tmp_path):
    """The local store needs no retries: its writes are atomic renames of temporary files."""
    result = sagebook("launch", str(make_config()), "-o", "training.epochs=1")
    assert result.returncode == 0
    [found] = list((tmp_path / "experiments").glob("*/*/manifest.json"))
    assert manifest(found.parent)["status"] == "Completed"
    assert not list((tmp_path / "experiments").rglob(".*.json.*"))  # no temp files left
