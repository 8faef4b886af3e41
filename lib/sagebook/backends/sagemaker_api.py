"""SageMaker's answers about training jobs, and what a run's record keeps of them (L3 adapters:
the one place that speaks to a service for the layers above).

The SageMaker backend (one run: `list` refreshing unfinished runs, `attach`, `stop`, a watch)
and a sweep's tuning job (its trials, found by tag) ask the same calls and write the same
record fields, so both go through here: one Search that pages and turns SageMaker's refusals
into a message the CLI shows in one line, one DescribeTrainingJob, and one write-back of a job
as Search or DescribeTrainingJob describes it.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Literal

from .. import aws, prices
from ..errors import LaunchError
from ..record import Record

SEARCH_PAGE = 100  # SageMaker Search returns at most 100 results a call
STATUS_SOURCE = "sagemaker search"


def search_training_jobs(sagemaker: Any, filters: list[dict[str, str]], *, about: str,
                         wanted: set[str] | None = None) -> list[dict[str, Any]]:
    """The training jobs that match every filter, newest first: one Search per 100 jobs (never
    a describe per job). Paging stops once every name in `wanted` has been seen. SageMaker's
    refusals (access, throttling beyond retries, no network) are a LaunchError saying what
    could not be asked: "cannot ask SageMaker `about`"."""
    from botocore.exceptions import BotoCoreError, ClientError  # boto3 only on first use

    request: dict[str, Any] = {
        "Resource": "TrainingJob", "SearchExpression": {"Filters": filters},
        "SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": SEARCH_PAGE,
    }
    jobs: list[dict[str, Any]] = []
    seen: set[str] = set()
    try:
        while True:
            answer = sagemaker.search(**request)
            for result in answer.get("Results", []):
                job = result.get("TrainingJob")
                if job:
                    jobs.append(job)
                    seen.add(job.get("TrainingJobName", ""))
            token = answer.get("NextToken")
            if not token or (wanted is not None and wanted <= seen):
                return jobs
            request["NextToken"] = token
    except (ClientError, BotoCoreError) as exc:
        raise LaunchError(f"cannot ask SageMaker {about}: {exc}") from None


def describe(sagemaker: Any, name: str) -> dict[str, Any] | None:
    """The job's description, or None if SageMaker has no job of that name."""
    from botocore.exceptions import ClientError  # boto3 only on first use

    try:
        return sagemaker.describe_training_job(TrainingJobName=name)
    except ClientError as exc:
        if _not_found(exc):
            return None
        raise


def lookup(sagemaker: Any, name: str) -> dict[str, Any] | None:
    """`describe`, with SageMaker's refusals (access, throttling beyond retries, no network)
    as a LaunchError the CLI shows in one line."""
    from botocore.exceptions import BotoCoreError, ClientError  # boto3 only on first use

    try:
        return describe(sagemaker, name)
    except (ClientError, BotoCoreError) as exc:
        raise LaunchError(f"DescribeTrainingJob {name}: {error_text(exc)}") from None


def error_text(exc: Any) -> str:
    """A botocore error as `Code: Message` when SageMaker answered, else as botocore says it."""
    error = getattr(exc, "response", {}).get("Error", {})
    if error:
        return f"{error.get('Code')}: {error.get('Message')}"
    return str(exc)


def _not_found(exc: Any) -> bool:
    error = exc.response.get("Error", {})
    message = str(error.get("Message", "")).lower()
    return error.get("Code") in ("ResourceNotFound", "ValidationException") and (
        "not found" in message or "does not exist" in message or "could not find" in message)


def final_metrics(job: dict[str, Any]) -> dict[str, float]:
    """The metrics SageMaker reports for the job (its FinalMetricDataList), by name."""
    return {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList") or []
            if "MetricName" in m and "Value" in m}


def write_back(record: Record, job: dict[str, Any], region: str | None = None
               ) -> dict[str, Any]:
    """Write the job's status into its run's record, with what SageMaker says of it: failure
    reason, final metrics, model artifact, ARN, secondary status, billable and training
    seconds, cost, end time. `region` prices the job when its ARN names none. Returns the
    fields written."""
    fields: dict[str, Any] = {}
    if job.get("FailureReason"):
        fields["failure_reason"] = job["FailureReason"]
    metrics = final_metrics(job)
    if metrics:
        fields["final_metrics"] = metrics
    artifact = (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if artifact:
        fields["model_artifact"] = artifact
    if job.get("TrainingJobArn"):
        fields["job_arn"] = job["TrainingJobArn"]
    if job.get("SecondaryStatus"):
        fields["secondary_status"] = job["SecondaryStatus"]
    for key, field in (("billable_seconds", "BillableTimeInSeconds"),
                       ("training_seconds", "TrainingTimeInSeconds")):
        if job.get(field) is not None:
            fields[key] = job[field]
    cost = prices.job_cost(job, aws.region_from_arn(job.get("TrainingJobArn")) or region)
    if cost:
        fields["cost"] = cost
    ended = iso(job.get("TrainingEndTime"), "milliseconds")
    if ended:
        fields["ended"] = ended
    fields["status_source"] = STATUS_SOURCE
    record.set_status(job.get("TrainingJobStatus", "InProgress"), **fields)
    return fields


def decode_hyperparameter(value: Any) -> Any:
    """A hyperparameter as it was written: SageMaker hands every value back as text."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def epoch_seconds(value: Any) -> float:
    """A time boto3 answered (a datetime) as seconds since the epoch; 0 when there is none."""
    return value.timestamp() if isinstance(value, _dt.datetime) else 0.0


def iso(value: Any, precision: Literal["seconds", "milliseconds"]) -> str | None:
    """A time boto3 answered as ISO 8601 in UTC, to `precision`; None when there is none."""
    if isinstance(value, _dt.datetime):
        return value.astimezone(_dt.timezone.utc).isoformat(timespec=precision)
    return None
