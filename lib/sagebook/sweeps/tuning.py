"""A sweep on SageMaker: one CreateHyperParameterTuningJob, and its training jobs as records.

The training-job definition comes from the same request builder as every launch
(`request.build`), so a trial runs what `sagebook launch` would have run: same image, role,
channels, outputs, environment. The training config travels as static hyperparameters (the
example's `train.py` reads hyperparameters.json when there is no `config` channel); the
swept keys are the tuned ones. The request is checked against every constraint of the service
model and every limit its documentation adds (apicheck) before anything is uploaded or created;
a local sweep's request is built and checked the same way (`rehearse`), and never sent.

The tuning job's training jobs carry its tags (SageMaker copies them), among them
`sagebook:sweep`: `sync` finds them all with Search, one call per 100 jobs — never one
describe per trial — and writes each as a record of the sweep.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import aws, launch, prices
from .. import request as request_mod
from ..apicheck import ApiProblem, check_request, operation_shapes
from ..backends import Job, Staged, backend_for, sagemaker_api, uploads
from ..errors import ConfigError, Problem, SagebookError, format_problem
from ..kinds import kind_of
from ..record import TERMINAL, Record, user
from ..stores import Store, StoreExistsError
from .record import SweepRecord, new_sweep_id

if TYPE_CHECKING:
    from .planning import SweepPlan
    from .spec import Parameter, Sweep

OPERATION = "CreateHyperParameterTuningJob"
STRATEGIES = {"grid": "Grid", "random": "Random", "bayesian": "Bayesian",
              "hyperband": "Hyperband"}
WARM_START = {"identical_data_and_algorithm": "IdenticalDataAndAlgorithm",
              "transfer_learning": "TransferLearning"}
# Keys of a CreateTrainingJob request that name one job; a tuning job names its own.
PER_JOB = ("TrainingJobName", "HyperParameters", "Tags")
INSTANCE_TYPE = ("ResourceConfig", "InstanceType")
# Where a problem in the request comes from in the sweep block.
SWEEP_KEYS = {
    "MaxNumberOfTrainingJobs": ("max_trials",), "MaxParallelTrainingJobs": ("max_parallel",),
    "MaxRuntimeInSeconds": ("max_runtime",), "RandomSeed": ("seed",),
    "TargetObjectiveMetricValue": ("stop_when", "target"),
    "MaxNumberOfTrainingJobsNotImproving": ("stop_when", "no_improvement"),
    "MinResource": ("hyperband", "min_resource"), "MaxResource": ("hyperband", "max_resource"),
    "WarmStartConfig": ("warm_start",), "HyperParameterTuningJobObjective": ("objective",),
    "Strategy": ("strategy",),
}


def _hyperparameter(key: str) -> str:
    """`training.data.train_file` → `data.train_file`, the name SageMaker knows it by."""
    return key.removeprefix("training.")


# --------------------------------------------------------------------------------------------
# The request


def build(plan: SweepPlan, training_request: dict[str, Any], sweep_id: str, record_uri: str,
          service_model: Any = None) -> dict[str, Any]:
    """The CreateHyperParameterTuningJob request for `plan`, around the CreateTrainingJob
    request the launch path builds for its configs."""
    sweep = plan.sweep
    tuned = {_hyperparameter(k) for k in sweep.parameters if k.startswith("training.")}
    definition: dict[str, Any] = {}
    members = _definition_members(service_model)
    unplaced = []
    for key, value in training_request.items():
        if key in PER_JOB:
            continue
        if key in members:
            definition[key] = copy.deepcopy(value)
        else:
            unplaced.append(key)
    if unplaced:
        raise ConfigError([format_problem(
            f"{OPERATION} request", key,
            "a tuning job's training jobs cannot have this CreateTrainingJob setting")
            for key in unplaced])
    algorithm = definition["AlgorithmSpecification"]
    definition["AlgorithmSpecification"] = {
        k: v for k, v in algorithm.items()
        if k in ("TrainingImage", "TrainingInputMode", "MetricDefinitions", "AlgorithmName")}
    # The training config travels as hyperparameters, the tuned keys among them.
    definition["StaticHyperParameters"] = {
        k: v for k, v in training_request["HyperParameters"].items() if k not in tuned}
    definition["InputDataConfig"] = [
        c for c in definition.get("InputDataConfig", [])
        if c["ChannelName"] != request_mod.CONFIG_CHANNEL]
    if not definition["InputDataConfig"]:
        del definition["InputDataConfig"]
    environment = definition.get("Environment") or {}
    environment.pop("SAGEBOOK_RUN_ID", None)
    environment.update(SAGEBOOK_SWEEP_ID=sweep_id, SAGEBOOK_RECORD_URI=record_uri)
    definition["Environment"] = environment

    objective = {"Type": sweep.objective.goal.capitalize(), "MetricName": sweep.objective.metric}
    ranges = parameter_ranges(sweep)
    config: dict[str, Any] = {
        "Strategy": STRATEGIES[sweep.strategy],
        "ResourceLimits": {"MaxParallelTrainingJobs": sweep.max_parallel},
        "TrainingJobEarlyStoppingType": "Auto" if sweep.early_stopping else "Off",
    }
    if sweep.max_trials is not None:
        config["ResourceLimits"]["MaxNumberOfTrainingJobs"] = sweep.max_trials
    if sweep.max_runtime is not None:
        config["ResourceLimits"]["MaxRuntimeInSeconds"] = sweep.max_runtime
    if sweep.seed is not None:
        config["RandomSeed"] = sweep.seed
    if sweep.hyperband is not None:
        config["StrategyConfig"] = {"HyperbandStrategyConfig": {
            "MinResource": sweep.hyperband.min_resource,
            "MaxResource": sweep.hyperband.max_resource}}
    if sweep.stop_when is not None:
        criteria: dict[str, Any] = {}
        if sweep.stop_when.target is not None:
            criteria["TargetObjectiveMetricValue"] = sweep.stop_when.target
        if sweep.stop_when.no_improvement is not None:
            criteria["BestObjectiveNotImproving"] = {
                "MaxNumberOfTrainingJobsNotImproving": sweep.stop_when.no_improvement}
        config["TuningJobCompletionCriteria"] = criteria
    request: dict[str, Any] = {"HyperParameterTuningJobName": sweep_id,
                               "HyperParameterTuningJobConfig": config}
    instance_types = sweep.parameters.get("job.instance_type")
    if instance_types is None:
        config["HyperParameterTuningJobObjective"] = objective
        config["ParameterRanges"] = ranges
        request["TrainingJobDefinition"] = definition
    else:
        # One definition per instance type; the tuner spreads trials over them.
        request["TrainingJobDefinitions"] = []
        for value in instance_types.values or ():
            variant = copy.deepcopy(definition)
            variant["ResourceConfig"]["InstanceType"] = value
            variant.update(DefinitionName=str(value).replace(".", "-"),
                           TuningObjective=objective, HyperParameterRanges=ranges)
            request["TrainingJobDefinitions"].append(variant)
    if sweep.warm_start is not None:
        request["WarmStartConfig"] = {
            "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": name}
                                               for name in sweep.warm_start.sweeps],
            "WarmStartType": WARM_START[sweep.warm_start.type]}
    tags = {t["Key"]: t["Value"] for t in training_request.get("Tags", [])}
    tags.pop("sagebook:run-id", None)
    tags.update({"sagebook:sweep": sweep_id, "sagebook:record": record_uri[:256]})
    request["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    return request


def parameter_ranges(sweep: Sweep) -> dict[str, list[dict[str, Any]]]:
    """The swept training keys as SageMaker's integer, continuous and categorical ranges."""
    ranges: dict[str, list[dict[str, Any]]] = {}
    for key, parameter in sweep.parameters.items():
        if not key.startswith("training."):
            continue
        kind, entry = _range(_hyperparameter(key), parameter)
        ranges.setdefault(kind, []).append(entry)
    return ranges


def _range(name: str, parameter: Parameter) -> tuple[str, dict[str, Any]]:
    if parameter.values is not None:
        return "CategoricalParameterRanges", {"Name": name, "Values": [
            v if isinstance(v, str) else json.dumps(v) for v in parameter.values]}
    scaling = "Logarithmic" if parameter.scale == "log" else "Linear"
    low, high = parameter.bounds()
    if parameter.kind == "int":
        return "IntegerParameterRanges", {
            "Name": name, "MinValue": low, "MaxValue": high, "ScalingType": scaling}
    return "ContinuousParameterRanges", {
        "Name": name, "MinValue": low, "MaxValue": high, "ScalingType": scaling}


def _definition_members(service_model: Any) -> set[str]:
    """What a tuning job's training-job definition can hold, as the service model says."""
    shapes, _ = operation_shapes(OPERATION, service_model)
    return set(shapes["HyperParameterTrainingJobDefinition"]["members"])


def check(plan: SweepPlan, request: dict[str, Any], service_model: Any = None) -> None:
    """Every constraint of the service model and every limit its documentation adds (apicheck),
    before anything is uploaded; each problem at the line of the sweep, or of the config, that
    it comes from."""
    opted_out = getattr(plan.config.job, request_mod.UNLISTED_OPT_OUT)
    problems = []
    for problem in check_request(OPERATION, request, service_model):
        if opted_out and problem.kind == "enum" and problem.path[-2:] == INSTANCE_TYPE:
            continue
        located = _locate(plan, request, problem)
        if located not in problems:  # one per sweep line, not one per instance type
            problems.append(located)
    if problems:
        raise ConfigError(problems)


def rehearse(plan: SweepPlan) -> dict[str, Any]:
    """The tuning request a local sweep stands for, checked as the cloud one would be: a local
    instance type as the SageMaker type it rehearses, local paths as S3 locations (as
    `request.check` does for a local launch). Hashes, uploads and writes nothing."""
    sweep_id = new_sweep_id()
    record_uri = f"{plan.config.job.experiments_uri}/_sweeps/{plan.config.job.experiment}/" \
                 f"{sweep_id}"
    training = request_mod.as_sent(plan.config, _training_request(
        plan, Staged(), sweep_id, record_uri, None))
    request = build(plan, training, sweep_id, record_uri)
    for definition in request.get("TrainingJobDefinitions", ()):
        kind = kind_of(definition["ResourceConfig"]["InstanceType"])
        if kind is not None and kind.checked_as is not None:
            definition["ResourceConfig"]["InstanceType"] = kind.checked_as
    check(plan, request)
    return request


def _locate(plan: SweepPlan, request: dict[str, Any], problem: ApiProblem) -> Problem:
    """Where the user wrote what `problem` is about: a key of the sweep file, else of the
    configs (through the CreateTrainingJob field the definition's field mirrors)."""
    spec, path, message = plan.spec, problem.path, problem.message
    if problem.kind != "documented":  # the model's limit: name the field it holds
        message += f" ({OPERATION} {_dotted(path)})"
    elif path == ("HyperParameterTuningJobConfig", "Strategy"):
        message += "; in the sweep: hyperband: {min_resource: …, max_resource: …}"
    for depth, part in enumerate(path):
        if part in SWEEP_KEYS:
            key = SWEEP_KEYS[str(part)]
            return format_problem(spec.where(*key), "sweep." + ".".join(key), message)
        if part in ("ParameterRanges", "HyperParameterRanges"):
            if len(path) < depth + 4:  # the ranges together, or all those of one kind
                return format_problem(spec.where("parameters"), "sweep.parameters", message)
            return _at_parameter(plan, _at(request, path[: depth + 3]), path[depth + 3:],
                                 message) or _in_request(path, message)
    swept_types = "job.instance_type" in plan.sweep.parameters
    if path[:1] == ("TrainingJobDefinition",):
        return _in_definition(plan, request, path[:1], path[1:], problem.kind, message)
    if path[:1] == ("TrainingJobDefinitions",):
        if swept_types and (len(path) == 1 or path[2:] == INSTANCE_TYPE):
            sub = ("values", path[1]) if len(path) > 1 else ()
            return format_problem(spec.where("parameters", "job.instance_type", *sub),
                                  "sweep.parameters.job.instance_type", message)
        if len(path) > 1:
            return _in_definition(plan, request, path[:2], path[2:], problem.kind, message)
    if path[:1] == ("Tags",):
        section, key = request_mod.config_key(plan.config, request, path)
        return plan.config.problem(section, key, message)
    return _in_request(path, message)


def _at_parameter(plan: SweepPlan, entry: Any, rest: tuple[str | int, ...], message: str
                  ) -> Problem | None:
    """A problem in one range: at its value's line for a categorical value, else at the key."""
    name = entry.get("Name") if isinstance(entry, dict) else None
    key = f"training.{name}"
    if key not in plan.sweep.parameters:
        return None
    sub: tuple[str | int, ...] = ()
    if rest[:1] == ("Values",) and len(rest) > 1:
        sub = ("values", rest[1])
    elif rest[:1] in (("MinValue",), ("MaxValue",)):
        sub = ("min",) if rest[0] == "MinValue" else ("max",)
    return format_problem(plan.spec.where("parameters", key, *sub), f"sweep.parameters.{key}",
                          message)


def _in_definition(plan: SweepPlan, request: dict[str, Any], at: tuple[str | int, ...],
                   rest: tuple[str | int, ...], kind: str, message: str) -> Problem:
    """A problem in a training-job definition: all its hyperparameters together are the
    sweep's parameters with the training config; any other field is a config key, found as
    for the CreateTrainingJob field the definition's field mirrors."""
    if rest == ("StaticHyperParameters",) and kind == "documented":
        return format_problem(plan.spec.where("parameters"), "sweep.parameters", message)
    definition = dict(_at(request, at))
    definition["HyperParameters"] = definition.pop("StaticHyperParameters", {})
    if rest[:1] == ("StaticHyperParameters",):
        rest = ("HyperParameters", *rest[1:])
    section, key = request_mod.config_key(plan.config, definition, rest)
    return plan.config.problem(section, key, message)


def _in_request(path: tuple[str | int, ...], message: str) -> Problem:
    return format_problem(f"{OPERATION} request", None, message)


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path)


def _at(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


# --------------------------------------------------------------------------------------------
# Starting it


def _training_request(plan: SweepPlan, staged: Any, sweep_id: str, record_uri: str,
                      commit: str | None, image_uri: str | None = None) -> dict[str, Any]:
    identity = request_mod.RunIdentity(
        run_id=sweep_id, job_name=sweep_id, record_uri=record_uri,
        config_uri=f"{record_uri}/config", user=user(), git_commit=commit,
        code_uri=staged.code_uri, channel_uris=staged.channel_uris, image_uri=image_uri)
    return request_mod.build(plan.config, identity)


def check_cost(plan: SweepPlan, training: dict[str, Any], region: str | None) -> None:
    """`max_cost` bounds the whole sweep: its trials' worst case, each trial on its dearest
    instance type, must stay below it (a single trial's is checked as every launch's is)."""
    limit = plan.config.job.max_cost
    if limit is None:
        return
    sweep = plan.sweep
    trials = sweep.max_trials or math.prod(len(p.values or ()) for p in sweep.parameters.values())
    types = sweep.parameters.get("job.instance_type")
    worst = []
    for instance_type in (types.values or ()) if types else [None]:
        request = copy.deepcopy(training)
        if instance_type is not None:
            request["ResourceConfig"]["InstanceType"] = instance_type
        worst.append(prices.worst_case(request, region))
    if any(w["usd"] is None for w in worst):
        unknown = next(w for w in worst if w["usd"] is None)
        raise ConfigError.one("job.max_cost", None, prices.describe_worst_case(unknown)
                              + ": cannot check max_cost")
    dearest = max(worst, key=lambda w: w["usd"])
    total = dearest["usd"] * trials
    if total > limit:
        raise ConfigError.one(
            "job.max_cost", None,
            f"a sweep of {trials} trials, each at most {prices.describe_worst_case(dearest)}, "
            f"may cost ${total:,.2f}, above max_cost ${limit:,.2f}: lower max_trials or "
            "max_runtime, or raise max_cost")


def dry_run_request(plan: SweepPlan) -> dict[str, Any]:
    """The request `start` would send, checked; writes and uploads nothing."""
    job = plan.config.job
    staged = backend_for(job.instance_type).stage(plan.config, lambda line: None)
    record_uri = f"{job.experiments_uri}/_sweeps/{job.experiment}/DRY-RUN"
    request = build(plan, _training_request(plan, staged, "DRY-RUN", record_uri, None),
                    "DRY-RUN", record_uri)
    check(plan, request)
    return request


def start(plan: SweepPlan, store: Store, manifest: dict[str, Any], *,
          echo: Callable[[str], None] = print, wait: bool | None = None) -> SweepRecord:
    """Check, create the sweep's record, upload what the trials read, create the tuning job."""
    job = plan.config.job
    sagemaker = aws.client("sagemaker", job.profile, job.region)
    backend, git, staged = launch.stage(plan.config, echo)
    commit = git.get("commit")
    image_uri = None
    for attempt in range(3):
        sweep_id = new_sweep_id()
        record_uri = store.url(f"_sweeps/{job.experiment}/{sweep_id}")
        training = _training_request(plan, staged, sweep_id, record_uri, commit, image_uri)
        probe = Job(plan.config, training, staged=staged)
        backend.check(probe)
        if attempt == 0:  # as a launch: regions checked, the image run by its digest
            pinned = launch.preflight(backend, probe)[1]
            if pinned:
                image_uri = pinned
                training = _training_request(plan, staged, sweep_id, record_uri, commit,
                                             image_uri)
            check_cost(plan, training, sagemaker.meta.region_name)
        request = build(plan, training, sweep_id, record_uri, sagemaker.meta.service_model)
        check(plan, request, sagemaker.meta.service_model)
        try:
            record = SweepRecord.create(store, job.experiment, sweep_id, {
                **manifest, "tuning_job": {"name": sweep_id, "status": "Creating"},
                "aws": {"region": sagemaker.meta.region_name, "profile": job.profile},
                "trials": []})
            break
        except StoreExistsError:
            continue
    else:
        raise StoreExistsError(f"no free sweep id in {store.url(job.experiment)}")
    record.put_text("sweep.yaml", plan.spec.text)
    record.put_text("request.json", json.dumps(request, indent=2) + "\n")
    echo(f"[sweep] {sweep_id}: record at {record.uri}")
    try:
        if staged.uploads:
            uploads.upload(staged.uploads, job.store_options(), echo)
        answer = sagemaker.create_hyper_parameter_tuning_job(**request)
    except BaseException as exc:
        record.set_status("Failed", failure_reason=f"sagebook: {type(exc).__name__}: {exc}")
        raise
    record.manifest["tuning_job"] = {"name": sweep_id, "status": "InProgress",
                                     "arn": answer["HyperParameterTuningJobArn"]}
    record.set_status("InProgress")
    region = sagemaker.meta.region_name
    echo(f"[sweep] tuning job {sweep_id} created: https://{region}.console.aws.amazon.com/"
         f"sagemaker/home?region={region}#/hyper-tuning-jobs/{sweep_id}")
    if wait if wait is not None else job.wait:
        follow(record, echo=echo)
    else:
        echo(f"[sweep] `sagebook show {sweep_id}` shows its trials as they come")
    echo(f"sweep: {record.uri}")
    return record


def follow(record: SweepRecord, *, echo: Callable[[str], None] = print) -> None:
    """Sync the sweep until its tuning job ends; Ctrl-C detaches (the job runs on)."""
    interval = float(os.environ.get("SAGEBOOK_POLL_SECONDS", "5"))
    seen: dict[str, str] = {}
    try:
        while True:
            sync(record)
            for entry in record.trials:
                if seen.get(entry["run_id"]) != entry["status"]:
                    seen[entry["run_id"]] = entry["status"]
                    echo(f"[sweep] trial {entry['trial']} {entry['status'].lower()} "
                         f"({entry['run_id']})")
            if record.status in TERMINAL:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        echo(f"[sweep] detached; the tuning job runs on (`sagebook show {record.sweep_id}`)")
        raise


# --------------------------------------------------------------------------------------------
# Its training jobs, as records


def sync(record: SweepRecord, client: Any = None) -> int:
    """Bring the sweep and its trials' records up to date with SageMaker: one describe of the
    tuning job and one Search per 100 training jobs. Returns how many trial records changed."""
    location = record.manifest.get("aws") or {}
    sagemaker = client or aws.client("sagemaker", aws.usable_profile(location.get("profile")),
                                     location.get("region"))
    from botocore.exceptions import BotoCoreError, ClientError  # boto3 only on first use

    name = record.manifest["tuning_job"]["name"]
    try:
        tuning = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    except (ClientError, BotoCoreError) as exc:
        raise SagebookError(f"cannot ask SageMaker about tuning job {name}: {exc}") from None
    jobs = sagemaker_api.search_training_jobs(sagemaker, [
        {"Name": "Tags.sagebook:sweep", "Operator": "Equals", "Value": record.sweep_id}],
        about=f"about tuning job {name}")
    before = json.dumps(record.manifest, sort_keys=True, default=str)
    metric = record.manifest["objective"]["metric"]
    parameters = record.manifest.get("parameters") or []
    known = {t["run_id"]: t for t in record.trials}
    changed = 0
    jobs.sort(key=lambda j: (sagemaker_api.epoch_seconds(j.get("CreationTime")),
                             j["TrainingJobName"]))
    for job in jobs:
        run_id = job["TrainingJobName"]
        entry = known.get(run_id)
        if entry is None:
            entry = known[run_id] = {"trial": len(record.trials), "run_id": run_id}
            record.trials.append(entry)
        hyper = job.get("HyperParameters") or {}
        entry["parameters"] = {
            key: (job.get("ResourceConfig") or {}).get("InstanceType") if key == "job.instance_type"
            else sagemaker_api.decode_hyperparameter(hyper.get(_hyperparameter(key)))
            for key in parameters}
        metrics = sagemaker_api.final_metrics(job)
        status = job.get("TrainingJobStatus", "InProgress")
        entry.update(status=status, objective=metrics.get(metric))
        if _write_trial(record, job, entry, metrics):
            changed += 1
    status = tuning.get("HyperParameterTuningJobStatus")
    record.manifest["tuning_job"]["status"] = status
    best = record.best()
    record.manifest["best"] = best and {k: best.get(k) for k in
                                        ("trial", "run_id", "objective", "parameters")}
    record.manifest["counts"] = record.status_counts()
    costs = [t["cost"] for t in record.trials if isinstance(t.get("cost"), int | float)]
    if costs:
        record.manifest["spend_usd"] = round(sum(costs), 4)
    sweep_status = {"Completed": "Completed", "Failed": "Failed", "Stopped": "Stopped"}.get(
        status or "", "InProgress")
    if sweep_status != record.status or json.dumps(
            record.manifest, sort_keys=True, default=str) != before:  # readers write no news
        record.set_status(sweep_status)
    return changed


def _write_trial(record: SweepRecord, job: dict[str, Any], entry: dict[str, Any],
                 metrics: dict[str, float]) -> bool:
    """Create or update the trial's run record; True when it changed."""
    store, experiment, run_id = record.store, record.experiment, entry["run_id"]
    try:
        run = Record.open(store, experiment, run_id)
    except FileNotFoundError:
        tags = {t["Key"]: t["Value"] for t in job.get("Tags") or []
                if not t["Key"].startswith("sagebook:")}
        try:
            run = Record.create(store, experiment, run_id, {
                "job_name": run_id, "job_arn": job.get("TrainingJobArn"),
                "instance_type": (job.get("ResourceConfig") or {}).get("InstanceType"),
                "backend": "SageMakerBackend", "launched_via": "sweep",
                "image_uri": (job.get("AlgorithmSpecification") or {}).get("TrainingImage"),
                "aws": record.manifest.get("aws"), "tags": tags,
                "created": sagemaker_api.iso(job.get("CreationTime"), "milliseconds")
                or record.manifest.get("created"),
                "sweep": {"id": record.sweep_id, "trial": entry["trial"],
                          "parameters": entry["parameters"], "record": record.uri},
                "hyperparameters": job.get("HyperParameters") or {},
            })
        except StoreExistsError:  # another reader created it just now
            run = Record.open(store, experiment, run_id)
    if run.status == entry["status"] and (run.manifest.get("final_metrics") or {}) == metrics:
        if (run.manifest.get("cost") or {}).get("usd") is not None:
            entry["cost"] = run.manifest["cost"]["usd"]
        return False
    fields = sagemaker_api.write_back(run, job)
    if fields.get("cost"):
        entry["cost"] = fields["cost"]["usd"]
    return True
