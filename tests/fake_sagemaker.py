"""moto's SageMaker, made to behave like the service where the tests need it.

moto (in this test process, behind a real HTTP server) creates every training job Completed,
has no StopTrainingJob, writes no logs and accepts duplicate job names. `FakeSageMaker` patches
its in-process backend so that:

- a new job starts InProgress / Starting, and each DescribeTrainingJob of it applies the next
  step of a script (`script(...)`): a status, a secondary status with its message, log lines per
  host (put into moto's CloudWatch Logs as SageMaker names them), a failure reason, billable
  seconds, final metrics. The job stays in its last step's state. Steps are one per describe,
  so a test is deterministic however fast the client polls;
- phases last `after` seconds of a virtual clock (default 60), so durations are exact;
- StopTrainingJob is answered (and counted): the job goes Stopping, then Stopped;
- a second CreateTrainingJob with a taken name fails with ResourceInUse, as on AWS.
"""

from __future__ import annotations

import datetime as _dt
import threading
from typing import Any

import pytest

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
STREAM_EPOCH = 1700000000
FINISHED = ("Completed", "Failed", "Stopped")


class FakeSageMaker:
    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        from moto.sagemaker import responses
        from moto.sagemaker.exceptions import ResourceInUseException
        from moto.sagemaker.models import FakeTrainingJob, SageMakerModelBackend

        self.steps: list[dict[str, Any]] = []
        self.progress: dict[str, int] = {}
        self.clock: dict[str, _dt.datetime] = {}
        self.stop_calls: list[str] = []
        self.created: list[str] = []
        self._lock = threading.RLock()
        fake = self

        original_init = FakeTrainingJob.__init__

        def init(job: Any, *args: Any, **kwargs: Any) -> None:
            original_init(job, *args, **kwargs)
            start = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(hours=1)
            fake.clock[job.training_job_name] = start
            job.training_job_status = "InProgress"
            job.secondary_status = "Starting"
            job.creation_time = job.training_start_time = start
            job.training_end_time = None
            job.secondary_status_transitions = [{
                "Status": "Starting", "StartTime": start,
                "StatusMessage": "Launching requested ML instances"}]
            job.final_metric_data_list = []

        original_create = SageMakerModelBackend.create_training_job

        def create(backend: Any, training_job_name: str, **kwargs: Any) -> Any:
            if training_job_name in backend.training_jobs:
                arn = backend.training_jobs[training_job_name].arn
                raise ResourceInUseException(
                    "Training job names must be unique within an AWS account and region, and "
                    f"a training job with this name already exists ({arn})")
            with fake._lock:
                fake.created.append(training_job_name)
            return original_create(backend, training_job_name, **kwargs)

        original_describe = SageMakerModelBackend.describe_training_job

        def describe(backend: Any, training_job_name: str) -> Any:
            job = backend.training_jobs.get(training_job_name)
            if job is not None:
                fake._advance(backend, job)
            return original_describe(backend, training_job_name)

        def stop_training_job(response: Any) -> Any:
            from moto.core.responses import EmptyResult

            name = response._get_param("TrainingJobName")
            backend = response.sagemaker_backend
            job = backend.training_jobs[name]
            with fake._lock:
                fake.stop_calls.append(name)
                fake._apply(backend, job, {"status": "Stopping", "secondary": "Stopping",
                                           "message": "Stopping the training job"})
                fake.steps = [{"status": "Stopped", "secondary": "Stopped",
                               "message": "The training job was stopped", "after": 30}]
                fake.progress[name] = 0
            return EmptyResult()

        monkeypatch.setattr(FakeTrainingJob, "__init__", init)
        monkeypatch.setattr(SageMakerModelBackend, "create_training_job", create)
        monkeypatch.setattr(SageMakerModelBackend, "describe_training_job", describe)
        monkeypatch.setattr(responses.SageMakerResponse, "stop_training_job", stop_training_job,
                            raising=False)

    def script(self, *steps: dict[str, Any]) -> None:
        """Replace what the next describes of every job do (the first step applies first)."""
        with self._lock:
            self.steps = list(steps)
            self.progress = {name: 0 for name in self.progress}

    def job(self, name: str | None = None) -> Any:
        """moto's record of a job (the only one, when no name is given)."""
        from moto.sagemaker.models import sagemaker_backends

        jobs = {n: j for account in sagemaker_backends.values()
                for region in account.values() for n, j in region.training_jobs.items()}
        if name is None:
            assert len(jobs) == 1, f"expected one training job, found {sorted(jobs)}"
            return next(iter(jobs.values()))
        return jobs[name]

    # ----------------------------------------------------------------------------------------

    def _advance(self, backend: Any, job: Any) -> None:
        with self._lock:
            index = self.progress.get(job.training_job_name, 0)
            if index < len(self.steps):
                self.progress[job.training_job_name] = index + 1
                self._apply(backend, job, self.steps[index])

    def _apply(self, backend: Any, job: Any, step: dict[str, Any]) -> None:
        name = job.training_job_name
        now = self.clock[name] = self.clock[name] + _dt.timedelta(seconds=step.get("after", 60))
        transitions = job.secondary_status_transitions
        if "secondary" in step:
            if transitions and "EndTime" not in transitions[-1]:
                transitions[-1]["EndTime"] = now
            transitions.append({"Status": step["secondary"], "StartTime": now,
                                "StatusMessage": step.get("message", "")})
            job.secondary_status = step["secondary"]
        if "status" in step:
            job.training_job_status = step["status"]
            if step["status"] in FINISHED:
                job.training_end_time = now
                if transitions and "EndTime" not in transitions[-1]:
                    transitions[-1]["EndTime"] = now
        if "failure_reason" in step:
            job.failure_reason = step["failure_reason"]
        if "billable" in step:
            job.billable_time_in_seconds = step["billable"]
            job.training_time_in_seconds = step["billable"]
        if "metrics" in step:
            job.final_metric_data_list = [
                {"MetricName": k, "Value": v, "Timestamp": now} for k, v in step["metrics"].items()]
        for host, lines in (step.get("logs") or {}).items():
            self.put_logs(backend.account_id, backend.region_name, name, host, lines, now)

    @staticmethod
    def put_logs(account: str, region: str, job_name: str, host: str, lines: list[Any],
                 start: _dt.datetime) -> None:
        """Log lines as SageMaker writes them: group /aws/sagemaker/TrainingJobs, stream
        `<job>/<host>-<epoch>`. A line is text (1 ms after the previous one) or a pair
        (seconds after `start`, text)."""
        from moto.logs.models import logs_backends

        logs = logs_backends[account][region]
        if LOG_GROUP not in logs.groups:
            logs.create_log_group(LOG_GROUP, {})
        stream = f"{job_name}/{host}-{STREAM_EPOCH}"
        if stream not in logs.groups[LOG_GROUP].streams:
            logs.create_log_stream(LOG_GROUP, stream)
        base = int(start.timestamp() * 1000)
        events = []
        for index, line in enumerate(lines):
            offset, text = line if isinstance(line, tuple) else (index / 1000, line)
            events.append({"timestamp": base + int(offset * 1000), "message": text})
        events.sort(key=lambda e: e["timestamp"])
        logs.put_log_events(LOG_GROUP, stream, events)
