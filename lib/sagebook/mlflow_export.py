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

A tracking server that stops answering ends the export soon, in one line: each request has a
deadline and a couple of retries (mlflow's own defaults wait minutes), and a few runs in a row
that could not reach the server stop the rest. Ctrl-C ends it at once; the next export
finishes what was cut short. Records are anyone's writing: every name and value sent is text
within MLflow's size limits with credentials masked, and a record that cannot be read as a
run is named and passed over.

mlflow is heavy (and the SageMaker SDK brings it): it is the `mlflow` extra, imported only here.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import index
from .errors import SagebookError
from .inputs import DamagedFile, checked_name, parse_yaml_text
from .printing import cell_text
from .record import Record
from .runs.details import RunDetails, details, metric_series
from .runs.listing import parse_time
from .runs.lookup import find_run
from .secrets import redact
from .stores import Store

T = TypeVar("T")

RUN_TAG = "sagebook.run_id"
VERSION_TAG = "sagebook.version"
ARTIFACTS = ("sagemaker_config.yaml", "config/training_config.yaml", "request.json",
             "notebook.ipynb", "git.diff", "failure.txt")
JOB_KEYS = ("instance_type", "instance_count", "volume_size_gb", "max_runtime", "spot",
            "max_wait", "keep_alive", "image_uri", "entry_point")
STATUS = {"Completed": "FINISHED", "Failed": "FAILED", "Lost": "FAILED", "Stopped": "KILLED",
          "Interrupted": "KILLED"}
MAX_PARAM_VALUE, MAX_TAG_VALUE, MAX_KEY, BATCH = 6000, 5000, 250, 900
MAX_SECONDS = 1e11  # a time past the year 5000 is not a time of a run
EXPORT_THREADS = 4  # a sqlite-backed server refuses more at once
QUIET_LINKS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
# mlflow's HTTP settings for the export, unless the user set them: a request waits at most
# 15 s for an answer and is tried 3 times, 0 and 2-3 s apart (mlflow's defaults, 120 s and 7
# retries with doubling waits, keep one request of a dead server busy for minutes).
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "15", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
UNANSWERED_RUNS = 3  # runs in a row that could not reach the server: it is down, stop
# What reading a record that is not a run's, as planted in a store, raises in the readers it
# passes through: the run is named and passed over, the export goes on.
NOT_A_RUN = (ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError)


@dataclass
class ExportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    tracking_uri: str = ""
    failures: list[str] = field(default_factory=list)


class ServerUnreachable(SagebookError):
    """The tracking server does not answer: the export stopped, the message says how far."""


def export(store: Store, refs: Iterable[str] = (), *, tracking_uri: str | None = None,
           experiment: str | None = None, echo: Callable[[str], None] = lambda _: None
           ) -> ExportResult:
    """Export the runs named by `refs` (all runs of the store when none) to MLflow, into the
    MLflow experiment `experiment` (default: each run's sagebook experiment). Raises
    ServerUnreachable when the tracking server stops answering."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise SagebookError("exporting to MLflow needs mlflow: pip install 'sagebook[mlflow]' "
                            "(it comes with the SageMaker SDK too)") from None
    # mlflow warns about header plugins that do not apply: the export's own lines say what
    # happened
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    with _environment({QUIET_LINKS: "true"}, defaults=HTTP_SETTINGS):
        return _export(MlflowClient(tracking_uri=tracking_uri), store, list(refs), experiment,
                       echo)


@contextmanager
def _environment(values: dict[str, str], defaults: dict[str, str]) -> Iterator[None]:
    """mlflow's settings for the export's own duration: `values` always, `defaults` where the
    user has not set them. QUIET_LINKS drops mlflow's "View run … at …" line on stdout for
    every run it ends: it fetches the whole run from the server first (a third of an
    export's time), and the export's own lines say what happened."""
    chosen = {**{k: v for k, v in defaults.items() if k not in os.environ}, **values}
    previous = {name: os.environ.get(name) for name in chosen}
    os.environ.update(chosen)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _export(client: Any, store: Store, refs: list[str], experiment: str | None,
            echo: Callable[[str], None]) -> ExportResult:
    from mlflow.exceptions import MlflowException

    if refs:
        entries = [index.summarize(find_run(store, ref).manifest) for ref in refs]
    else:
        entries = sorted(index.entries(store), key=lambda e: str(e.get("created") or ""))
    result = ExportResult(tracking_uri=client.tracking_uri)
    named = []
    for entry in entries:
        try:
            named.append((checked_name("experiment", entry.get("experiment"), "the run index"),
                          checked_name("run id", entry.get("run_id"), "the run index")))
        except DamagedFile as exc:
            result.failed += 1
            result.failures.append(str(exc))
    known: dict[str, dict[str, Any]] = {}  # experiment name → {id, runs by sagebook id}
    try:
        for exp, _ in named:
            name = experiment or exp
            if name not in known:
                known[name] = _experiment(client, name)
    except MlflowException as exc:
        if _unanswered(exc):
            raise ServerUnreachable(_stopped(client, 0, len(entries))) from None
        raise SagebookError(f"MLflow at {client.tracking_uri}: {exc}") from None

    lock, stop = threading.Lock(), threading.Event()
    in_a_row = 0  # runs that could not reach the server, one after the other

    def one(ids: tuple[str, str]) -> str:
        nonlocal in_a_row
        if stop.is_set():
            return "skipped"
        exp, run_id = ids
        target = known[experiment or exp]
        name = f"{exp}/{run_id}"
        unanswered = False
        try:
            record = Record.open(store, exp, run_id)
            outcome = _export_run(client, target["id"], record, target["runs"].get(run_id))
        except (MlflowException, OSError, SagebookError) as exc:
            # the others go on; exporting again finishes this one (it was tagged last)
            unanswered = _unanswered(exc)
            result.failures.append(f"{name}: {exc}")
            outcome = "failed"
        except NOT_A_RUN as exc:
            result.failures.append(f"{name}: not exported: its record cannot be read as a "
                                   f"run's ({type(exc).__name__}: {exc})")
            outcome = "failed"
        with lock:
            in_a_row = in_a_row + 1 if unanswered else 0
            if in_a_row >= UNANSWERED_RUNS:
                stop.set()
        echo(f"{name}: {outcome}")
        return outcome

    # Each run is a handful of round trips to the tracking server: several runs at a time.
    for outcome in _in_threads(one, named, EXPORT_THREADS):
        if outcome != "skipped":
            setattr(result, outcome, getattr(result, outcome) + 1)
    if stop.is_set():
        raise ServerUnreachable(_stopped(
            client, result.created + result.updated + result.unchanged, len(entries)))
    return result


def _stopped(client: Any, exported: int, total: int) -> str:
    return (f"the tracking server at {client.tracking_uri} does not answer; {exported} of "
            f"{total} runs exported, run again to finish")


def _unanswered(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from) says the server did not answer at all:
    refused or dropped connections, timeouts, only 5xx answers until the retries ran out."""
    import requests

    seen: BaseException | None = exc
    for _ in range(10):  # mlflow raises its own error while handling the requests one
        if seen is None:
            return False
        if isinstance(seen, requests.exceptions.ConnectionError | requests.exceptions.Timeout
                      | requests.exceptions.RetryError | ConnectionError | TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _in_threads(work: Callable[[T], str], items: list[T], threads: int) -> Iterator[str]:
    """`work(item)` for each item, `threads` at a time, outcomes as they come. The threads are
    daemons: Ctrl-C ends the export at once instead of waiting for requests in flight (a
    thread pool's threads are joined at exit), and a run cut short is finished by the next
    export, which finds it by its tag."""
    todo: queue.SimpleQueue[T] = queue.SimpleQueue()
    done: queue.SimpleQueue[tuple[str, BaseException | None]] = queue.SimpleQueue()
    for item in items:
        todo.put(item)

    def worker() -> None:
        while True:
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((work(item), None))
            except BaseException as exc:  # handed to the caller's thread, which raises it
                done.put(("", exc))

    for _ in range(min(threads, len(items))):
        threading.Thread(target=worker, daemon=True).start()
    for _ in items:
        outcome, error = done.get()
        if error is not None:
            raise error
        yield outcome


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


def _version(info: RunDetails) -> str:
    """Changes with every manifest write and every annotation."""
    notes = [f for f in info.files if f.startswith("annotations/")]
    return f"{info.manifest.get('revision', 0)}:{len(notes)}:{max(notes, default='')}"


def _export_run(client: Any, experiment_id: str, record: Record, existing: Any) -> str:
    from mlflow.entities import Metric, Param, RunTag

    info = details(record)
    m = info.manifest
    annotations = info.annotations
    version = _version(info)
    status = STATUS.get(m["status"])
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
                                run_name=tags["mlflow.runName"])
        info_of_run, have_params, have_tags = run.info, {}, tags
    else:
        info_of_run = existing.info
        have_params, have_tags = existing.data.params, existing.data.tags
    run_id = info_of_run.run_id
    keyed = [Param(k, v) for k, v in _params(record, info.job_config).items()
             if k not in have_params]
    keyed += [RunTag(k, v) for k, v in tags.items() if have_tags.get(k) != v]
    metrics = [Metric(key, value, timestamp, step) for key, value, timestamp, step
               in _metrics(info, client if existing is not None else None, run_id)]
    # MLflow takes 1000 metric points and 100 parameters and tags together in one call
    for batch in range(max(math.ceil(len(metrics) / BATCH), math.ceil(len(keyed) / 100))):
        part = keyed[batch * 100:(batch + 1) * 100]
        client.log_batch(run_id, metrics=metrics[batch * BATCH:(batch + 1) * BATCH],
                         params=[p for p in part if isinstance(p, Param)],
                         tags=[t for t in part if isinstance(t, RunTag)])
    _artifacts(client, info_of_run.artifact_uri, record, info.files, existing is not None)
    if status:
        client.set_terminated(run_id, status=status, end_time=_ms(m.get("ended")))
    if not versioned_first:
        client.set_tag(run_id, VERSION_TAG, version)
    return "created" if existing is None else "updated"


def _tags(record: Record, annotations: dict[str, Any]) -> dict[str, str]:
    m = record.manifest
    git, cost = _mapping(m.get("git")), _mapping(m.get("cost"))
    notes = [n for n in annotations.get("notes") or [] if isinstance(n, dict)]
    tags = {
        RUN_TAG: record.run_id,
        "sagebook.experiment": record.experiment,
        "sagebook.record_uri": record.uri,
        "sagebook.status": m.get("status"),
        "sagebook.instance_type": m.get("instance_type"),
        "sagebook.job_name": m.get("job_name"),
        "sagebook.cost_usd": cost.get("usd"),
        "sagebook.git_dirty": git.get("dirty"),
        "mlflow.user": m.get("user"),
        "mlflow.source.git.commit": git.get("commit"),
        "mlflow.source.git.branch": git.get("branch"),
        "mlflow.runName": annotations.get("name") or record.run_id,
        "mlflow.note.content": "\n\n".join(
            f"{cell_text(n.get('user'))} ({cell_text(n.get('time'))}): "
            f"{cell_text(n.get('note'))}"
            for n in notes) or None,
    }
    for key, value in _mapping(annotations.get("tags")).items():
        if not key.startswith(("mlflow.", "sagebook.")):
            tags[key] = value
    return {_sent(k, MAX_KEY): _sent(str(v), MAX_TAG_VALUE) for k, v in tags.items()
            if v is not None}


def _params(record: Record, job_config: str | None) -> dict[str, str]:
    params = dict(_mapping(record.manifest.get("params")))
    try:
        job = _mapping(parse_yaml_text(job_config, record.url("sagemaker_config.yaml")))
    except DamagedFile:
        job = {}
    params.update({f"job.{k}": job[k] for k in JOB_KEYS if job.get(k) is not None})
    return {_sent(k, MAX_KEY): _sent(v, MAX_PARAM_VALUE) for k, v in params.items()}


def _mapping(value: Any) -> dict[str, Any]:
    """A record's field that should be a mapping, or an empty one (a record is anyone's
    writing)."""
    return value if isinstance(value, dict) else {}


def _sent(value: Any, limit: int) -> str:
    """A name or value as MLflow gets it: text, credentials masked, within MLflow's limit."""
    return redact(cell_text(value))[:limit]


def _metrics(info: RunDetails, client: Any, run_id: str
             ) -> list[tuple[str, float, int, int]]:
    """Every metric point (key, value, ms, step) the MLflow run lacks (by step and value: a
    point without its own time takes the run's, which moves until it ends); with no client (a
    new run) all of them. A final metric without any curve is one point at step 0."""
    fallback = _ms(info.manifest.get("ended")) or _ms(info.manifest.get("created")) or 0
    curves = metric_series(info.record, limit=None)  # info.metrics is downsampled
    points = [(_sent(name, MAX_KEY), value, _ms(stamp) or fallback, step)
              for name, series in curves.items() for step, value, stamp in series]
    for name, value in _mapping(info.manifest.get("final_metrics")).items():
        if name not in curves and isinstance(value, int | float) \
                and not isinstance(value, bool):
            points.append((_sent(name, MAX_KEY), float(value), fallback, 0))
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
            data = record.store.read_bytes(f"{record.prefix}/{name}")
            # every one is text (configs, JSON, a notebook, a diff): sent with credentials
            # masked, as whatever else the export sends
            path.write_text(redact(data.decode("utf-8", errors="replace")))
        repository.log_artifacts(str(Path(folder, "sagebook")), "sagebook")


def _ms(text: Any) -> int | None:
    """A time of the record (ISO text, or seconds) in milliseconds; None when it is none."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return int(text * 1000) if math.isfinite(text) and 0 <= text < MAX_SECONDS else None
    parsed = parse_time(text)
    return int(parsed.timestamp() * 1000) if parsed else None
