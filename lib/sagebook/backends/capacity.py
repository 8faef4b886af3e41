"""Capacity for a SageMaker job, before and after CreateTrainingJob.

SageMaker's most common failures are about capacity, not code: `ResourceLimitExceeded` at
create (the account's quota for the instance type is used up) and a `CapacityError` failure
minutes later (the region has no instances of that type). This module holds sagebook's answer:

- before anything is uploaded, the quota of each instance type the run may use ("ml.X for
  training job usage", Service Quotas, service code `sagemaker`) is compared with the
  instances of that type that in-progress training jobs hold (one Search): a type over its
  quota is skipped, and a run with no type left is refused with the numbers. A quota that
  cannot be read (no `servicequotas:ListServiceQuotas`, no such quota) is a warning;
- the run tries `instance_type`, then each of `fallback_instance_types`, in one record: each
  attempt is a job of its own (`<job name>-<n>` from the second on), listed under the
  manifest's `capacity.attempts` and in the status timeline;
- with `wait_for_capacity`, a round in which no type had capacity is followed by a wait (from
  `capacity_backoff`, doubling up to MAX_BACKOFF_SECONDS) and another round, until that time
  is spent; the record says it is waiting and when the next try is.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import time
from collections.abc import Callable
from typing import Any

from .. import aws, prices
from .. import request as request_mod
from ..config import LaunchConfig, duration_text
from ..errors import ConfigError, LaunchError
from ..record import Record, now
from . import Job, Outcome, sagemaker_api

SERVICE_CODE = "sagemaker"
MAX_BACKOFF_SECONDS = 900
CAPACITY_FAILURE = "CapacityError"
QUOTA_PAGE = 100  # ListServiceQuotas answers at most 100 quotas a call


class NoCapacity(LaunchError):
    """CreateTrainingJob was refused for lack of capacity (ResourceLimitExceeded)."""


def quota_name(instance_type: str) -> str:
    """The Service Quotas name of an instance type's quota for training jobs."""
    return f"{instance_type} for training job usage"


def instance_types(config: LaunchConfig) -> list[str]:
    """The types a run may use, in the order they are tried."""
    job = config.job
    return list(dict.fromkeys([job.instance_type, *job.fallback_instance_types]))


def with_instance_type(request: dict[str, Any], instance_type: str) -> dict[str, Any]:
    """The request on another instance type (a copy)."""
    changed = copy.deepcopy(request)
    changed["ResourceConfig"]["InstanceType"] = instance_type
    return changed


def check_fallbacks(job: Job, region: str) -> list[Any]:
    """Each fallback type as the launch would send it: held to the service model (a problem
    the base request does not have is the type's) and priced against `max_cost`."""
    config = job.config
    try:
        request_mod.check(config, job.request)
        base: set[str] = set()
    except ConfigError as exc:
        base = {problem.message for problem in exc.problems}
    problems = []
    limit = config.job.max_cost
    for index, itype in enumerate(config.job.fallback_instance_types):
        key = ("fallback_instance_types", index)
        variant = with_instance_type(job.request, itype)
        try:
            request_mod.check(config, variant)
        except ConfigError as exc:
            new = [p.message for p in exc.problems if p.message not in base]
            if new:
                problems.append(config.problem("job", key, f"{itype}: {'; '.join(new)}"))
                continue
        if limit is not None:
            worst = prices.worst_case(variant, region)
            if worst["usd"] is None or worst["usd"] > limit:
                above = "cannot check max_cost" if worst["usd"] is None else \
                    f"above max_cost ${limit:,.2f}"
                problems.append(config.problem("job", key, (
                    f"{itype}: {prices.describe_worst_case(worst)}, {above}")))
    return problems


# --------------------------------------------------------------------------------------------
# Before create: quotas


def training_quotas(quotas: Any, wanted: list[str]) -> dict[str, float]:
    """The account's applied quota of each wanted type, by type: one ListServiceQuotas for
    `sagemaker`, paged until every wanted quota was seen."""
    names = {quota_name(itype): itype for itype in wanted}
    found: dict[str, float] = {}
    options: dict[str, Any] = {"ServiceCode": SERVICE_CODE, "MaxResults": QUOTA_PAGE}
    while True:
        answer = quotas.list_service_quotas(**options)
        for quota in answer.get("Quotas", []):
            itype = names.get(quota.get("QuotaName", ""))
            if itype is not None and quota.get("Value") is not None:
                found[itype] = float(quota["Value"])
        if not answer.get("NextToken") or len(found) == len(names):
            return found
        options["NextToken"] = answer["NextToken"]


def instances_in_use(sagemaker: Any) -> dict[str, int]:
    """Instances held by the region's in-progress training jobs, by type: one Search (never
    a describe per job)."""
    jobs = sagemaker_api.search_training_jobs(sagemaker, [
        {"Name": "TrainingJobStatus", "Operator": "Equals", "Value": "InProgress"}],
        about="which training jobs are in progress")
    used: dict[str, int] = {}
    for found in jobs:
        resources = found.get("ResourceConfig") or {}
        groups = resources.get("InstanceGroups") or [resources]
        for group in groups:
            itype = group.get("InstanceType")
            if itype:
                used[itype] = used.get(itype, 0) + int(group.get("InstanceCount") or 1)
    return used


def measure(config: LaunchConfig, sagemaker: Any) -> dict[str, dict[str, Any]]:
    """Each type's quota (None when Service Quotas has none of that name), the instances of
    it in use, and whether this run would go over. Raises what boto3 or SageMaker raise."""
    cfg = config.job
    quotas = aws.client("service-quotas", cfg.profile, sagemaker.meta.region_name)
    types = instance_types(config)
    limits = training_quotas(quotas, types)
    used = instances_in_use(sagemaker)
    return {itype: {"quota": limits.get(itype), "in_use": used.get(itype, 0),
                    "over": itype in limits and
                    used.get(itype, 0) + cfg.instance_count > limits[itype]}
            for itype in types}


def over_quota(itype: str, found: dict[str, Any], count: int) -> str:
    """A type's quota problem, with the numbers and the quota's name."""
    return (f"{itype}: {found['in_use']} in use by training jobs + {count} for this run > "
            f"{found['quota']:g}, the quota \"{quota_name(itype)}\"")


def unchecked_reason(exc: Exception) -> str:
    """Why the quotas could not be read, in one line."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return ("this identity lacks servicequotas:ListServiceQuotas" if "AccessDenied" in code
            else sagemaker_api.error_text(exc))


def precheck(job: Job, sagemaker: Any) -> dict[str, Any]:
    """Which types the run tries, judged by the quotas before anything is uploaded: the
    manifest's `capacity`. Raises LaunchError, with the numbers, when every type is over its
    quota and the run is not to wait."""
    from botocore.exceptions import BotoCoreError, ClientError  # boto3 only on first use

    cfg = job.config.job
    types = instance_types(job.config)
    entry: dict[str, Any] = {"instance_types": types, "wait_for_capacity": cfg.wait_for_capacity,
                             "backoff": cfg.capacity_backoff}
    try:
        checked = measure(job.config, sagemaker)
    except (ClientError, BotoCoreError, LaunchError) as exc:
        why = unchecked_reason(exc)
        job.echo(f"[sagebook] warning: the instance quotas were not checked ({why}); a type "
                 "over its quota is refused by CreateTrainingJob instead")
        entry["quota_check"] = f"not checked: {why}"
        return {"capacity": entry}
    fits = [itype for itype in types if not checked[itype]["over"]]
    over = [over_quota(itype, found, cfg.instance_count)
            for itype, found in checked.items() if found["over"]]
    entry["quotas"] = {itype: {k: v for k, v in found.items() if k != "over"}
                       for itype, found in checked.items()}
    if over and not fits and not cfg.wait_for_capacity:
        raise LaunchError(
            "the job would exceed the account's SageMaker quota; nothing was uploaded or "
            "created:\n  " + "\n  ".join(over) + "\nask for more (Service Quotas console, "
            "service SageMaker), wait for jobs to end, add fallback_instance_types, or set "
            "wait_for_capacity")
    for line in over:
        job.echo(f"[sagebook] over quota, {'skipped' if fits else 'waited for'}: {line}")
    entry["instance_types"] = fits or types
    return {"capacity": entry}


def describe(config: LaunchConfig) -> str:
    """What a launch does about capacity, in one line (`--dry-run`, `doctor`)."""
    job = config.job
    text = "tries " + ", then ".join(instance_types(config))
    if job.wait_for_capacity:
        return text + (f"; waits up to {duration_text(job.wait_for_capacity)} for capacity, "
                       f"trying again after {duration_text(job.capacity_backoff)}, doubling up "
                       f"to {duration_text(MAX_BACKOFF_SECONDS)}")
    return text + "; fails when none has capacity (wait_for_capacity is not set)"


# --------------------------------------------------------------------------------------------
# Create and after: attempts, fallback types, waiting


def capacity_failure(outcome: Outcome) -> bool:
    """A job that failed because SageMaker found no instances for it."""
    return outcome.status == "Failed" and CAPACITY_FAILURE in (outcome.failure_reason or "")


def run_attempts(job: Job, attempt: Callable[[dict[str, Any]], Outcome]) -> Outcome:
    """Run `attempt` (create and follow one job) on each type in turn until one has capacity;
    with `wait_for_capacity`, wait and go round again until that time is spent."""
    record = job.record
    assert record is not None
    cfg = job.config.job
    entry = dict(record.manifest.get("capacity") or {"instance_types": instance_types(
        job.config)})
    types: list[str] = entry["instance_types"]
    attempts: list[dict[str, Any]] = list(entry.get("attempts") or [])
    deadline = time.time() + cfg.wait_for_capacity if cfg.wait_for_capacity else None
    backoff = float(cfg.capacity_backoff)
    base_name = job.request["TrainingJobName"]
    while True:
        for itype in types:
            number = len(attempts) + 1
            request = with_instance_type(job.request, itype)
            if number > 1:
                suffix = f"-{number}"
                request["TrainingJobName"] = base_name[:63 - len(suffix)] + suffix
            if request != job.request:
                _start_attempt(record, request, itype, number, job.echo)
            try:
                outcome = attempt(request)
            except NoCapacity as exc:
                reason = str(exc)
            else:
                if not capacity_failure(outcome):
                    if attempts:
                        attempts.append(_attempt(number, itype, request, outcome.status))
                        record.update(capacity={**entry, "attempts": attempts, "waiting": None})
                    return outcome
                reason = outcome.failure_reason or CAPACITY_FAILURE
            attempts.append(_attempt(number, itype, request, "NoCapacity", reason))
            record.update(capacity={**entry, "attempts": attempts})
            record.note_secondary_status(f"NoCapacity: {itype}")
            job.echo(f"[sagebook] no capacity for {itype} (attempt {number}): "
                     f"{reason.splitlines()[0]}")
        if deadline is None or time.time() + backoff > deadline:
            record.update(capacity={**entry, "attempts": attempts, "waiting": None})
            waited = f" within wait_for_capacity ({cfg.wait_for_capacity} s)" if deadline else ""
            raise LaunchError(f"no capacity for {', '.join(types)} after {len(attempts)} "
                              f"attempt{'s' if len(attempts) > 1 else ''}{waited}: set or "
                              "raise wait_for_capacity, or add fallback_instance_types")
        next_try = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=backoff)
        waiting = {"since": now(), "next_try": next_try.isoformat(timespec="seconds"),
                   "until": _dt.datetime.fromtimestamp(deadline, _dt.timezone.utc).isoformat(
                       timespec="seconds")}
        record.update(capacity={**entry, "attempts": attempts, "waiting": waiting})
        record.note_secondary_status("WaitingForCapacity")
        try:
            job.echo(f"[sagebook] waiting for capacity: next try at "
                     f"{next_try.astimezone().strftime('%H:%M:%S')} (in {backoff:g} s), until "
                     f"{waiting['until']}")
            time.sleep(backoff)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(f"while waiting for capacity for {', '.join(types)} (next "
                                    f"try was at {waiting['next_try']})") from None
        backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


def _start_attempt(record: Record, request: dict[str, Any], itype: str, number: int,
                   echo: Callable[[str], None]) -> None:
    """The record names the job of this attempt: `attach` and `stop` find it by these."""
    record.put_text("request.json", _json(request))
    record.update(job_name=request["TrainingJobName"], instance_type=itype)
    echo(f"[sagebook] attempt {number}: {itype} as job {request['TrainingJobName']}")


def _attempt(number: int, itype: str, request: dict[str, Any], outcome: str,
             reason: str | None = None) -> dict[str, Any]:
    entry = {"attempt": number, "instance_type": itype, "job_name": request["TrainingJobName"],
             "time": now(), "outcome": outcome}
    if reason:
        entry["reason"] = reason[:500]
    return entry


def _json(data: Any) -> str:
    return json.dumps(data, indent=2) + "\n"
