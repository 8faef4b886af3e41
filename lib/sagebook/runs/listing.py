"""Query layer (L4): which runs to show, in which order, and what they cost: data for
`list`, the report and the dashboard to draw.

Listing reads the run index (index.py), never the manifests, so it stays fast at 10,000 runs.
Runs that the index still shows unfinished are handed to their backend's refresh hook (the
SageMaker backend asks in batches, never one describe call per run), which writes what changed
back to the record, so the next reader, and the report, see it too. Nothing here imports boto3
until a refresh needs it: `sagebook list` on a local store stays a short Python start.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import heapq
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from .. import index
from ..errors import ArgumentError, SagebookError
from ..inputs import DamagedFile
from ..record import STATUSES, TERMINAL
from ..stores import Store

DEFAULT_SORT = "created"
_WHERE = re.compile(r"^\s*([^<>=!~\s]+)\s*(>=|<=|!=|==|=|>|<|~)\s*(.*?)\s*$")
WHERE_GRAMMAR = ("expected NAME OP VALUE with OP one of = != > >= < <= ~ "
                 "(e.g. 'val_accuracy>0.95', optimizer=adam, 'note~baseline')")


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
    """`val_accuracy>0.95`, `optimizer=adam`, `tag.team=ml`, `note~baseline`. What would match
    nothing for being mistyped (`val_accuracy=>0.9` compares with the text '>0.9', `cost<`
    with nothing) is refused with the grammar, not listed as an empty table."""
    match = _WHERE.match(text)
    if not match:
        raise ArgumentError.one("--where", None, f"{WHERE_GRAMMAR}, got {text!r}")
    name, op, value = match.groups()
    if value[:1] and value[0] in "<>=!~":
        fixed = {"=>": ">=", "=<": "<=", "=!": "!="}.get(op + value[0])
        hint = f"; did you mean '{name}{fixed}{value[1:]}'?" if fixed else ""
        raise ArgumentError.one("--where", None, f"{op + value[0]!r} in {text!r} is no "
                                                 f"operator: {WHERE_GRAMMAR}{hint}")
    if not value and op not in ("=", "!="):
        raise ArgumentError.one("--where", None, f"nothing to compare with in {text!r}: "
                                                 f"{WHERE_GRAMMAR}")
    return Condition(name, op, value)


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
        if not (self.experiment or self.user or self.sweep or self.status or self.tags
                or self.since or self.where):
            return True  # `list` as most often typed: this runs for every run of the store
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
        if self.tags:
            tags = entry.get("tags") or {}
            for key, value in self.tags.items():
                if key not in tags or (value is not None and tags[key] != value):
                    return False
        if self.since and (parse_time(entry.get("created")) or _EPOCH) < self.since:
            return False
        for condition in self.where:
            if (with_status or condition.name != "status") and not condition.test(entry):
                return False
        return True


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
        raise ArgumentError.one(option, None, f"no {what} {name!r} in this store; "
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
    order_note: str | None = None  # why the runs are not in the order asked for


def list_runs(
    store: Store,
    filters: Filters | None = None,
    *,
    sort: str = DEFAULT_SORT,
    descending: bool | None = None,
    limit: int | None = None,
    refresh: bool = True,
    profile: str | None = None,
    strict_sort: bool = True,
) -> Listing:
    """Runs from the index, filtered, sorted by any column or metric, newest first by default.

    At most twice `limit` runs are held at once (trimmed with a heap), besides the cloud runs
    awaiting a refresh, so memory does not grow with the store. A sort the user did not name
    (`strict_sort=False`: a sweep's objective) is never an error: when no listed run has that
    value, they come newest first and `order_note` says why.
    """
    filters = filters or Filters()
    column = sort.lstrip("-")
    if descending is None:  # newest first for times, smallest first for everything else
        descending = sort.startswith("-") or column in ("created", "started", "ended", "updated")
    pending, matched, names = [], 0, Names()
    best = [_Top(column, descending, limit)]
    if not strict_sort and column != DEFAULT_SORT:  # an order that may fall back: the newest
        best.append(_Top(DEFAULT_SORT, True, limit))
    costs: dict[str, list[float]] = {}
    damaged: list[DamagedFile] = []
    for entry in index.scan(store, filters.experiment, fields=_fields(filters, column),
                            seen=names.see, damaged=damaged):
        if refresh and _may_change(entry):
            if filters.match(entry, with_status=False):
                pending.append(entry)  # its status may change: the status filter comes after
            continue
        if filters.match(entry):
            matched += 1
            for top in best:
                top.offer(entry)
            add_cost(costs, entry)
    refreshed, warning = 0, None
    if pending:
        pending = index.resolve(store, pending, damaged)  # the backends write them back whole
        try:
            # the backends' registry (kinds, the service model's values): only --refresh asks it
            from ..backends import refresh as refresh_statuses

            refreshed = refresh_statuses(store, pending, profile=profile)
        except SagebookError as exc:  # offline, or no AWS credentials: show what the store says
            warning = f"statuses of {len(pending)} cloud runs not refreshed: {exc}"
    for entry in pending:
        if entry.get("status"):  # a status its backend gave it (Lost, Completed…) is known
            names.statuses.add(entry["status"])
        if filters.match(entry):
            matched += 1
            for top in best:
                top.offer(entry)
            add_cost(costs, entry)
    kept = best[0].runs()
    order_note = None
    if strict_sort:
        names.check("--sort", column, ("column", "metric", "param", "tag"))
    elif kept and all(column_value(e, column) in (None, "") for e in kept):
        order_note = f"no run listed has {column!r} yet: newest first"
        column, descending, kept = DEFAULT_SORT, True, best[-1].runs()
    for condition in filters.where:
        names.check("--where", condition.name, ("column", "metric", "param", "tag"))
    for status in filters.status:  # a status is known even in an empty store
        if status.lower() not in {s.lower() for s in names.statuses}:
            raise ArgumentError.one("--status", None, f"no status {status!r}; "
                                                    f"{nearest(status, names.statuses)}")
    kept.sort(key=lambda e: sort_key(e, column, descending), reverse=descending)
    shown = kept[:limit] if limit else kept
    runs = index.resolve(store, shown, damaged)
    matched -= len(shown) - len(runs)  # runs whose summaries turned out unreadable
    return Listing(runs, matched, refreshed, warning, names,
                   {k: (v[0], int(v[1])) for k, v in costs.items()}, damaged, order_note)


def _fields(filters: Filters, sort: str) -> list[str]:
    """What `list_runs` reads of every run (index.scan): what the filters and the sort name,
    the fields that say whether a run may change, and its cost."""
    names = [sort, "created", "status", "job_name", "cost", *(c.name for c in filters.where)]
    fields = ["run_id", "user", "sweep", *(f"tags.{t}" for t in filters.tags)]
    for name in names:
        kind, _, rest = name.partition(".")
        if name in _FIELDS:
            fields += _FIELDS[name]
        elif name in COLUMN_NAMES:
            fields.append(name)
        elif rest and kind in _PREFIXES:
            fields.append(f"{_SECTIONS[_PREFIXES[kind]]}.{rest}")
        else:
            fields += [f"{section}.{name}" for section in _SECTIONS.values()]
    return fields


def add_cost(costs: dict[str, list[float]], entry: dict[str, Any]) -> None:
    """Add a run's cost, when it has one, to its experiment's [total, runs]."""
    if isinstance(entry.get("cost"), int | float):
        total = costs.setdefault(entry.get("experiment", ""), [0.0, 0])
        total[0] += entry["cost"]
        total[1] += 1


class _Top:
    """The first `limit` runs by `column` of the runs offered (all when `limit` is None). At
    most twice `limit` are held: they are trimmed in batches, and a run that sorts after the
    last one kept by the latest trim is passed over at once, as most runs of a large store
    are."""

    def __init__(self, column: str, descending: bool, limit: int | None):
        self.column, self.descending, self.limit = column, descending, limit
        self.held: list[tuple[Any, dict[str, Any]]] = []
        self.bar: Any = None

    def offer(self, entry: dict[str, Any]) -> None:
        key = sort_key(entry, self.column, self.descending)
        if self.bar is not None and (key < self.bar if self.descending else key > self.bar):
            return
        self.held.append((key, entry))
        if self.limit and len(self.held) >= 2 * self.limit:  # amortised O(log limit) a run
            pick = heapq.nlargest if self.descending else heapq.nsmallest
            self.held = pick(self.limit, self.held, key=itemgetter(0))  # stable: ties keep order
            self.bar = self.held[-1][0]

    def runs(self) -> list[dict[str, Any]]:
        return [entry for _, entry in self.held]


def _may_change(entry: dict[str, Any]) -> bool:
    """An unfinished run with a job: its backend may know more than the store (only remote
    backends do, and the registry knows which)."""
    return entry.get("status") not in TERMINAL and bool(entry.get("job_name"))


def sort_key(entry: dict[str, Any], column: str, descending: bool) -> tuple[bool, bool, Any]:
    """Runs without the value (no such metric, still running) sort last in either direction.
    Numbers and texts sort apart (a parameter may be 0.1 in one run and 'auto' in another):
    numbers first smallest first, texts first largest first."""
    value = column_value(entry, column)
    present = value is not None and value != ""
    text = not isinstance(value, int | float) or isinstance(value, bool)
    if text:
        value = "" if value is None else str(value)
    return (present, text, value) if descending else (not present, text, value)


COLUMN_NAMES = ("run", "name", "experiment", "user", "created", "instance", "status",
                "duration", "cost", "commit", "note", "ended", "started", "host", "backend",
                "job_name", "parent", "image_uri", "updated")
_PREFIXES = {"metric": "metric", "metrics": "metric", "param": "param", "params": "param",
             "tag": "tag", "tags": "tag"}
_COLUMN_SET = frozenset(COLUMN_NAMES)  # looked up for every run a --where or --sort reads
_SECTIONS = {"metric": "final_metrics", "param": "params", "tag": "tags"}
# the summary fields of the columns computed from others (see column_value, duration)
_FIELDS = {"run": ["run_id"], "instance": ["instance_type"], "commit": ["git_commit"],
           "duration": ["started", "created", "ended", "status"]}


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
    if column in _COLUMN_SET:
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
        raise ArgumentError.one("--since", None, f"expected 7d, 12h, 30m or a date such as "
                                              f"2026-11-01, got {text!r}")
    return value


def parse_tags(items: Iterable[str]) -> dict[str, str | None]:
    """`key=value` matches that value, a bare `key` any value."""
    tags: dict[str, str | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        tags[key] = value if sep else None
    return tags


def differing_params(rows: list[dict[str, Any]]) -> list[str]:
    """The parameters whose values are not the same in every one of `rows`, in key order."""
    keys = sorted({k for e in rows for k in (e.get("params") or {})})
    return [k for k in keys
            if len({json.dumps((e.get("params") or {}).get(k)) for e in rows}) > 1]
