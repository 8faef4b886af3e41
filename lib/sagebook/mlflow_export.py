"""`sagebook export mlflow`: every record as an MLflow run, for teams that browse runs in the
MLflow UI (a tracking server, or SageMaker's managed MLflow through the `sagemaker-mlflow`
plugin, whose tracking URI is the tracking server's ARN).

Each record becomes one MLflow run: the training config flattened and the job's main settings
as parameters; every metric point of `metrics.jsonl` with its step and time; tags for who,
the git commit, the status, the cost, the record's URI and the run's own tags and note; the
configs, the request, the notebook, the git diff and the failure as artifacts; the run's
status and end.

Export is idempotent: a run is found again by its `sagebook.run_id` tag (one search per
experiment), a run whose record has not changed since (`sagebook.version`) is skipped, and
a changed one gets only what it lacks — parameters are immutable in MLflow, metric points are
compared by step and time, artifacts by name. An export that fails halfway is finished by the
next: the version is written last, or, for a new run that ends terminated, the status is (a
run MLflow still says RUNNING is not done).

mlflow is heavy (and the SageMaker SDK brings it): it is the `mlflow` extra, imported only here.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import index, runs
from .errors import SagebookError
from .record import Record
from .stores import Store

RUN_TAG = "sagebook.run_id"
VERSION_TAG = "sagebook.version"
ARTIFACTS = ("sagemaker_config.yaml", "config/training_config.yaml", "request.json",
             "notebook.ipynb", "git.diff", "failure.txt")
JOB_KEYS = ("instance_type", "instance_count", "volume_size_gb", "max_runtime", "spot",
            "max_wait", "keep_alive", "image_uri", "entry_point")
STATUS = {"Completed": "FINISHED", "Failed": "FAILED", "Lost": "FAILED", "Stopped": "KILLED",
          "Interrupted": "KILLED"}
MAX_PARAM_VALUE, MAX_TAG_VALUE, BATCH = 6000, 5000, 900
EXPORT_THREADS = 4  # a sqlite-backed server refuses more at once
QUIET_LINKS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


@dataclass
class ExportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    tracking_uri: str = ""
    failures: list[str] = field(default_factory=list)


def export(store: Store, refs: Iterable[str] = (), *, tracking_uri: str | None = None,
           experiment: str | None = None, echo: Callable[[str], None] = lambda _: None
           ) -> ExportResult:
    """Export the runs named by `refs` (all runs of the store when none) to MLflow, into the
    MLflow experiment `experiment` (default: each run's sagebook experiment)."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise SagebookError("exporting to MLflow needs mlflow: pip install 'sagebook[mlflow]' "
                            "(it comes with the SageMaker SDK too)") from None
    import logging

    # mlflow warns about header plugins that do not apply: the export's own lines say what
    # happened
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    with _quiet_run_links():
        return _export(MlflowClient(tracking_uri=tracking_uri), store, list(refs), experiment,
                       echo)


@contextmanager
def _quiet_run_links() -> Iterator[None]:
    """Without mlflow's "View run … at …" line on stdout for every run it ends: it fetches the
    whole run from the server first (a third of an export's time), and the export's own lines
    say what happened."""
    previous = os.environ.get(QUIET_LINKS)
    os.environ[QUIET_LINKS] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(QUIET_LINKS, None)
        else:
            os.environ[QUIET_LINKS] = previous


def _export(client: Any, store: Store, refs: list[str], experiment: str | None,
            echo: Callable[[str], None]) -> ExportResult:
    from mlflow.exceptions import MlflowException

    if refs:
        entries = [index.summarize(runs.find_run(store, ref).manifest) for ref in refs]
    else:
        entries = sorted(index.entries(store), key=lambda e: e.get("created") or "")
    result = ExportResult(tracking_uri=client.tracking_uri)
    known: dict[str, dict[str, Any]] = {}  # experiment name → {id, runs by sagebook id}
    try:
        for entry in entries:
            name = experiment or entry["experiment"]
            if name not in known:
                known[name] = _experiment(client, name)
    except MlflowException as exc:
        raise SagebookError(f"MLflow at {client.tracking_uri}: {exc}") from None

    def one(entry: dict[str, Any]) -> str:
        target = known[experiment or entry["experiment"]]
        name = f"{entry['experiment']}/{entry['run_id']}"
        try:
            record = Record.open(store, entry["experiment"], entry["run_id"])
            outcome = _export_run(client, target["id"], record,
                                  target["runs"].get(entry["run_id"]))
        except (MlflowException, OSError, SagebookError) as exc:
            # the others go on; exporting again finishes this one (it was tagged last)
            result.failures.append(f"{name}: {exc}")
            outcome = "failed"
        echo(f"{name}: {outcome}")
        return outcome

    # Each run is a handful of round trips to the tracking server: several runs at a time.
    with ThreadPoolExecutor(EXPORT_THREADS) as pool:
        for outcome in pool.map(one, entries):
            setattr(result, outcome, getattr(result, outcome) + 1)
    return result


def _experiment(client: Any, name: str) -> dict[str, Any]:
    """The MLflow experiment (created when missing) and its runs that came from sagebook."""
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found else client.create_experiment(name)
    by_run: dict[str, Any] = {}
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` != ''",
                                  max_results=1000, page_token=token)
        for run in page:
            by_run[run.data.tags[RUN_TAG]] = run
        token = page.token
        if not token:
            return {"id": experiment_id, "runs": by_run}


def _version(info: runs.RunDetails) -> str:
    """Changes with every manifest write and every annotation."""
    notes = [f for f in info.files if f.startswith("annotations/")]
    return f"{info.manifest.get('revision', 0)}:{len(notes)}:{max(notes, default='')}"


def _export_run(client: Any, experiment_id: str, record: Record, existing: Any) -> str:
    from mlflow.entities import Metric, Param, RunTag

    info = runs.details(record)
    m = info.manifest
    annotations = info.annotations
    version = _version(info)
    status = STATUS.get(m.get("status", ""))
    if existing is not None and existing.data.tags.get(VERSION_TAG) == version \
            and existing.info.status == (status or existing.info.status):
        return "unchanged"
    tags = _tags(record, annotations)
    # A new run that ends terminated is RUNNING until its last step, so it carries its version
    # from the start; any other run gets it last (a failed export is redone either way).
    versioned_first = existing is None and status is not None
    if existing is None:
        run = client.create_run(experiment_id, start_time=_ms(m.get("created")),
                                tags={**tags, **({VERSION_TAG: version} if versioned_first
                                                 else {})},
                                run_name=annotations.get("name") or record.run_id)
        info_of_run, have_params, have_tags = run.info, {}, tags
    else:
        info_of_run = existing.info
        have_params, have_tags = existing.data.params, existing.data.tags
    run_id = info_of_run.run_id
    params = [Param(k, v) for k, v in _params(m, info.job_config).items()
              if k not in have_params]
    new_tags = [RunTag(k, v) for k, v in tags.items() if have_tags.get(k) != v]
    metrics = [Metric(key, value, timestamp, step) for key, value, timestamp, step
               in _metrics(info, client if existing is not None else None, run_id)]
    for start in range(0, max(len(params), len(new_tags), len(metrics)), BATCH):
        client.log_batch(run_id, metrics=metrics[start:start + BATCH],
                         params=params[start:start + 100] if start == 0 else [],
                         tags=new_tags if start == 0 else [])
    for start in range(100, len(params), 100):  # MLflow takes 100 parameters a call
        client.log_batch(run_id, params=params[start:start + 100])
    _artifacts(client, info_of_run.artifact_uri, record, info.files, existing is not None)
    if status:
        client.set_terminated(run_id, status=status, end_time=_ms(m.get("ended")))
    if not versioned_first:
        client.set_tag(run_id, VERSION_TAG, version)
    return "created" if existing is None else "updated"


def _tags(record: Record, annotations: dict[str, Any]) -> dict[str, str]:
    m = record.manifest
    git = m.get("git") or {}
    notes = annotations.get("notes") or []
    tags = {
        RUN_TAG: record.run_id,
        "sagebook.experiment": record.experiment,
        "sagebook.record_uri": record.uri,
        "sagebook.status": m.get("status"),
        "sagebook.instance_type": m.get("instance_type"),
        "sagebook.job_name": m.get("job_name"),
        "sagebook.cost_usd": (m.get("cost") or {}).get("usd"),
        "sagebook.git_dirty": git.get("dirty"),
        "mlflow.user": m.get("user"),
        "mlflow.source.git.commit": git.get("commit"),
        "mlflow.source.git.branch": git.get("branch"),
        "mlflow.runName": annotations.get("name") or record.run_id,
        "mlflow.note.content": "\n\n".join(f"{n.get('user')} ({n.get('time')}): {n['note']}"
                                           for n in notes) or None,
    }
    for key, value in (annotations.get("tags") or {}).items():
        if not key.startswith(("mlflow.", "sagebook.")):
            tags[key] = value
    return {k: str(v)[:MAX_TAG_VALUE] for k, v in tags.items() if v is not None}


def _params(manifest: dict[str, Any], job_config: str | None) -> dict[str, str]:
    import yaml

    params = {k: _text(v) for k, v in (manifest.get("params") or {}).items()}
    try:
        job = yaml.safe_load(job_config or "") or {}
    except yaml.YAMLError:
        job = {}
    params.update({f"job.{k}": _text(job[k]) for k in JOB_KEYS
                   if isinstance(job, dict) and job.get(k) is not None})
    return {k: v[:MAX_PARAM_VALUE] for k, v in params.items()}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _metrics(info: runs.RunDetails, client: Any, run_id: str
             ) -> list[tuple[str, float, int, int]]:
    """Every metric point (key, value, ms, step) the MLflow run lacks (by step and value: a
    point without its own time takes the run's, which moves until it ends); with no client (a
    new run) all of them. A final metric without any curve is one point at step 0."""
    fallback = _ms(info.manifest.get("ended")) or _ms(info.manifest.get("created")) or 0
    curves = runs.metric_series(info.record, limit=None)  # info.metrics is downsampled
    points = [(name, value, _ms(stamp) if stamp else fallback, step)
              for name, series in curves.items() for step, value, stamp in series]
    for name, value in (info.manifest.get("final_metrics") or {}).items():
        if name not in curves and isinstance(value, int | float):
            points.append((name, float(value), fallback, 0))
    if client is None:
        return points
    have: dict[str, set[tuple[int, float]]] = {}
    for name in {p[0] for p in points}:
        have[name] = {(h.step, h.value) for h in client.get_metric_history(run_id, name)}
    return [p for p in points if (p[3], p[1]) not in have[p[0]]]


def _artifacts(client: Any, artifact_uri: str, record: Record, files: list[str],
               existing: bool) -> None:
    """The record's files the run lacks, under `sagebook/` of the run's artifacts. Its artifact
    store is addressed by the URI the run reports (the client's own artifact calls would fetch
    the whole run from the server first, to learn that URI)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repository = get_artifact_repository(artifact_uri, tracking_uri=client.tracking_uri)
    present = set()
    if existing:
        for folder in ("sagebook", "sagebook/config"):
            present.update(a.path for a in repository.list_artifacts(folder))
    wanted = [name for name in ARTIFACTS if name in files and f"sagebook/{name}" not in present]
    if not wanted:
        return
    with tempfile.TemporaryDirectory(prefix="sagebook-mlflow-") as folder:
        for name in wanted:
            path = Path(folder, "sagebook", name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(record.store.read_bytes(f"{record.prefix}/{name}"))
        repository.log_artifacts(str(Path(folder, "sagebook")), "sagebook")


def _ms(text: Any) -> int | None:
    if isinstance(text, int | float):
        return int(text * 1000)
    parsed = runs.parse_time(text)
    return int(parsed.timestamp() * 1000) if parsed else None
