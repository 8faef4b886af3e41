"""What the team sees of the record store: find, list, compare and re-run runs.

Listing reads the run index (index.py), never the manifests, so it stays fast at 10,000 runs;
`show`, `diff` and `rerun` read the one or two records they name. Runs that the index still
shows unfinished are handed to their backend's refresh hook (the SageMaker backend asks in
batches, never one describe call per run), which writes what changed back to the record, so
the next reader, and the report, see it too.

Nothing here imports boto3 until a store or a refresh needs it: `sagebook list` on a local
store stays a short Python start.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import index, inputs
from .errors import ConfigError, SagebookError
from .record import TERMINAL, Record
from .stores import Store, open_store

COLUMNS = ("run", "experiment", "user", "created", "instance", "status", "duration", "commit")
DEFAULT_SORT = "created"


class RunNotFound(SagebookError):
    """No run, or more than one, matches what the user typed."""


# --------------------------------------------------------------------------------------------
# Which store


def store_from_args(store: str | None = None, config: str | os.PathLike[str] | None = None
                    ) -> Store:
    """The record store a command reads: `--store URI`, else $SAGEBOOK_EXPERIMENTS_URI, else the
    `experiments_uri` of the job config `-c`, else the project's (see `default_store`)."""
    profile = region = None
    uri = store or os.environ.get("SAGEBOOK_EXPERIMENTS_URI")
    if config is not None:
        settings = _read_job_settings(Path(config))
        profile, region = settings.get("profile"), settings.get("region")
        if not uri and settings.get("experiments_uri"):
            uri = str(settings["experiments_uri"])
            if "://" not in uri:
                uri = str((Path(config).parent / Path(uri).expanduser()).resolve())
    return open_store(uri or default_store(), profile=profile, region=region)


def default_store(start: Path | None = None) -> str:
    """The record store of the project around the current folder, so that `sagebook list` means
    the same in its `notebooks/` as at its top: the local store its job configs name (when they
    name one), else its `experiments/` folder; outside a project, ./experiments."""
    from . import project

    folder = project.root(start)
    if folder is None:
        return str((start or Path.cwd()) / "experiments")
    local = [uri for uri in project.record_stores(folder) if "://" not in uri]
    return local[0] if len(local) == 1 else str(folder / "experiments")


def no_runs_message(store: Store) -> str:
    """Why `list` shows nothing, pointing where the runs may be instead."""
    from itertools import islice

    from . import project

    has_records = any(key.endswith("/manifest.json") for key in islice(store.list(), 1000))
    if has_records:
        return (f"no runs in the index of {store.uri} (records made before sagebook kept an "
                "index: sagebook list --reindex)")
    message = f"no runs in {store.uri}"
    folder = project.root()
    others = {uri: path for uri, path in (project.record_stores(folder) if folder else {}).items()
              if uri.rstrip("/") != store.uri.rstrip("/")}
    for uri, path in others.items():
        config = os.path.relpath(path)
        message += f"\nthis project's {config} keeps records in {uri}: sagebook list -c {config}"
    return message


def _read_job_settings(path: Path) -> dict[str, Any]:
    """Only the keys that locate the store: reading the whole config would validate the
    training config too, which listing runs has no business failing on."""
    data, _ = inputs.load_yaml_file(path)
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------------------------
# Listing


@dataclass
class Filters:
    """Which runs to show; an empty filter shows every run."""

    experiment: str | None = None
    user: str | None = None
    status: Sequence[str] = ()
    tags: dict[str, str | None] = field(default_factory=dict)
    since: _dt.datetime | None = None
    sweep: str | None = None  # a sweep's id: only its trials

    def match(self, entry: dict[str, Any], *, with_status: bool = True) -> bool:
        if self.experiment and entry.get("experiment") != self.experiment:
            return False
        if self.user and entry.get("user") != self.user:
            return False
        if self.sweep and entry.get("sweep") != self.sweep:
            return False
        if with_status and self.status and (
            str(entry.get("status", "")).lower() not in {s.lower() for s in self.status}
        ):
            return False
        tags = entry.get("tags") or {}
        for key, value in self.tags.items():
            if key not in tags or (value is not None and tags[key] != value):
                return False
        return not (self.since and (parse_time(entry.get("created")) or _EPOCH) < self.since)


@dataclass
class Listing:
    """The runs to show, in order, and how many matched before the limit."""

    runs: list[dict[str, Any]]
    matched: int
    refreshed: int = 0
    warning: str | None = None


def list_runs(
    store: Store,
    filters: Filters | None = None,
    *,
    sort: str = DEFAULT_SORT,
    descending: bool | None = None,
    limit: int | None = None,
    refresh: bool = True,
    profile: str | None = None,
) -> Listing:
    """Runs from the index, filtered, sorted by any column or metric, newest first by default.

    At most twice `limit` runs are held at once (trimmed with a heap), besides the cloud runs
    awaiting a refresh, so memory does not grow with the store.
    """
    filters = filters or Filters()
    column = sort.lstrip("-")
    if descending is None:  # newest first for times, smallest first for everything else
        descending = sort.startswith("-") or column in ("created", "started", "ended", "updated")
    pending, kept, matched = [], [], 0
    for entry in index.entries(store, filters.experiment):
        if not filters.match(entry, with_status=False):
            continue
        if refresh and _may_change(entry):
            pending.append(entry)  # its status may change: the status filter comes after
            continue
        if filters.match(entry):
            matched += 1
            kept = _keep(kept, entry, column, descending, limit)
    refreshed, warning = 0, None
    if pending:
        try:
            from .backends import refresh as refresh_statuses

            refreshed = refresh_statuses(store, pending, profile=profile)
        except SagebookError as exc:  # offline, or no AWS credentials: show what the store says
            warning = f"statuses of {len(pending)} cloud runs not refreshed: {exc}"
    for entry in pending:
        if filters.match(entry):
            matched += 1
            kept = _keep(kept, entry, column, descending, limit)
    kept.sort(key=lambda e: sort_key(e, column, descending), reverse=descending)
    return Listing(kept[:limit] if limit else kept, matched, refreshed, warning)


def _keep(kept: list[dict[str, Any]], entry: dict[str, Any], column: str, descending: bool,
          limit: int | None) -> list[dict[str, Any]]:
    kept.append(entry)
    if limit and len(kept) >= 2 * limit:  # trim in batches: amortised O(log limit) per run
        pick = heapq.nlargest if descending else heapq.nsmallest
        kept = pick(limit, kept, key=lambda e: sort_key(e, column, descending))
    return kept


def _may_change(entry: dict[str, Any]) -> bool:
    """An unfinished run with a job: its backend may know more than the store (only remote
    backends do, and the registry knows which)."""
    return entry.get("status") not in TERMINAL and bool(entry.get("job_name"))


def sort_key(entry: dict[str, Any], column: str, descending: bool) -> tuple[bool, Any]:
    """Runs without the value (no such metric, still running) sort last in either direction."""
    value = column_value(entry, column)
    present = value is not None and value != ""
    if not isinstance(value, int | float) or isinstance(value, bool):
        value = "" if value is None else str(value)
    return (present, value) if descending else (not present, value)


def column_value(entry: dict[str, Any], column: str, now: _dt.datetime | None = None) -> Any:
    """A column of the table (or any final metric by name) for one run."""
    if column == "run":
        return entry.get("run_id")
    if column == "instance":
        return entry.get("instance_type")
    if column == "duration":
        return duration(entry, now)
    if column == "commit":
        return entry.get("git_commit")
    if column in ("experiment", "user", "created", "status", "ended", "started", "host",
                  "backend", "job_name", "parent", "image_uri", "updated"):
        return entry.get(column)
    return (entry.get("final_metrics") or {}).get(column)


def duration(entry: dict[str, Any], now: _dt.datetime | None = None) -> float | None:
    """Seconds from start (or creation) to end, or to now while the run is unfinished."""
    start = parse_time(entry.get("started")) or parse_time(entry.get("created"))
    if start is None:
        return None
    end = parse_time(entry.get("ended"))
    if end is None:
        if entry.get("status") in TERMINAL:
            return None
        end = now or _dt.datetime.now(_dt.timezone.utc)
    return max((end - start).total_seconds(), 0.0)


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_AGO = re.compile(r"^(\d+)([smhdw])$")


def parse_time(text: Any) -> _dt.datetime | None:
    if not text:
        return None
    try:
        value = _dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)


def parse_since(text: str, now: _dt.datetime | None = None) -> _dt.datetime:
    """`7d`, `12h`, `30m`, `2w` ago, or a date / time such as `2026-11-01`."""
    match = _AGO.match(text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
        ago = _dt.timedelta(**{unit[match[2]]: int(match[1])})
        return (now or _dt.datetime.now(_dt.timezone.utc)) - ago
    value = parse_time(text)
    if value is None:
        raise ConfigError.one("--since", None, f"expected 7d, 12h, 30m or a date such as "
                                              f"2026-11-01, got {text!r}")
    return value


def parse_tags(items: Iterable[str]) -> dict[str, str | None]:
    """`key=value` matches that value, a bare `key` any value."""
    tags: dict[str, str | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        tags[key] = value if sep else None
    return tags


# --------------------------------------------------------------------------------------------
# One run


def find_run(store: Store, ref: str) -> Record:
    """The run a user means by `ref`: a run id (or a unique part of one), a job name,
    `experiment/run_id`, or a record's full URI."""
    if ref.startswith(("s3://", "/", "file://")) and ref.rstrip("/").count("/") >= 2:
        return _open(lambda: Record.open_uri(ref.removeprefix("file://")), ref)
    if ref.count("/") == 1:
        experiment, run_id = ref.split("/")
        return _open(lambda: Record.open(store, experiment, run_id), ref)
    exact, partial = [], []
    for entry in index.entries(store):
        if ref in (entry["run_id"], entry.get("job_name")):
            exact.append(entry)
        elif ref in entry["run_id"]:
            partial.append(entry)
    matches = exact or partial
    if not matches:
        raise RunNotFound(f"no run {ref!r} in {store.uri} (`sagebook list` shows the runs; "
                          "records made before the index existed: `sagebook list --reindex`)")
    if len(matches) > 1:
        names = ", ".join(f"{e['experiment']}/{e['run_id']}" for e in matches[:5])
        raise RunNotFound(f"{ref!r} matches {len(matches)} runs ({names}"
                          f"{', …' if len(matches) > 5 else ''}): give more of the run id")
    return _open(lambda: Record.open(store, matches[0]["experiment"], matches[0]["run_id"]), ref)


def _open(opener: Callable[[], Record], ref: str) -> Record:
    try:
        return opener()
    except FileNotFoundError:
        raise RunNotFound(f"no record at {ref!r}: its manifest.json is missing") from None
    except ValueError as exc:
        raise RunNotFound(f"the record {ref!r} has an unreadable manifest: {exc}") from None


def read_optional(record: Record, name: str) -> str | None:
    try:
        return record.store.read_text(f"{record.prefix}/{name}")
    except FileNotFoundError:
        return None


def metric_series(record: Record) -> dict[str, list[tuple[int | None, float, float | None]]]:
    """name → [(step, value, timestamp)] from the record's metrics.jsonl, in file order."""
    series: dict[str, list[tuple[int | None, float, float | None]]] = {}
    text = read_optional(record, "metrics.jsonl") or ""
    for line in text.splitlines():
        try:
            point = json.loads(line)
            series.setdefault(point["name"], []).append(
                (point.get("step"), float(point["value"]), point.get("timestamp")))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line while the run writes
    return series


@dataclass
class RunDetails:
    """Everything `show` prints about one run."""

    record: Record
    job_config: str | None
    training_config: str | None
    request: dict[str, Any] | None
    metrics: dict[str, list[tuple[int | None, float, float | None]]]
    failure: str | None
    files: list[str]
    report_page: str | None

    @property
    def manifest(self) -> dict[str, Any]:
        return self.record.manifest

    def artifacts(self) -> dict[str, str]:
        m = self.manifest
        found = {k: m[k] for k in ("model_artifact", "output_artifact", "job_arn") if m.get(k)}
        for name in ("notebook.ipynb", "git.diff", "failure.txt", "metrics.jsonl"):
            if name in self.files:
                found[name] = self.record.url(name)
        for name in self.files:
            if name.startswith("logs/"):
                found[name] = self.record.url(name)
        return found

    def as_json(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "job_config": self.job_config,
            "training_config": self.training_config,
            "request": self.request,
            "metrics": {k: [list(p) for p in v] for k, v in self.metrics.items()},
            "failure": self.failure,
            "artifacts": self.artifacts(),
            "report_page": self.report_page,
        }


def details(record: Record) -> RunDetails:
    files = [k[len(record.prefix) + 1:] for k in record.store.list(record.prefix)]
    request_text = read_optional(record, "request.json")
    from .report import run_page_key

    page = run_page_key(record.experiment, record.run_id)
    return RunDetails(
        record=record,
        job_config=read_optional(record, "sagemaker_config.yaml"),
        training_config=read_optional(record, "config/training_config.yaml"),
        request=json.loads(request_text) if request_text else None,
        metrics=metric_series(record),
        failure=read_optional(record, "failure.txt"),
        files=files,
        report_page=record.store.url(page) if record.store.exists(page) else None,
    )


# --------------------------------------------------------------------------------------------
# Two runs


@dataclass
class DiffRow:
    section: str
    key: str
    a: Any
    b: Any

    @property
    def same(self) -> bool:
        return self.a == self.b


def diff(a: Record, b: Record) -> list[DiffRow]:
    """Both runs side by side: the run itself, both configs key by key, final metrics."""
    rows: list[DiffRow] = []
    ma, mb = a.manifest, b.manifest

    def git(m: dict[str, Any]) -> str | None:
        g = m.get("git") or {}
        commit = g.get("commit")
        return f"{commit}{' (dirty)' if g.get('dirty') else ''}" if commit else None

    for key, get in (
        ("image_uri", lambda m: m.get("image_uri")),
        ("git commit", git),
        ("instance_type", lambda m: m.get("instance_type")),
        ("backend", lambda m: m.get("backend")),
        ("status", lambda m: m.get("status")),
        ("duration", lambda m: _rounded(duration(index.summarize(m)))),
        ("user", lambda m: m.get("user")),
        ("overrides", lambda m: ", ".join((m.get("config") or {}).get("overrides") or [])),
    ):
        rows.append(DiffRow("run", key, get(ma), get(mb)))
    for section, name in (("job", "sagemaker_config.yaml"),
                          ("training", "config/training_config.yaml")):
        fa, fb = (flatten(_yaml(read_optional(r, name), r.url(name))) for r in (a, b))
        for key in sorted(set(fa) | set(fb)):
            rows.append(DiffRow(section, key, fa.get(key), fb.get(key)))
    metrics_a, metrics_b = ma.get("final_metrics") or {}, mb.get("final_metrics") or {}
    for key in sorted(set(metrics_a) | set(metrics_b)):
        rows.append(DiffRow("metrics", key, metrics_a.get(key), metrics_b.get(key)))
    return rows


def _rounded(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def _yaml(text: str | None, where: str = "config") -> Any:
    return inputs.parse_yaml_text(text, where) or {}


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": [1]}}` → `{"a.b.0": 1}`; empty sections stay visible as `{}` / `[]`."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(data, list) and data:
        out = {}
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): data} if prefix else {}


# --------------------------------------------------------------------------------------------
# Re-running


def rerun(record: Record, overrides: Iterable[str] = (), *, resume: bool = False,
          **launch_options: Any) -> Any:
    """Launch a new run from a record's configs as launched (same image, same settings), with
    `overrides` on top; the new record names its parent and the commit the parent ran. With
    `resume`, the run starts from a copy of the parent's checkpoints."""
    from .launch import launch

    job_text = read_optional(record, "sagemaker_config.yaml")
    training_text = read_optional(record, "config/training_config.yaml")
    if job_text is None or training_text is None:
        raise RunNotFound(f"{record.uri} has no sagemaker_config.yaml and "
                          "config/training_config.yaml to re-run from")
    m = record.manifest
    parent = {
        "run_id": record.run_id,
        "experiment": record.experiment,
        "record_uri": record.uri,
        "git_commit": (m.get("git") or {}).get("commit"),
        "git_dirty": (m.get("git") or {}).get("dirty"),
        "image_uri": m.get("image_uri"),
        "config_digest": (m.get("config") or {}).get("digest"),
        "overrides": list(overrides),
    }
    if resume:  # first, so that an explicit -o job.resume_from=… still wins
        overrides = [f"job.resume_from={record.experiment}/{record.run_id}", *overrides]
    # The record keeps the job config next to `config/training_config.yaml`; the config loader
    # wants it next to the job config, as `training_config: training_config.yaml` says.
    with tempfile.TemporaryDirectory(prefix=f"sagebook-rerun-{record.run_id}-") as folder:
        job_path = Path(folder, "sagemaker_config.yaml")
        job_path.write_text(job_text)
        Path(folder, "training_config.yaml").write_text(training_text)
        return launch(job_path, list(overrides), extra_manifest={"parent": parent},
                      **launch_options)


# --------------------------------------------------------------------------------------------
# Text, for the terminal


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_commit(entry: dict[str, Any]) -> str:
    """The short commit, with `*` when the training code had uncommitted changes."""
    commit = entry.get("git_commit")
    if not commit:
        return ""
    return commit[:8] + ("*" if entry.get("git_dirty") else "")


def format_table(rows: list[dict[str, Any]], metrics: list[str],
                 parameters: Sequence[str] = ()) -> str:
    """The runs as a table; `parameters`: a sweep's searched keys, as columns of their own."""
    now = _dt.datetime.now(_dt.timezone.utc)
    header = ["RUN", "EXPERIMENT", "USER", "CREATED", "INSTANCE", "STATUS", "DURATION",
              *parameters, *(m.upper() for m in metrics), "COMMIT"]
    lines = [header]
    for e in rows:
        created = parse_time(e.get("created"))
        final = e.get("final_metrics") or {}
        lines.append([
            e["run_id"], e.get("experiment", ""), e.get("user", ""),
            created.strftime("%Y-%m-%d %H:%M") if created else "", e.get("instance_type", ""),
            e.get("status", ""), format_duration(duration(e, now)),
            *(_cell((e.get("parameters") or {}).get(p)) for p in parameters),
            *("" if final.get(m) is None else f"{final[m]:.4g}" for m in metrics),
            format_commit(e),
        ])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True))
                     .rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def format_details(info: RunDetails) -> str:
    m = info.manifest
    summary = index.summarize(m)
    git = m.get("git") or {}
    parent = m.get("parent") or {}
    lines = [
        f"run:         {info.record.run_id}",
        f"experiment:  {info.record.experiment}",
        f"status:      {m.get('status')}",
        f"user:        {m.get('user')}@{m.get('host')}",
        f"created:     {m.get('created')}",
        f"ended:       {m.get('ended') or ''}",
        f"duration:    {format_duration(duration(summary))}",
        f"instance:    {m.get('instance_type')} ({m.get('backend')})",
        f"job:         {m.get('job_name')}",
        f"launched:    via {m.get('launched_via')}",
        f"image:       {m.get('image_uri') or ''}",
        f"git:         {git.get('commit') or git.get('note') or ''}"
        f"{' (dirty)' if git.get('dirty') else ''}"
        f"{' on ' + git['branch'] if git.get('branch') else ''}",
        f"overrides:   {', '.join((m.get('config') or {}).get('overrides') or [])}",
        f"record:      {info.record.uri}",
    ]
    if parent.get("run_id"):
        lines.append(f"parent:      {parent.get('experiment')}/{parent['run_id']}")
    lines += ["", "status timeline:"]
    start = parse_time(m.get("created"))
    for step in m.get("status_history") or []:
        at = parse_time(step.get("time"))
        offset = f"+{format_duration((at - start).total_seconds())}" if at and start else ""
        lines.append(f"  {step.get('time')}  {offset:>8}  {step.get('status')}")
    if m.get("failure_reason"):
        lines += ["", "failure:", *(f"  {line}" for line in m["failure_reason"].splitlines())]
    final = m.get("final_metrics") or {}
    if final or info.metrics:
        lines += ["", "metrics:        final      min      max   points"]
        for name in sorted(set(final) | set(info.metrics)):
            values = [v for _, v, _ in info.metrics.get(name, [])]
            low = f"{min(values):8.4g}" if values else " " * 8
            high = f"{max(values):8.4g}" if values else " " * 8
            last = f"{final[name]:8.4g}" if name in final else " " * 8
            lines.append(f"  {name:<12} {last} {low} {high} {len(values):>8}")
    artifacts = info.artifacts()
    notebook = m.get("notebook") or {}
    if artifacts or notebook or info.report_page:
        lines += ["", "artifacts:"]
        lines += [f"  {k + ':':<16} {v}" for k, v in artifacts.items()]
        if notebook:
            detail = ": ".join(str(notebook[k]) for k in ("note", "path") if notebook.get(k))
            lines.append(f"  {'notebook status:':<16} {notebook.get('status')}"
                         + (f" ({detail})" if notebook.get("status") != "completed" and detail
                            else ""))
        if info.report_page:
            lines.append(f"  {'report page:':<16} {info.report_page}")
            if "notebook.ipynb" in info.files:
                lines.append(f"  {'notebook html:':<16} "
                             f"{info.report_page.removesuffix('.html')}.notebook.html")
    for title, text in (("training config (config/training_config.yaml)", info.training_config),
                        ("job config (sagemaker_config.yaml)", info.job_config)):
        if text:
            lines += ["", f"{title}:", *(f"  {line}" for line in text.rstrip().splitlines())]
    if info.request is not None:
        lines += ["", "request (request.json):",
                  *(f"  {line}" for line in json.dumps(info.request, indent=2).splitlines())]
    return "\n".join(lines)


def format_diff(a: Record, b: Record, rows: list[DiffRow], show_all: bool = False) -> str:
    def cell(value: Any) -> str:
        text = "—" if value is None else (json.dumps(value) if isinstance(value, dict | list)
                                          else str(value))
        return text if len(text) <= 60 else text[:57] + "..."

    shown = [r for r in rows if show_all or not r.same or r.section == "metrics"]
    table = [("", "KEY", a.run_id, b.run_id)]
    for row in shown:
        mark = " " if row.same else "*"
        table.append((mark, f"{row.section}.{row.key}", cell(row.a), cell(row.b)))
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in table)
    differing = sum(not r.same for r in rows if r.section in ("job", "training"))
    note = ("configs identical" if not differing else
            f"{differing} config keys differ")
    return f"{text}\n\n{note} (* marks a difference{'' if show_all else '; --all shows every key'})"
