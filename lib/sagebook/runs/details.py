"""Query layer (L4): one run, or two side by side, as data: its record's files and metrics
read within bounds (`details`), its annotations (`annotate`, `current_annotations`), and the
differences between two records (`diff`).

Metrics are streamed: a curve is downsampled as it is read (`lttb`, here because reading
needs it, not only drawing), a summary is counted a block at a time. The terminal's text of
these (`show`, `diff`) is runs/text.py's; the report's pages are report.py's.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import index, inputs
from ..errors import ArgumentError, StoreError
from ..inputs import DamagedFile, parse_json
from ..layout import run_page_key
from ..record import ANNOTATIONS, TERMINAL, Record
from ..secrets import token_kind
from .listing import duration
from .lookup import read_cut, read_optional

MAX_CURVE_POINTS = 2000  # per metric: a curve's shape at any length, in a page or a terminal
MAX_METRIC_SERIES = 100  # metric names read from one record; the rest are skipped
MAX_METRIC_LINE = 4096  # bytes: a point is some 100; a longer line is not one
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
                  totals: dict[str, int] | None = None,
                  units: dict[str, str] | None = None) -> dict[str, list[Point]]:
    """name → [(step, value, timestamp)] from the record's metrics.jsonl, in file order; a point
    without a step of its own has its position in the series.

    The file is streamed and each curve downsampled as it is read, so time follows the file
    and memory follows `limit`, never the record: at most `limit` points per metric, chosen by
    largest-triangle-three-buckets with the first, last, lowest and highest points always
    among them (`lttb`). `totals`, when given, gets each metric's number of points before
    that; `units`, when given, what each metric's steps count where the log numbered them
    itself ("epoch", "step", "iteration"; the charts' x axis); `limit=None` keeps every point
    (an export). Lines that are not a point are skipped:
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
            if units is not None and name not in units and type(point.get("unit")) is str:
                units[name] = point["unit"]
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
    units: dict[str, str] = field(default_factory=dict)  # metric_series's, with the curves

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
    units: dict[str, str] = {}
    return RunDetails(
        record=record,
        job_config=read_optional(record, "sagemaker_config.yaml", unreadable, limit),
        training_config=read_optional(record, "config/training_config.yaml", unreadable, limit),
        request=request,
        metrics=metric_series(record, units=units) if curves else {},
        summary={} if curves else metric_summary(record, unreadable),
        failure=read_cut(record, "failure.txt", unreadable=unreadable),
        files=files,
        report_page=record.store.url(page) if record.store.exists(page) else None,
        annotations=current_annotations(record) if any(
            f.startswith(f"{ANNOTATIONS}/") for f in files) else
        {"tags": dict(record.manifest.get("tags") or {}), "notes": []},
        unreadable=unreadable,
        lost=_lost(record),
        units=units,
    )


def _lost(record: Record) -> str | None:
    """Why a local run's launcher is gone (its record still says it runs), or None."""
    if record.status in TERMINAL:
        return None
    # heavy: the local backend loads the config models (pydantic), the backends package its
    # registry; only an unfinished run that may be local needs them
    from ..backends import backend_class, liveness
    from ..backends.local import ProcessRun

    cls = backend_class(str(record.manifest.get("instance_type") or ""))
    if cls is None or not issubclass(cls, ProcessRun):
        return None
    return liveness.lost(record.store, index.summarize(record.manifest))


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
            raise ArgumentError.one("tag", None, f"expected KEY=VALUE, got {item!r} "
                                                 "(--remove KEY removes a tag)")
        fields[f"tags.{key.strip()}"] = value
    for key in remove:
        fields[f"tags.{key.strip()}"] = None
    if note is not None:
        if not note.strip():
            raise ArgumentError.one("note", None, "the note is empty")
        fields["note"] = note
    if name is not None:
        if not name.strip():
            raise ArgumentError.one("rename", None, "the name is empty")
        fields["name"] = " ".join(name.split())
    if not fields:
        raise ArgumentError.one("tag", None, "nothing to do: give KEY=VALUE or --remove KEY")
    for key, value in fields.items():
        kind = token_kind(key) or (token_kind(value) if isinstance(value, str) else None)
        if kind:
            raise ArgumentError.one(key.partition(".")[0], key if "." in key else None,
                                    f"looks like {kind}; the record is shared with the team, so "
                                    "store the value in SSM Parameter Store or Secrets Manager "
                                    "and write its ARN instead")
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


@dataclass
class DiffRow:
    section: str
    key: str
    a: Any
    b: Any

    @property
    def same(self) -> bool:
        return self.a == self.b


def value_text(value: Any) -> str:
    """A diff cell as people read it: None as —, a float to ten significant digits (a metric
    summed in floating point, 0.39999999999999997, reads 0.4; a config's 0.1 stays 0.1)."""
    if value is None:
        return "—"
    return format(value, ".10g") if isinstance(value, float) else str(value)


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
        data = inputs.parse_yaml_text(read_optional(record, name, limit=inputs.MAX_CONFIG_BYTES),
                                       where) or {}
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
