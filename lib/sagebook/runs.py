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

import bisect
import codecs
import datetime as _dt
import difflib
import heapq
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import index, inputs, project
from .errors import ConfigError, SagebookError, StoreError
from .inputs import DamagedFile, parse_json
from .layout import run_page_key
from .printing import terminal_lines, terminal_text
from .record import ANNOTATIONS, STATUSES, TERMINAL, Record, user
from .secrets import token_kind
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
    options: dict[str, Any] = {}
    uri = store or os.environ.get("SAGEBOOK_EXPERIMENTS_URI")
    if config is not None:
        settings = _read_job_settings(Path(config))
        options = store_options(settings)
        if not uri and settings.get("experiments_uri"):
            uri = str(settings["experiments_uri"])
            if "://" not in uri:
                uri = str((Path(config).parent / Path(uri).expanduser()).resolve())
    return open_store(uri or default_store(), **options)


def store_options(settings: dict[str, Any]) -> dict[str, Any]:
    """What a store opened for a job config's records needs (as `JobConfig.store_options`),
    from its raw settings: commands that only read records do not validate the whole config."""
    return {"profile": settings.get("profile"), "region": settings.get("region"),
            "kms_key": settings.get("s3_kms_key"),
            "expected_owner": settings.get("expected_bucket_owner")}


def config_store_options(config: str | os.PathLike[str]) -> dict[str, Any]:
    """`store_options` of the job config file at `config`."""
    return store_options(_read_job_settings(Path(config)))


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
    return terminal_lines([f"no runs in {store.uri}", *_elsewhere(store)])


def _elsewhere(store: Store) -> list[str]:
    """Where else a run may be when `store` does not show it: records its index lacks (only
    when it holds any), and the other stores the project's job configs name."""
    from itertools import islice

    from . import project

    hints = []
    if any(key.endswith("/manifest.json") for key in islice(store.list(), 1000)):
        hints.append("records made before sagebook kept an index: sagebook list --reindex")
    folder = project.root()
    for uri, path in (project.record_stores(folder) if folder else {}).items():
        if uri.rstrip("/") != store.uri.rstrip("/"):
            config = os.path.relpath(path)
            hints.append(f"this project's {config} keeps records in {uri}: add -c {config}")
    return hints


def _read_job_settings(path: Path) -> dict[str, Any]:
    """Only the keys that locate the store: reading the whole config would validate the
    training config too, which listing runs has no business failing on."""
    data, _ = inputs.load_yaml_file(path)
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------------------------
# Listing


_WHERE = re.compile(r"^\s*([^<>=!~\s]+)\s*(>=|<=|!=|==|=|>|<|~)\s*(.*?)\s*$")


@dataclass
class Condition:
    """One `--where` test: NAME OP VALUE, NAME a column, metric, parameter or tag."""

    name: str
    op: str
    value: str

    def test(self, entry: dict[str, Any]) -> bool:
        """Runs without the value never match. Numbers compare as numbers, the rest as
        text (`~`: contains, ignoring case)."""
        actual = column_value(entry, self.name)
        if actual is None or actual == "":
            return False
        if self.op == "~":
            return self.value.lower() in str(actual).lower()
        if isinstance(actual, bool):
            actual = str(actual).lower()
        expected: Any = self.value
        if isinstance(actual, int | float):
            try:
                expected = float(self.value)
            except ValueError:
                actual = str(actual)
        else:
            actual = str(actual)
        return {"=": actual == expected, "==": actual == expected, "!=": actual != expected,
                ">": actual > expected, "<": actual < expected, ">=": actual >= expected,
                "<=": actual <= expected}[self.op]


def parse_where(text: str) -> Condition:
    """`val_accuracy>0.95`, `optimizer=adam`, `tag.team=ml`, `note~baseline`."""
    match = _WHERE.match(text)
    if not match:
        raise ConfigError.one("--where", None, f"expected NAME OP VALUE with OP one of = != > "
                                               f">= < <= ~ (e.g. 'val_accuracy>0.95'), got "
                                               f"{text!r}")
    return Condition(*match.groups())


@dataclass
class Filters:
    """Which runs to show; an empty filter shows every run."""

    experiment: str | None = None
    user: str | None = None
    status: Sequence[str] = ()
    tags: dict[str, str | None] = field(default_factory=dict)
    since: _dt.datetime | None = None
    sweep: str | None = None  # a sweep's id: only its trials
    where: Sequence[Condition] = ()

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
        if self.since and (parse_time(entry.get("created")) or _EPOCH) < self.since:
            return False
        return all(c.test(entry) for c in self.where if with_status or c.name != "status")


@dataclass
class Names:
    """Every metric, parameter, tag and status seen in the listed store: what `--where`,
    `--sort`, `-m`, `--params` and `-s` may name."""

    metrics: set[str] = field(default_factory=set)
    params: set[str] = field(default_factory=set)
    tags: set[str] = field(default_factory=set)
    # and Lost, which readers give a run whose launcher is gone (see backends/liveness.py)
    statuses: set[str] = field(default_factory=lambda: {*STATUSES, "Lost"})
    runs: int = 0

    def see(self, entry: dict[str, Any]) -> None:
        self.runs += 1
        self.metrics.update(entry.get("final_metrics") or ())
        self.params.update(entry.get("params") or ())
        self.tags.update(entry.get("tags") or ())
        if entry.get("status"):
            self.statuses.add(entry["status"])

    def check(self, option: str, name: str, kinds: Sequence[str]) -> None:
        """Raise, naming the nearest known name, unless `name` is one of `kinds`
        (column, metric, param, tag). A store without runs knows no names: nothing to say."""
        if not self.runs or self.knows(name, kinds):
            return
        words = [{"param": "parameter"}.get(k, k) for k in kinds]
        what = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
        raise ConfigError.one(option, None, f"no {what} {name!r} in this store; "
                                            f"{nearest(name, self.candidates(kinds))}")

    def knows(self, name: str, kinds: Sequence[str]) -> bool:
        kind, _, rest = name.partition(".")
        if rest and kind in _PREFIXES:
            return _PREFIXES[kind] in kinds and rest in self._set(_PREFIXES[kind])
        return any(name in self._set(kind) for kind in kinds)

    def candidates(self, kinds: Sequence[str]) -> list[str]:
        return sorted({n for kind in kinds for n in self._set(kind)})

    def _set(self, kind: str) -> set[str] | tuple[str, ...]:
        return {"column": COLUMN_NAMES, "metric": self.metrics, "param": self.params,
                "tag": self.tags, "status": self.statuses}[kind]


def nearest(name: str, candidates: Iterable[str]) -> str:
    """`did you mean 'x'?`, or the known names when none is close."""
    candidates = sorted(candidates)
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"known: {', '.join(candidates[:12])}{', …' if len(candidates) > 12 else ''}"


@dataclass
class Listing:
    """The runs to show, in order, and how many matched before the limit."""

    runs: list[dict[str, Any]]
    matched: int
    refreshed: int = 0
    warning: str | None = None
    names: Names = field(default_factory=Names)
    costs: dict[str, tuple[float, int]] = field(default_factory=dict)  # per experiment
    damaged: list[DamagedFile] = field(default_factory=list)  # index files skipped


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
    pending, kept, matched, names = [], [], 0, Names()
    costs: dict[str, list[float]] = {}
    damaged: list[DamagedFile] = []
    for entry in index.entries(store, filters.experiment, damaged=damaged):
        names.see(entry)
        if not filters.match(entry, with_status=False):
            continue
        if refresh and _may_change(entry):
            pending.append(entry)  # its status may change: the status filter comes after
            continue
        if filters.match(entry):
            matched += 1
            kept = _keep(kept, entry, column, descending, limit)
            add_cost(costs, entry)
    refreshed, warning = 0, None
    if pending:
        try:
            from .backends import refresh as refresh_statuses

            refreshed = refresh_statuses(store, pending, profile=profile)
        except SagebookError as exc:  # offline, or no AWS credentials: show what the store says
            warning = f"statuses of {len(pending)} cloud runs not refreshed: {exc}"
    for entry in pending:
        if entry.get("status"):  # a status its backend gave it (Lost, Completed…) is known
            names.statuses.add(entry["status"])
        if filters.match(entry):
            matched += 1
            kept = _keep(kept, entry, column, descending, limit)
            add_cost(costs, entry)
    names.check("--sort", column, ("column", "metric", "param", "tag"))
    for condition in filters.where:
        names.check("--where", condition.name, ("column", "metric", "param", "tag"))
    for status in filters.status:  # a status is known even in an empty store
        if status.lower() not in {s.lower() for s in names.statuses}:
            raise ConfigError.one("--status", None, f"no status {status!r}; "
                                                    f"{nearest(status, names.statuses)}")
    kept.sort(key=lambda e: sort_key(e, column, descending), reverse=descending)
    return Listing(kept[:limit] if limit else kept, matched, refreshed, warning, names,
                   {k: (v[0], int(v[1])) for k, v in costs.items()}, damaged)


def add_cost(costs: dict[str, list[float]], entry: dict[str, Any]) -> None:
    """Add a run's cost, when it has one, to its experiment's [total, runs]."""
    if isinstance(entry.get("cost"), int | float):
        total = costs.setdefault(entry.get("experiment", ""), [0.0, 0])
        total[0] += entry["cost"]
        total[1] += 1


def format_costs(costs: dict[str, tuple[float, int]]) -> str | None:
    """`cost: $12.34 over 5 runs (exp-a $10.00 in 3, exp-b $2.34 in 2)`, or None."""
    if not costs:
        return None
    total, runs = sum(c for c, _ in costs.values()), sum(n for _, n in costs.values())
    parts = ", ".join(f"{name} ${c:,.2f} in {n}" for name, (c, n) in sorted(costs.items()))
    return f"cost: ${total:,.2f} over {runs} runs with a known cost ({parts})"


def damage_lines(damaged: Sequence[DamagedFile], shown: int = 5) -> list[str]:
    """What to tell a reader about the store files it had to skip, and what to do."""
    if not damaged:
        return []
    lines = [terminal_text(f"skipped {d}", one_line=True) for d in damaged[:shown]]
    if len(damaged) > shown:
        lines.append(f"… and {len(damaged) - shown} more damaged files")
    lines.append("`sagebook fsck` lists every damaged file and what to do; "
                 "`sagebook list --reindex` rebuilds the index from the records")
    return lines


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


COLUMN_NAMES = ("run", "name", "experiment", "user", "created", "instance", "status",
                "duration", "cost", "commit", "note", "ended", "started", "host", "backend",
                "job_name", "parent", "image_uri", "updated")
_PREFIXES = {"metric": "metric", "metrics": "metric", "param": "param", "params": "param",
             "tag": "tag", "tags": "tag"}
_SECTIONS = {"metric": "final_metrics", "param": "params", "tag": "tags"}


def column_value(entry: dict[str, Any], column: str, now: _dt.datetime | None = None) -> Any:
    """A column of the table for one run: a column name, else a final metric, a parameter or
    a tag of that name (`metric.`, `param.`, `tag.` say which when names collide)."""
    if column == "run":
        return entry.get("run_id")
    if column == "instance":
        return entry.get("instance_type")
    if column == "duration":
        return duration(entry, now)
    if column == "commit":
        return entry.get("git_commit")
    if column in COLUMN_NAMES:
        return entry.get(column)
    kind, _, rest = column.partition(".")
    if rest and kind in _PREFIXES:
        return (entry.get(_SECTIONS[_PREFIXES[kind]]) or {}).get(rest)
    for section in _SECTIONS.values():
        value = (entry.get(section) or {}).get(column)
        if value is not None:
            return value
    return None


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
        _typed(ref, *ref.rstrip("/").rsplit("/", 2)[1:])
        return _open(lambda: Record.open_uri(ref.removeprefix("file://"), **store._options()),
                     ref)
    if ref.count("/") == 1:
        experiment, run_id = _typed(ref, *ref.split("/"))
        return _open(lambda: Record.open(store, experiment, run_id), ref)
    exact, partial = [], []
    for entry in index.entries(store):
        if ref in (entry["run_id"], entry.get("job_name")):
            exact.append(entry)
        elif ref in entry["run_id"]:
            partial.append(entry)
    matches = exact or partial
    if not matches:
        raise RunNotFound("\n".join([f"no run {ref!r} in {store.uri} (`sagebook list` shows "
                                     "its runs)", *_elsewhere(store)]))
    if len(matches) > 1:
        names = ", ".join(f"{e['experiment']}/{e['run_id']}" for e in matches[:5])
        raise RunNotFound(f"{ref!r} matches {len(matches)} runs ({names}"
                          f"{', …' if len(matches) > 5 else ''}): give more of the run id")
    return _open(lambda: Record.open(store, matches[0]["experiment"], matches[0]["run_id"]), ref)


def _typed(ref: str, experiment: str, run_id: str) -> tuple[str, str]:
    """The experiment and run id a user typed, when they can name a record at all: a name that
    is not one (`..`, a space) is no run, not a path to follow."""
    try:
        return (inputs.checked_name("experiment", experiment, ref),
                inputs.checked_name("run id", run_id, ref))
    except DamagedFile as exc:
        raise RunNotFound(f"no run {ref!r}: {exc.reason}") from None


def _open(opener: Callable[[], Record], ref: str) -> Record:
    try:
        return opener()
    except FileNotFoundError:
        raise RunNotFound(f"no record at {ref!r}: its manifest.json is missing") from None
    except DamagedFile as exc:
        raise DamagedFile(exc.where, f"{exc.reason} (`sagebook fsck` says what to do)"
                          ) from None
    except ValueError as exc:
        raise RunNotFound(f"the record {ref!r} has an unreadable manifest: {exc}") from None


def read_optional(record: Record, name: str, unreadable: list[str] | None = None,
                  limit: int = inputs.MAX_RECORD_BYTES) -> str | None:
    """A text file of the record, None when it has none; one that cannot be read, or holds
    more than `limit` bytes (read no further), is named in `unreadable` (when given) instead
    of failing the whole command."""
    data = bytearray()
    try:
        for chunk in record.store.read_chunks(f"{record.prefix}/{name}"):
            data += chunk
            if len(data) > limit:
                raise DamagedFile(record.url(name), f"too large (more than {limit:,} bytes)")
        return inputs.decode(bytes(data), record.url(name))
    except FileNotFoundError:
        return None
    except inputs.UnreadableFile as exc:  # not UTF-8: damaged, as a garbled manifest is
        if unreadable is None:
            raise DamagedFile(exc.path, exc.reason) from None
        unreadable.append(f"{name}: {exc.reason}")
        return None
    except StoreError as exc:
        if unreadable is None:
            raise
        unreadable.append(f"{name}: {exc}")
        return None


MAX_CURVE_POINTS = 2000  # per metric: a curve's shape at any length, in a page or a terminal
MAX_METRIC_SERIES = 100  # metric names read from one record; the rest are skipped
MAX_METRIC_LINE = 4096  # bytes: a point is some 100; a longer line is not one
CUT_HEAD, CUT_TAIL = 16 << 10, 48 << 10  # of a long text: its start, and its end (a traceback)

Point = tuple[int, float, float | None]  # step, value, timestamp

# A point on a line of its own as the log sink writes it (backends/logs.py json.dumps: name,
# value, then other keys), the `\n` before it included: such lines, all of a file sagebook
# wrote, are summarised a block at a time by this pattern, several times faster than a JSON
# parse per line. Its bounds keep a match under MAX_METRIC_LINE bytes (a longer line is not a
# point), and it takes no name with an escape (a quote, a control character, `\u…`) and no
# NaN: a block with any line it does not take is parsed as JSON, line by line, as
# metric_series reads it.
_NUMBER = rb"-?(?:0|[1-9][0-9]{0,300})(?:\.[0-9]{1,300})?(?:[eE][-+]?[0-9]{1,4})?"
_POINT = re.compile(rb'\n\{"name": "([^"\\\x00-\x1f]{0,1024})", "value": (%s)'
                    rb'(?:\}|, "[^\n]{0,2048}\})$' % _NUMBER, re.MULTILINE)


def metric_series(record: Record, limit: int | None = MAX_CURVE_POINTS,
                  totals: dict[str, int] | None = None) -> dict[str, list[Point]]:
    """name → [(step, value, timestamp)] from the record's metrics.jsonl, in file order; a point
    without a step of its own has its position in the series.

    The file is streamed and each curve downsampled as it is read, so time follows the file
    and memory follows `limit`, never the record: at most `limit` points per metric, chosen by
    largest-triangle-three-buckets with the first, last, lowest and highest points always
    among them (`lttb`). `totals`, when given, gets each metric's number of points before
    that; `limit=None` keeps every point (an export). Lines that are not a point are skipped:
    a torn last line while the run writes, a line over MAX_METRIC_LINE bytes, a value that is
    not a finite number, a name past the first MAX_METRIC_SERIES.
    """
    kept: dict[str, tuple[list[int], list[Point]]] = {}  # positions in the series, points
    counts: dict[str, int] = {}
    for lines in _lines(record, "metrics.jsonl", MAX_METRIC_LINE):
        for point in _parsed(lines):
            try:
                name, value = point["name"], float(point["value"])
                step, stamp = point.get("step"), point.get("timestamp")
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if type(name) is not str or not math.isfinite(value):
                continue
            curve = kept.get(name)
            if curve is None:
                if len(kept) >= MAX_METRIC_SERIES:
                    continue
                curve = kept[name] = ([], [])
            position = counts.get(name, 0)
            counts[name] = position + 1
            curve[0].append(position)
            curve[1].append((step if type(step) is int else position, value,
                             float(stamp) if type(stamp) in (int, float) else None))
            if limit is not None and len(curve[0]) >= 8 * limit:  # in batches: ~1 pass each
                kept[name] = _downsampled(curve, limit)
    if totals is not None:
        totals.update(counts)
    return {name: (curve if limit is None else _downsampled(curve, limit))[1]
            for name, curve in kept.items()}


def _downsampled(curve: tuple[list[int], list[Point]], limit: int
                 ) -> tuple[list[int], list[Point]]:
    positions, points = curve
    chosen = lttb(positions, [p[1] for p in points], limit)
    return [positions[i] for i in chosen], [points[i] for i in chosen]


def _parsed(lines: list[bytes]) -> list[Any]:
    """The JSON value of each line, parsed as one array (a third of the time of a parse per
    line); when some line is not JSON, line by line without it."""
    try:
        values = json.loads(b"[" + b",".join(lines) + b"]")
        if len(values) == len(lines):
            return values
    except ValueError:
        pass
    values = []
    for line in lines:
        try:
            values.append(json.loads(line))
        except ValueError:
            continue  # a torn last line while the run writes, or not a point at all
    return values


def _lines(record: Record, name: str, longest: int) -> Iterator[list[bytes]]:
    """The non-blank lines of a record's file, streamed a batch at a time; a line longer than
    `longest` bytes is skipped without ever being held whole. Nothing when there is no file."""
    pending, skipping = b"", False
    try:
        for chunk in record.store.read_chunks(f"{record.prefix}/{name}"):
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            if skipping and lines:  # the end of a line that was too long
                lines, skipping = lines[1:], False
            yield [line for line in lines if len(line) <= longest and line.strip()]
            if len(pending) > longest:
                pending, skipping = b"", True
    except FileNotFoundError:
        return
    if pending.strip() and not skipping:
        yield [pending]


def lttb(xs: Sequence[float], ys: Sequence[float], limit: int) -> list[int]:
    """The indices of at most `limit` of the points (xs ascending, ys) that keep the curve's
    shape: largest-triangle-three-buckets (Steinarsson, 2013) — the first and the last point,
    and from each bucket between them (equal spans of x) the point that spans the largest
    triangle with the point kept before it and the mean of the next bucket — plus the lowest
    and the highest point, which a chart must not lose (a loss spike, a best epoch). Buckets
    span x, not a count of points, so a curve already thinned (metric_series thins as it
    reads) keeps as many points per span as the new part. `limit` is at least 5."""
    n = len(xs)
    if n <= limit:
        return list(range(n))
    buckets = limit - 4  # the first, the last and the two extremes take the other four
    width = (xs[-1] - xs[0]) / buckets
    edges = [1]
    for bucket in range(1, buckets):
        edges.append(bisect.bisect_left(xs, xs[0] + bucket * width, edges[-1], n - 1))
    edges.append(n - 1)
    chosen = [0, ys.index(min(ys)), ys.index(max(ys)), n - 1]
    ax, ay = xs[0], ys[0]
    for bucket in range(buckets):
        start, end = edges[bucket], edges[bucket + 1]
        if start == end:
            continue
        after = max(edges[bucket + 2] if bucket + 2 <= buckets else n, end + 1)
        mean_x = sum(xs[end:after]) / (after - end)
        mean_y = sum(ys[end:after]) / (after - end)
        dx, dy = ax - mean_x, mean_y - ay
        areas = [abs(dx * (y - ay) - (ax - x) * dy)
                 for x, y in zip(xs[start:end], ys[start:end], strict=True)]
        best = start + areas.index(max(areas))
        chosen.append(best)
        ax, ay = xs[best], ys[best]
    return sorted(set(chosen))


def read_cut(record: Record, name: str, head: int = CUT_HEAD, tail: int = CUT_TAIL,
             unreadable: list[str] | None = None) -> str | None:
    """A text file of the record as `read_optional` reads it, but only its first `head` and
    last `tail` bytes, with a line between them saying how much was left out and where the
    whole file is: what a reader holds and shows follows the cut, never the file."""
    first, last, size = bytearray(), bytearray(), 0
    try:
        for chunk in record.store.read_chunks(f"{record.prefix}/{name}"):
            size += len(chunk)
            taken = max(head - len(first), 0)
            first += chunk[:taken]
            last += chunk[taken:]
            del last[:max(len(last) - tail, 0)]
    except FileNotFoundError:
        return None
    except StoreError as exc:
        if unreadable is None:
            raise
        unreadable.append(f"{name}: {exc}")
        return None
    left_out = size - len(first) - len(last)
    if not left_out:
        return (first + last).decode(errors="replace")
    # whole characters on each side of the cut: no half of a UTF-8 sequence shown as U+FFFD
    start = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(bytes(first))
    end = bytes(last).lstrip(_UTF8_CONTINUATION).decode(errors="replace")
    return (f"{start}\n[… {left_out:,} bytes left out here: the whole text is "
            f"{record.url(name)} …]\n{end}")


_UTF8_CONTINUATION = bytes(range(0x80, 0xC0))


@dataclass
class MetricSummary:
    """One metric of a run as `show` gives it: how many points, the lowest, highest and last."""

    points: int = 0
    low: float = math.inf
    high: float = -math.inf
    last: float = math.nan

    def add(self, values: list[float]) -> None:
        """Take the next `values` of the metric (finite numbers, in file order; at least one)."""
        self.points += len(values)
        self.low, self.high = min(self.low, min(values)), max(self.high, max(values))
        self.last = values[-1]


def metric_summary(record: Record, unreadable: list[str] | None = None
                   ) -> dict[str, MetricSummary]:
    """name → MetricSummary of the record's metrics.jsonl, streamed: `show`'s figures in time
    that follows the file and memory that does not (a block of it, a few names). The points
    counted are those metric_series reads: finite values of well-formed lines no longer than
    MAX_METRIC_LINE, for the first MAX_METRIC_SERIES names. Lines skipped for their length, and
    a file that cannot be read, are named in `unreadable` (when given; else it raises)."""
    summary: dict[str, MetricSummary] = {}
    too_long: list[int] = []  # the length of each line skipped for it
    try:
        for block in _line_blocks(record, "metrics.jsonl", MAX_METRIC_LINE, too_long):
            for name, values in _block_points(block, too_long).items():
                # a finite sum has no NaN or infinity among its terms: the common case, in C
                finite = values if math.isfinite(sum(values)) else \
                    [v for v in values if math.isfinite(v)]
                if finite and (name in summary or len(summary) < MAX_METRIC_SERIES):
                    summary.setdefault(name, MetricSummary()).add(finite)
    except StoreError as exc:
        if unreadable is None:
            raise
        unreadable.append(f"metrics.jsonl: {exc}")
    if too_long and unreadable is not None:
        unreadable.append(f"metrics.jsonl: lines over {MAX_METRIC_LINE:,} bytes, skipped as "
                          f"not points: {len(too_long):,} (the longest {max(too_long):,} bytes)")
    return summary


def _block_points(block: bytes, too_long: list[int]) -> dict[str, list[float]]:
    """The values of each metric in a block of lines (`_line_blocks`), in order; the length of
    each line skipped for it goes to `too_long`."""
    found = _POINT.findall(block)
    if len(found) == block.count(b"\n"):  # every line in the log sink's shape
        grouped: dict[bytes, list[bytes]] = {}
        for name, value in found:
            grouped.setdefault(name, []).append(value)
        try:
            return {name.decode(): list(map(float, values)) for name, values in grouped.items()}
        except UnicodeDecodeError:
            pass  # as JSON would not read it either: line by line, skipping those lines
    lines = block.split(b"\n")[1:]
    too_long += [len(line) for line in lines if len(line) > MAX_METRIC_LINE]
    points: dict[str, list[float]] = {}
    for point in _parsed([line for line in lines if line.strip() and
                          len(line) <= MAX_METRIC_LINE]):
        try:
            name, value = point["name"], float(point["value"])
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if type(name) is str:
            points.setdefault(name, []).append(value)
    return points


def _line_blocks(record: Record, name: str, longest: int, too_long: list[int]
                 ) -> Iterator[bytes]:
    """A record's file streamed as blocks of whole lines, each line after its `\n` (the first
    one too): a block holds what one read brought, and a line longer than `longest` bytes that
    runs past it is dropped as it is read, never held whole (its length goes to `too_long`).
    Nothing when there is no file."""
    # the unfinished line, after the newline before it; or the bytes so far of a line too
    # long to keep
    pending, skipped = b"\n", 0
    try:
        for chunk in record.store.read_chunks(f"{record.prefix}/{name}"):
            if skipped:  # inside a line too long to keep: on from its end
                end = chunk.find(b"\n")
                if end < 0:
                    skipped += len(chunk)
                    continue
                too_long.append(skipped + end)
                pending, chunk, skipped = b"", chunk[end:], 0
            data = pending + chunk
            cut = data.rfind(b"\n")
            if cut > 0:
                yield data[:cut]
            pending = data[cut:]
            if len(pending) > longest + 1:
                pending, skipped = b"", len(pending) - 1
    except FileNotFoundError:
        return
    if skipped:
        too_long.append(skipped)
    elif len(pending) > 1:
        yield pending


@dataclass
class RunDetails:
    """Everything `show` prints about one run."""

    record: Record
    job_config: str | None
    training_config: str | None
    request: dict[str, Any] | None
    metrics: dict[str, list[tuple[int | None, float, float | None]]]  # curves, downsampled
    failure: str | None
    files: list[str]
    report_page: str | None
    annotations: dict[str, Any] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # "file: why", for files skipped
    lost: str | None = None  # why an unfinished local run has lost its launcher
    summary: dict[str, MetricSummary] = field(default_factory=dict)  # without curves: show

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
            "metrics": {name: asdict(figures)
                        for name, figures in self.summary.items()},
            "failure": self.failure,
            "artifacts": self.artifacts(),
            "report_page": self.report_page,
            "annotations": self.annotations,
            "unreadable": self.unreadable,
            "lost": self.lost,
        }


def details(record: Record, *, curves: bool = True) -> RunDetails:
    """One run's record, each file read within bounds: configs and request up to
    MAX_CONFIG_BYTES (larger is named unreadable), the failure text cut (`read_cut`). Its
    metrics as downsampled curves (`metric_series`: the report, the export), or with `curves`
    false as one summary each (`metric_summary`: `show`, several times faster)."""
    limit = inputs.MAX_CONFIG_BYTES  # a config, a request: never more, as launch reads them
    files = [k[len(record.prefix) + 1:] for k in record.store.list(record.prefix)]
    unreadable: list[str] = []
    request_text = read_optional(record, "request.json", unreadable, limit)
    request = None
    if request_text:
        try:
            request = parse_json(request_text, "request.json")
        except DamagedFile as exc:
            unreadable.append(str(exc))
    page = run_page_key(record.experiment, record.run_id)
    return RunDetails(
        record=record,
        job_config=read_optional(record, "sagemaker_config.yaml", unreadable, limit),
        training_config=read_optional(record, "config/training_config.yaml", unreadable, limit),
        request=request,
        metrics=metric_series(record) if curves else {},
        summary={} if curves else metric_summary(record, unreadable),
        failure=read_cut(record, "failure.txt", unreadable=unreadable),
        files=files,
        report_page=record.store.url(page) if record.store.exists(page) else None,
        annotations=current_annotations(record) if any(
            f.startswith(f"{ANNOTATIONS}/") for f in files) else
        {"tags": dict(record.manifest.get("tags") or {}), "notes": []},
        unreadable=unreadable,
        lost=_lost(record),
    )


def _lost(record: Record) -> str | None:
    """Why a local run's launcher is gone (its record still says it runs), or None."""
    from .backends import backend_class
    from .backends.local import ProcessRun

    cls = backend_class(str(record.manifest.get("instance_type") or ""))
    if cls is None or not issubclass(cls, ProcessRun) or record.status in TERMINAL:
        return None
    from .backends import liveness

    return liveness.lost(record.store, index.summarize(record.manifest))


# --------------------------------------------------------------------------------------------
# Annotating after launch


def annotate(record: Record, *, tags: Iterable[str] = (), remove: Iterable[str] = (),
             note: str | None = None, name: str | None = None) -> dict[str, Any]:
    """Tag, untag, note or rename a run: one immutable event in its record (and the index),
    so annotating is safe while the run, or a teammate, writes. A value shaped like a
    credential (a token, a URL with a password) is refused: the team reads every record.
    Returns the fields set."""
    fields: dict[str, Any] = {}
    for item in tags:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError.one("tag", None, f"expected KEY=VALUE, got {item!r} "
                                               "(--remove KEY removes a tag)")
        fields[f"tags.{key.strip()}"] = value
    for key in remove:
        fields[f"tags.{key.strip()}"] = None
    if note is not None:
        if not note.strip():
            raise ConfigError.one("note", None, "the note is empty")
        fields["note"] = note
    if name is not None:
        if not name.strip():
            raise ConfigError.one("rename", None, "the name is empty")
        fields["name"] = " ".join(name.split())
    if not fields:
        raise ConfigError.one("tag", None, "nothing to do: give KEY=VALUE or --remove KEY")
    for key, value in fields.items():
        kind = token_kind(key) or (token_kind(value) if isinstance(value, str) else None)
        if kind:
            raise ConfigError.one(key.partition(".")[0], key if "." in key else None,
                                  f"looks like {kind}; the record is shared with the team, so "
                                  "store the value in SSM Parameter Store or Secrets Manager and "
                                  "write its ARN instead")
    record.annotate(fields)
    return fields


def current_annotations(record: Record) -> dict[str, Any]:
    """The run's name, latest note, tags (the job config's, then those added or removed since)
    and every note with who wrote it when, from its annotation events."""
    state: dict[str, Any] = {"tags": dict(record.manifest.get("tags") or {}), "notes": []}
    for event in record.annotations():
        for key, value in (event.get("set") or {}).items():
            if key.startswith("tags."):
                if value is None:
                    state["tags"].pop(key[5:], None)
                else:
                    state["tags"][key[5:]] = value
            else:
                state[key] = value
            if key == "note":
                state["notes"].append({"time": event.get("time"), "user": event.get("user"),
                                       "note": value})
    return state


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


def diff(a: Record, b: Record, unreadable: list[str] | None = None) -> list[DiffRow]:
    """Both runs side by side: the run itself, both configs key by key, final metrics.

    A config that cannot be read (garbled, not YAML, too large, not a mapping) is named in
    `unreadable`, when given, and its section left out: one teammate's damaged file does not
    hide what the rest of the two records says. Without `unreadable` it raises."""
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
        ("cost (USD)", lambda m: (m.get("cost") or {}).get("usd")),
        ("user", lambda m: m.get("user")),
        ("overrides", lambda m: ", ".join((m.get("config") or {}).get("overrides") or [])),
    ):
        rows.append(DiffRow("run", key, get(ma), get(mb)))
    for section, name in (("job", "sagemaker_config.yaml"),
                          ("training", "config/training_config.yaml")):
        fa, fb = (_config_keys(r, name, unreadable) for r in (a, b))
        if fa is None or fb is None:
            continue
        for key in sorted(set(fa) | set(fb)):
            rows.append(DiffRow(section, key, fa.get(key), fb.get(key)))
    metrics_a, metrics_b = ma.get("final_metrics") or {}, mb.get("final_metrics") or {}
    for key in sorted(set(metrics_a) | set(metrics_b)):
        rows.append(DiffRow("metrics", key, metrics_a.get(key), metrics_b.get(key)))
    return rows


def _config_keys(record: Record, name: str, unreadable: list[str] | None
                 ) -> dict[str, Any] | None:
    """The record's config `name`, flattened (`flatten`); None when it cannot be read and
    `unreadable` takes its name and why."""
    where = record.url(name)
    try:
        data = _yaml(read_optional(record, name, limit=inputs.MAX_CONFIG_BYTES), where)
        if not isinstance(data, dict):
            raise DamagedFile(where, f"not a YAML mapping (a {type(data).__name__})")
        return flatten(data)
    except (StoreError, UnicodeDecodeError) as exc:  # DamagedFile is a StoreError
        if unreadable is None:
            raise
        unreadable.append(f"{where}: not UTF-8 text" if isinstance(exc, UnicodeDecodeError)
                          else str(exc))
        return None


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
#
# A record holds whatever its writer put there, and a rerun runs its code, image and settings
# with the reader's credentials. So a rerun of someone else's record says what will run, and
# refuses the settings that would hand the reader's credentials or data to that code until the
# reader says so. Where today's code is comes from the reader's own job config, never a record.

# Where a job writes: its record, outputs, checkpoints, TensorBoard files, uploads, configs.
WRITTEN_LOCATIONS = ("experiments_uri", "output_uri", "checkpoint_uri", "tensorboard_uri",
                     "uploads_uri", "config_uri")
MAX_SHOWN_SETTINGS = 20  # settings listed as differing from the reader's config


class UntrustedRecord(SagebookError):
    """A rerun of someone else's record, refused: the settings named, one a line, would hand
    the reader's credentials or data to the record's code."""

    def __init__(self, heading: str, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join([heading, *(f"  {problem}" for problem in problems)]))


def own_config(store: Store, config: str | os.PathLike[str] | None = None) -> Path | None:
    """The job config of whoever reads `store`: `-c` when given, else the job config of the
    project around this folder that keeps its records in `store`; None when there is none."""
    if config is not None:
        return Path(config)
    folder = project.root()
    if folder is None:
        return None
    stores = {uri.rstrip("/"): path for uri, path in project.record_stores(folder).items()}
    return stores.get(store.uri.rstrip("/"))


def own_settings(path: Path) -> dict[str, Any]:
    """The settings of the reader's job config at `path` as a launch sees them (defaults filled
    in, locations resolved from the config's folder), without its training config: what a
    rerun compares a record's settings with."""
    from pydantic import ValidationError  # heavy: only a rerun needs the job config's model

    from .config import JobConfig

    data = _read_job_settings(path)
    data.pop("sweep", None)
    try:
        settings = JobConfig.model_validate(data).model_dump(mode="json")
    except ValidationError:  # an invalid config of the reader's still names its places
        settings = {"source_dir": JobConfig.model_fields["source_dir"].default, **data}
    for key in ("source_dir", "training_config", *WRITTEN_LOCATIONS):
        if isinstance(settings.get(key), str):
            settings[key] = _resolved(settings[key], path.parent)
    channels = settings.get("channels")
    if isinstance(channels, dict):
        settings["channels"] = {
            name: {**channel, "uri": _resolved(channel["uri"], path.parent)}
            if isinstance(channel, dict) and isinstance(channel.get("uri"), str)
            else _resolved(channel, path.parent) if isinstance(channel, str) else channel
            for name, channel in channels.items()}
    return settings


def _resolved(location: str, base: Path) -> str:
    """A location as a launch resolves it: `s3://…` as it is, a local path from `base`."""
    if "://" in location:
        return location
    return str(inputs.absolute(base / Path(location).expanduser()))


def _place(location: str) -> str:
    """What a location belongs to: its bucket (`s3://bucket`), or the local folder itself."""
    if location.startswith("s3://"):
        return "s3://" + location[5:].split("/", 1)[0]
    return str(inputs.absolute(location.removeprefix("file://")))


def _places(settings: dict[str, Any], store: Store) -> set[str]:
    """The buckets and folders the reader's config names, and the store they read."""
    found = {_place(store.uri)}
    channels = settings.get("channels") if isinstance(settings.get("channels"), dict) else {}
    for value in [*(settings.get(key) for key in WRITTEN_LOCATIONS),
                  *(_channel_uri(channel) for channel in channels.values())]:
        if isinstance(value, str):
            found.add(_place(value))
    return found


def _within(location: Any, places: set[str]) -> bool:
    """Whether a location read from a record is in one of `places`: the same bucket, or the
    same local folder or one below it. A relative local path is never: a launch resolves it
    from wherever the record's config is written, not from here."""
    if not isinstance(location, str):
        return False
    if location.startswith("s3://"):
        return _place(location) in places
    path = location.removeprefix("file://")
    if not os.path.isabs(path):
        return False
    place = Path(_place(path))
    return any(not p.startswith("s3://") and (Path(p) == place or Path(p) in place.parents)
               for p in places)


def _channel_uri(channel: Any) -> Any:
    return channel.get("uri") if isinstance(channel, dict) else channel


def _shown(value: Any) -> str:
    """A value read from a record, on one line, as it is (no terminal control), clipped."""
    text = terminal_text("not set" if value is None else value if isinstance(value, str)
                         else json.dumps(value, default=str), one_line=True)
    return text if len(text) <= 120 else text[:117] + "..."


def handed_over(job: dict[str, Any], mine: dict[str, Any], places: set[str],
                changed: set[str], owner: str) -> list[str]:
    """The settings of someone else's job config `job` that would hand the reader's
    credentials or data to its code, one line each: their AWS credentials or profile, a bucket
    or folder the reader's config does not name to write to, a local folder to read. Keys the
    reader set (`-o`, in `changed`) are the reader's own."""
    lines = []
    if job.get("pass_aws_credentials") not in (None, False) and \
            "job.pass_aws_credentials" not in changed:
        lines.append(f"job.pass_aws_credentials: {_shown(job['pass_aws_credentials'])} would "
                     f"give {owner}'s training code your AWS credentials")
    if job.get("profile") not in (None, mine.get("profile")) and "job.profile" not in changed:
        lines.append(f"job.profile: {_shown(job['profile'])} would run it with that AWS "
                     f"profile of yours (your config's: {_shown(mine.get('profile'))})")
    for key in WRITTEN_LOCATIONS:
        value = job.get(key)
        if value is not None and f"job.{key}" not in changed and not _within(value, places):
            lines.append(f"job.{key}: {_shown(value)} is not a bucket or folder your config "
                         f"names: {owner}'s training code would write there with your "
                         "credentials")
    channels = job.get("channels") if isinstance(job.get("channels"), dict) else {}
    for name, channel in channels.items():
        uri = _channel_uri(channel)
        keys = {"job.channels", f"job.channels.{name}", f"job.channels.{name}.uri"}
        if isinstance(uri, str) and uri.startswith("s3://") or keys & changed:
            continue  # S3 data is read with the job's role, as any teammate's job reads it
        if not _within(uri, places):
            lines.append(f"job.channels.{_shown(name)}: {_shown(uri)} is not a folder your "
                         f"config names: {owner}'s training code would read it")
    return lines


def differing_settings(job: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """`key: theirs (yours: …)` for each setting of `job` that differs from the reader's."""
    theirs, yours = (flatten({k: v for k, v in settings.items() if k != "training_config"})
                     for settings in (job, mine))
    return [f"job.{_shown(key)}: {_shown(theirs.get(key))} (yours: {_shown(yours.get(key))})"
            for key in sorted(set(theirs) | set(yours), key=str)
            if theirs.get(key) != yours.get(key)]


def rerun(record: Record, overrides: Iterable[str] = (), *, resume: bool = False,
          code: str = "recorded", trust: bool = False, config: Path | None = None,
          **launch_options: Any) -> Any:
    """Launch a new run from a record: the same configs as launched, and the same code, data
    and image as the parent sent (its content-addressed code package and data uploads, its
    image by digest), with `overrides` on top; so its request equals the parent's but for
    names, ids, run tags and times. `code="current"` runs today's code instead: the
    `source_dir` of the reader's job config `config` (see `own_config`), which is also what the
    recorded code is compared with. With `resume`, the run starts from a copy of the parent's
    checkpoints. The new record names its parent and the commit the parent ran.

    Someone else's record is described first (whose, which code, image and settings), and
    refused (UntrustedRecord) when its settings would hand the reader's credentials or data to
    its code, unless `trust` or an override sets them."""
    from .launch import launch

    job_text = read_optional(record, "sagemaker_config.yaml")
    training_text = read_optional(record, "config/training_config.yaml")
    if job_text is None or training_text is None:
        raise RunNotFound(f"{record.uri} has no sagemaker_config.yaml and "
                          "config/training_config.yaml to re-run from")
    if code not in ("recorded", "current"):
        raise ConfigError.one("--code", None, f"expected recorded or current, got {code!r}")
    echo = launch_options.get("echo", print)
    overrides = list(overrides)
    changed = {o.partition("=")[0] for o in overrides}
    where = record.url("sagemaker_config.yaml")
    job = _yaml(job_text, where)
    if not isinstance(job, dict):
        raise DamagedFile(where, "not a job config (a mapping of settings)")
    mine = own_settings(config) if config is not None else {}
    source = Path(mine["source_dir"]) if isinstance(mine.get("source_dir"), str) else None
    if code == "current" and "job.source_dir" not in changed and source is None:
        raise ConfigError.one("--code current", None, "runs today's code, the source_dir of "
                              "your job config, and no job config of yours keeps its records "
                              "in this store: give yours with -c")
    if record.manifest.get("user") != user():
        _check_trust(record, job, mine, config, changed, code, trust, echo)
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
    recorded = _recorded(record, job, overrides, code, echo, source)
    parent["code"] = "recorded" if recorded.code_dir else "current"
    if code == "current" and "job.source_dir" not in changed:
        overrides = [f"job.source_dir={source}", *overrides]
    if resume:  # first, so that an explicit -o job.resume_from=… still wins
        overrides = [f"job.resume_from={record.experiment}/{record.run_id}", *overrides]
    # The record keeps the job config next to `config/training_config.yaml`; the config loader
    # wants it next to the job config, as `training_config: training_config.yaml` says.
    with tempfile.TemporaryDirectory(prefix=f"sagebook-rerun-{record.run_id}-") as folder:
        job_path = Path(folder, "sagemaker_config.yaml")
        job_path.write_text(job_text)
        Path(folder, "training_config.yaml").write_text(training_text)
        return launch(job_path, list(overrides), extra_manifest={"parent": parent},
                      recorded=recorded, **launch_options)


def _check_trust(record: Record, job: dict[str, Any], mine: dict[str, Any],
                 config: Path | None, changed: set[str], code: str, trust: bool,
                 echo: Callable[[str], None]) -> None:
    """Say what a rerun of someone else's record runs; refuse what it would hand over."""
    owner = _shown(record.manifest.get("user") or "an unknown user")
    package = _code_package(record)
    request = _request(record)
    image = (request.get("AlgorithmSpecification") or {}).get("TrainingImage") \
        if isinstance(request.get("AlgorithmSpecification"), dict) else None
    lines = [f"run {record.experiment}/{record.run_id} is {owner}'s record, not yours: a "
             f"rerun runs {owner}'s code with your credentials",
             "  code:  " + ("today's, the source_dir of your job config (--code current)"
                            if code == "current" else
                            f"{owner}'s code package {package['digest']}" if package else
                            "the image's own (the record has no code package)"),
             "  image: " + (_shown(image or record.manifest.get("image_uri"))
                            if image or record.manifest.get("image_uri") else
                            "none (instance_type local: a process on this machine)"
                            if job.get("instance_type") == "local" else "not recorded")]
    if config is None:
        lines.append("  no job config of yours keeps its records in this store, to compare "
                     "its settings with (give yours with -c)")
    else:
        differ = differing_settings(job, mine)
        lines.append(f"  settings that differ from your {config}:" if differ else
                     f"  its settings are those of your {config}")
        lines += [f"    {row}" for row in differ[:MAX_SHOWN_SETTINGS]]
        if len(differ) > MAX_SHOWN_SETTINGS:
            lines.append(f"    … and {len(differ) - MAX_SHOWN_SETTINGS} more")
    for line in lines:
        echo(f"[sagebook] {line}")
    refused = handed_over(job, mine, _places(mine, record.store), changed, owner)
    if refused and not trust:
        raise UntrustedRecord(
            f"rerun of {owner}'s record {record.experiment}/{record.run_id} refused: these "
            "settings would hand your credentials or data to its code (--trust-record runs "
            "it as recorded; -o KEY=VALUE sets one yourself)", refused)


def _code_package(record: Record) -> dict[str, Any] | None:
    """The record's code upload (channel, digest, uri), its digest checked: it becomes a
    folder name."""
    entries = record.manifest.get("uploads")
    package = next((e for e in entries if isinstance(e, dict) and e.get("kind") == "code"),
                   None) if isinstance(entries, list) else None
    if package is not None:
        inputs.checked_name("digest", package.get("digest"), record.url("manifest.json"))
    return package


def _request(record: Record) -> dict[str, Any]:
    """The record's CreateTrainingJob request, {} when it has none."""
    name = "request.json"
    request = parse_json(read_optional(record, name) or "{}", record.url(name))
    return request if isinstance(request, dict) else {}


def _recorded(record: Record, job: dict[str, Any], overrides: list[str], code: str,
              echo: Callable[[str], None], source: Path | None) -> Any:
    """What of the parent's record the rerun sends again: whatever an override does not
    change. Says when today's code (`source`, the source_dir of the reader's job config)
    differs from the code the parent ran."""
    from .backends import uploads
    from .backends.local import work_dir
    from .launch import Recorded

    changed = {o.partition("=")[0] for o in overrides}
    entries = record.manifest.get("uploads")
    entries = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    options = store_options(job)
    channels = {e["channel"]: {**e, "reused_from": f"{record.experiment}/{record.run_id}"}
                for e in entries if e.get("kind") == "data" and isinstance(e.get("channel"), str)
                and not changed & {"job.channels", f"job.channels.{e['channel']}"}}
    image = None if "job.image_uri" in changed else (
        _request(record).get("AlgorithmSpecification") or {}).get("TrainingImage")
    package = _code_package(record)
    if package is None or "job.source_dir" in changed:
        return Recorded(channels=channels, image_uri=image)
    today = uploads.code_digest(source) if source is not None and source.is_dir() else None
    if today != package["digest"]:
        what = (f"the training code in {source} differs from the code run {record.run_id} ran"
                if today else
                f"{source}, your job config's source_dir, is not a folder" if source else
                "no job config of yours keeps its records in this store (give yours with -c), "
                f"so today's code is not compared with the code run {record.run_id} ran")
        echo(f"[sagebook] note: {what}; "
             + ("this rerun runs the recorded code (--code current runs today's)"
                if code == "recorded" else "--code current: this rerun runs today's"))
    if code == "current":
        return Recorded(channels=channels, image_uri=image)
    try:
        code_dir = uploads.unpack_code(package.get("uri"), package["digest"], work_dir("_code"),
                                       options, record.url("manifest.json"))
    except FileNotFoundError as exc:
        raise RunNotFound(f"run {record.experiment}/{record.run_id}'s code package is gone "
                          f"({exc}): rerun with --code current to run today's code") from None
    except DamagedFile as exc:
        raise DamagedFile(exc.where, f"{exc.reason}; run {record.experiment}/{record.run_id}'s "
                          "code package cannot be used (--code current runs today's code)"
                          ) from None
    return Recorded(code_dir=code_dir, channels=channels, image_uri=image,
                    git={**(record.manifest.get("git") or {}),
                         "note": f"the code run {record.run_id} ran, from its code package"})


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


def differing_params(rows: list[dict[str, Any]]) -> list[str]:
    """The parameters whose values are not the same in every one of `rows`, in key order."""
    keys = sorted({k for e in rows for k in (e.get("params") or {})})
    return [k for k in keys
            if len({json.dumps((e.get("params") or {}).get(k)) for e in rows}) > 1]


STATUS_COLOURS = {"Completed": "32", "Failed": "31", "Lost": "31", "Stopped": "33",
                  "Interrupted": "33", "Stopping": "33", "InProgress": "36", "Starting": "36"}


def use_colour(stream: Any) -> bool:
    """Colour on a terminal only, and never under NO_COLOR (https://no-color.org)."""
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


def format_number(value: Any, places: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    return f"{value:.{places}f}" if isinstance(value, float) else str(value)


def format_param(value: Any) -> str:
    """A parameter as the user wrote it: 0.01, not 0.0100."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return format_number(value)


def format_cost(value: Any) -> str:
    return f"${value:,.2f}" if isinstance(value, int | float) else ""


def format_table(rows: list[dict[str, Any]], metrics: list[str], params: Sequence[str] = (),
                 colour: bool = False, sweep_parameters: Sequence[str] = ()) -> str:
    """The runs as a text table: numbers right-aligned, each metric at one precision; a name,
    cost, tags and note column only when a run has one; `sweep_parameters`: a sweep's searched
    keys, as columns of their own before the metrics. Every cell is terminal text of one line
    (printing.terminal_text): the status colours are the only escape sequences it holds."""
    now = _dt.datetime.now(_dt.timezone.utc)
    optional = {key: any(e.get(key) for e in rows) for key in ("name", "cost", "tags", "note")}
    columns: list[tuple[str, bool, Callable[[dict[str, Any]], str]]] = [
        ("RUN", False, lambda e: e["run_id"]),
        *([("NAME", False, lambda e: clip(e.get("name") or "", 30))] if optional["name"] else []),
        ("EXPERIMENT", False, lambda e: e.get("experiment", "")),
        ("USER", False, lambda e: e.get("user", "")),
        ("CREATED", False, lambda e: _created(e)),
        ("INSTANCE", False, lambda e: e.get("instance_type", "")),
        ("STATUS", False, lambda e: e.get("status", "")),
        ("DURATION", True, lambda e: format_duration(duration(e, now))),
        *([("COST", True, lambda e: format_cost(e.get("cost")))] if optional["cost"] else []),
        *((p, False, lambda e, p=p: _cell((e.get("parameters") or {}).get(p)))
          for p in sweep_parameters),
        *((m.upper(), True, lambda e, m=m: format_number((e.get("final_metrics") or {}).get(m)))
          for m in metrics),
        *((p, _numeric(rows, p), lambda e, p=p: format_param((e.get("params") or {}).get(p)))
          for p in params),
        ("COMMIT", False, format_commit),
        *([("TAGS", False, lambda e: clip(",".join(
            f"{k}={v}" for k, v in sorted((e.get("tags") or {}).items())), 40))]
          if optional["tags"] else []),
        *([("NOTE", False, lambda e: clip(e.get("note") or "", 40))]
          if optional["note"] else []),
    ]
    table = [[name for name, _, _ in columns], *([cell(e) for _, _, cell in columns] for e in rows)]
    # headers too: metric, parameter and tag names are the record's words
    table = [[terminal_text(text, one_line=True) for text in line] for line in table]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    status_at = [name for name, _, _ in columns].index("STATUS")
    lines = []
    for n, line in enumerate(table):
        cells = []
        for i, (text, width) in enumerate(zip(line, widths, strict=True)):
            padded = text.rjust(width) if columns[i][1] and n else text.ljust(width)
            if colour and n and i == status_at and text in STATUS_COLOURS:
                padded = f"\033[{STATUS_COLOURS[text]}m{text}\033[0m" + " " * (width - len(text))
            cells.append(padded)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _numeric(rows: list[dict[str, Any]], param: str) -> bool:
    values = [(e.get("params") or {}).get(param) for e in rows]
    return all(v is None or (isinstance(v, int | float) and not isinstance(v, bool))
               for v in values)


def _created(entry: dict[str, Any]) -> str:
    created = parse_time(entry.get("created"))
    return created.strftime("%Y-%m-%d %H:%M") if created else ""


def clip(text: str, width: int) -> str:
    """One line of at most `width` characters, `…` marking a cut."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def describe_cost(cost: dict[str, Any]) -> str:
    """`$0.10 (771 s × 2 × ml.m5.large at $0.115/h, table of 2026-09-24); spot saved …`."""
    source = "price list" if cost.get("price_source") == "cache" else "table"
    text = (f"${cost['usd']:,.2f} ({cost['billable_seconds']} s billable × "
            f"{cost['instance_count']} × {cost['instance_type']} at ${cost['usd_per_hour']:g}/h"
            f" in {cost['region']}, {source} of {cost.get('price_date')})")
    if cost.get("spot_saved_usd") is not None:
        text += (f"; spot saved ${cost['spot_saved_usd']:,.2f} "
                 f"({cost.get('spot_savings_percent')}% of {cost['training_seconds']} s)")
    if cost.get("warm_pool_usd"):
        text += (f"; warm pool kept {cost['warm_pool_seconds']} s: "
                 f"${cost['warm_pool_usd']:,.2f}")
    return text


def format_details(info: RunDetails) -> str:
    """What `show` prints, laid out line by line: each line is terminal text of its own
    (`terminal_lines`), whatever the record's fields hold."""
    from .backends import liveness

    m = info.manifest
    summary = index.summarize(m)
    git = m.get("git") or {}
    parent = m.get("parent") or {}
    notes = info.annotations
    lines = [
        f"run:         {info.record.run_id}",
        *([f"name:        {notes['name']}"] if notes.get("name") else []),
        f"experiment:  {info.record.experiment}",
        f"status:      {m.get('status')}" if not info.lost else
        f"status:      Lost: {info.lost} (the record says {m.get('status')}); "
        + liveness.cleanup_hint(m),
        f"user:        {m.get('user')}@{m.get('host')}",
        f"created:     {m.get('created')}",
        f"ended:       {m.get('ended') or ''}",
        f"duration:    {format_duration(duration(summary))}",
        *([f"cost:        {describe_cost(m['cost'])}"] if m.get("cost") else []),
        f"instance:    {m.get('instance_type')} ({m.get('backend')})",
        f"job:         {m.get('job_name')}",
        f"launched:    via {m.get('launched_via')}",
        f"image:       {(m.get('image') or {}).get('uri') or m.get('image_uri') or ''}",
        f"git:         {git.get('commit') or git.get('note') or ''}"
        f"{' (dirty)' if git.get('dirty') else ''}"
        f"{' on ' + git['branch'] if git.get('branch') else ''}",
        f"overrides:   {', '.join((m.get('config') or {}).get('overrides') or [])}",
        f"record:      {info.record.uri}",
        *(f"unreadable:  {item}" for item in info.unreadable),
    ]
    if notes.get("tags"):
        lines.append("tags:        " + ", ".join(f"{k}={v}" for k, v in
                                                 sorted(notes["tags"].items())))
    if parent.get("run_id"):
        lines.append(f"parent:      {parent.get('experiment')}/{parent['run_id']}"
                     + (f" ({parent['code']} code)" if parent.get("code") else ""))
    code = next((u for u in m.get("uploads") or [] if u.get("kind") == "code"), None)
    if code:
        lines.append(f"code:        {code.get('uri')} ({code.get('source')})")
    checkpoints = m.get("checkpoints") or {}
    if checkpoints.get("uri"):
        resumed = checkpoints.get("resumed_from_run") or checkpoints.get("resumed_from")
        lines.append(f"checkpoints: {checkpoints['uri']}"
                     + (f" (resumed from {resumed})" if resumed else ""))
    sweep = m.get("sweep") or {}
    if sweep.get("id"):
        settings = ", ".join(f"{k}={_cell(v)}" for k, v in (sweep.get("parameters") or {}).items())
        lines.append(f"sweep:       {sweep['id']} (trial {sweep.get('trial')}: {settings})")
    if notes.get("notes"):
        lines += ["", "notes:"]
        for item in notes["notes"]:
            text = str(item["note"]).splitlines() or [""]
            lines.append(f"  {item.get('time')}  {item.get('user')}: {text[0]}")
            lines += [f"    {line}" for line in text[1:]]
    lines += ["", "status timeline:"]
    start = parse_time(m.get("created"))
    for step in m.get("status_history") or []:
        at = parse_time(step.get("time"))
        offset = f"+{format_duration((at - start).total_seconds())}" if at and start else ""
        lines.append(f"  {step.get('time')}  {offset:>8}  {step.get('status')}")
    if m.get("failure_reason"):
        reason = cut_text(str(m["failure_reason"]), info.record.url("manifest.json"))
        lines += ["", "failure:", *(f"  {line}" for line in reason.splitlines())]
    final = {k: v for k, v in (m.get("final_metrics") or {}).items()
             if isinstance(v, int | float) and not isinstance(v, bool)}
    if final or info.summary:
        lines += ["", "metrics:        final      min      max   points"]
        for name in sorted(set(final) | set(info.summary)):
            figures = info.summary.get(name)
            low = f"{figures.low:8.4g}" if figures else " " * 8
            high = f"{figures.high:8.4g}" if figures else " " * 8
            last = f"{final[name]:8.4g}" if name in final else " " * 8
            lines.append(f"  {name:<12} {last} {low} {high} "
                         f"{figures.points if figures else 0:>8}")
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
    return terminal_lines(lines)


def cut_text(text: str, where: str, head: int = CUT_HEAD, tail: int = CUT_TAIL) -> str:
    """`text` whole up to `head + tail` characters, else its start and its end around a line
    saying how much was left out and that `where` holds all of it (as `read_cut` cuts files):
    a record's text of any length prints as a few screens."""
    if len(text) <= head + tail:
        return text
    return (f"{text[:head]}\n[… {len(text) - head - tail:,} characters left out here: the whole "
            f"text is {where} …]\n{text[-tail:]}")


def format_diff(a: Record, b: Record, rows: list[DiffRow], show_all: bool = False,
                unreadable: Sequence[str] = ()) -> str:
    """The rows as a table of terminal text, then which configs could not be compared."""

    def cell(value: Any) -> str:
        text = "—" if value is None else (json.dumps(value) if isinstance(value, dict | list)
                                          else str(value))
        return text if len(text) <= 60 else text[:57] + "..."

    shown = [r for r in rows if show_all or not r.same or r.section == "metrics"]
    table = [("", "KEY", a.run_id, b.run_id)]
    for row in shown:
        mark = " " if row.same else "*"
        table.append((mark, f"{row.section}.{row.key}", cell(row.a), cell(row.b)))
    table = [tuple(terminal_text(text, one_line=True) for text in line) for line in table]
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in table)
    differing = sum(not r.same for r in rows if r.section in ("job", "training"))
    note = ("configs identical" if not differing else
            f"{differing} config keys differ")
    if unreadable:
        note = f"{note} among those compared"
    return "\n".join([
        text, "", f"{note} (* marks a difference{'' if show_all else '; --all shows every key'})",
        *(terminal_text(f"not compared: {item}", one_line=True) for item in unreadable)])
