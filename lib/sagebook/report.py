"""A static HTML site of every run, written into the record store itself (`_report/`).

    _report/index.html                         all runs: sortable, filterable, status colours
    _report/runs/<experiment>/<run_id>.html    one run: summary, timeline, metric curves,
                                               configs, request, failure, artifacts
    _report/runs/<experiment>/<run_id>.notebook.html   its executed notebook (nbconvert)
    _report/state.json                         what was rendered, so re-runs skip the rest

Pages open from a local folder (file://) or from S3 with no server and no internet: every link
is relative (to other pages and to the record's own files), styles and the sorting script are
inline, and nbconvert's `basic` template is used — the `lab` one loads MathJax and require.js
from a CDN. A run page is rendered again only when the run's index summary changed (its
revision), or when the rendering options or this module's page format did.

A record is written by whoever can write to the store, and read by the whole team: what a page
shows of it is escaped by the templates (jinja's autoescape), and the one piece that must stay
markup, a run's executed notebook (its outputs and markdown cells hold any HTML), passes an
allow-list sanitizer (`sanitized`). Each page's Content-Security-Policy lets only the scripts
the report wrote run (by their hash), and fetches nothing but data: images, as a second wall.
A record's size does not set a page's: curves are downsampled (`runs.details.metric_series`), long
texts cut with a link to the whole file, and a notebook over MAX_NOTEBOOK_BYTES is linked,
not rendered.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import tempfile
import threading
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from markupsafe import Markup

from . import index
from .charts import (
    MAX_CHART_PARAMS,
    MAX_CHARTED,
    STATUS_COLOURS,
    colouring,
    is_number,
    line_chart,
    parallel_chart,
    scatter_chart,
    templates,
)
from .errors import StoreError
from .layout import REPORT_INDEX, REPORT_STATE, notebook_page_key, run_page_key, sweep_page_key
from .record import Record
from .runs.details import RunDetails, details
from .runs.listing import add_cost, differing_params, duration, parse_time
from .runs.text import (
    clip,
    damage_lines,
    describe_cost,
    format_commit,
    format_duration,
    format_param,
)
from .secrets import Masker, redact
from .stores import Store
from .sweeps import page as sweep_page
from .sweeps.record import all_sweeps

PAGE_FORMAT = 5  # bump when pages change shape, so the next report renders every page again
MAX_METRIC_COLUMNS = 6
PAGE_ROWS = 100  # runs the index page draws at once; its script pages, sorts and filters them
MAX_PARAM_COLUMNS = 12
RENDER_BATCH = 512  # run pages rendered at once on S3, by 8 threads
FAILURE_REASON_LIMIT = 1024  # characters: SageMaker cuts a FailureReason there
MAX_NOTEBOOK_BYTES = 32 << 20  # a larger notebook is linked from its run page, not rendered
MAX_SHOWN_TEXT = 64 << 10  # characters of one text on a run page (a config, a failure reason)
# a metric measured on held-out data: val_loss, validation_accuracy, eval-f1, test_acc
VALIDATION = re.compile(r"(?:^|[_\-.])(?:val|valid|validation|eval|test)(?:$|[_\-.])",
                        re.IGNORECASE)
SHORT_ID = re.compile(r"\d{8}-\d{6}-([0-9a-f]{6})")  # record.new_run_id's: its random end


@dataclass
class ReportResult:
    index_url: str
    runs: int
    rendered: int
    notebooks: int


def render(store: Store, *, hide_inputs: bool = False, force: bool = False,
           echo: Callable[[str], None] = lambda _: None) -> ReportResult:
    """Bring `_report/` up to date with the store: new or changed runs, then the index.
    The runs are read once, one at a time: the index page gathers what it needs of each
    (`IndexPage`), and only the changed runs' names are kept to render their pages."""
    try:
        state = json.loads(store.read_text(REPORT_STATE))
    except (FileNotFoundError, ValueError):
        state = {}
    options = {"format": PAGE_FORMAT, "hide_inputs": hide_inputs}
    same_options = state.get("options") == options and not force
    rendered_before: dict[str, list[Any]] = state.get("runs", {}) if same_options else {}
    damaged: list[Any] = []
    with IndexPage() as page:
        changed: list[tuple[str, str, list[Any]]] = []  # experiment, run id, version
        for entry in index.entries(store, damaged=damaged):
            page.add(entry)
            version = _version(entry)
            if rendered_before.get(_name(entry)) != version:
                changed.append((entry["experiment"], entry["run_id"], version))
        for line in damage_lines(damaged):
            echo(line)
        converter = _NotebookConverter(hide_inputs)
        skipped: dict[str, str] = {}

        def render_one(run: tuple[str, str, list[Any]]) -> bool:
            try:
                return _render_run(store, run[0], run[1], converter)
            except (FileNotFoundError, StoreError) as exc:
                # a record gone or damaged: the others are still rendered, and this one named
                skipped[f"{run[0]}/{run[1]}"] = "its record folder is gone" if isinstance(
                    exc, FileNotFoundError) else str(exc)
                return False

        if store.local_path() is not None or len(changed) < 4:
            notebooks = sum(render_one(run) for run in changed)
        else:
            notebooks = 0
            with ThreadPoolExecutor(8) as pool:  # on S3 each run is a handful of round trips
                for start in range(0, len(changed), RENDER_BATCH):  # not 100,000 futures
                    notebooks += sum(pool.map(render_one, changed[start:start + RENDER_BATCH]))
        changed = [run for run in changed if f"{run[0]}/{run[1]}" not in skipped]
        for name, why in sorted(skipped.items()):
            echo(f"skipped {name}: {why}")
        sweeps = _render_sweeps(store, echo)
        if changed or not same_options or sweeps:
            main = page.main_metric(store, {s["id"]: s["objective"] for s in sweeps})
            page.publish(store, REPORT_INDEX, store.uri, sweeps, main)
    rendered_before.update((f"{experiment}/{run_id}", version)
                           for experiment, run_id, version in changed)
    state = {"options": options, "runs": rendered_before}
    store.write_text(REPORT_STATE, json.dumps(state, separators=(",", ":")))
    echo(f"{len(changed)} of {page.runs} run pages rendered ({notebooks} notebooks)"
         + (f", {len(skipped)} skipped (`sagebook fsck` says what to do)" if skipped else ""))
    return ReportResult(store.url(REPORT_INDEX), page.runs, len(changed), notebooks)


def _render_sweeps(store: Store, echo: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every sweep's page (a handful of small records: always rendered); their summaries.
    A sweep whose record cannot be read is named and left out."""
    summaries = []
    damaged: list[Any] = []
    sweeps = all_sweeps(store, damaged=damaged)
    for damage in damaged:
        echo(f"skipped {damage} (`sagebook fsck` says what to do)")
    for sweep in sweeps:
        _publish(store, sweep_page_key(sweep.experiment, sweep.sweep_id),
                 sweep_page.render(sweep))
        best = sweep.best()
        summaries.append({"id": sweep.sweep_id, "experiment": sweep.experiment,
                          "status": sweep.status, "strategy": sweep.manifest.get("strategy"),
                          "trials": len(sweep.trials),
                          "objective": (sweep.manifest.get("objective") or {}).get("metric"),
                          "best": best and best.get("objective")})
    return summaries


def _version(entry: dict[str, Any]) -> list[Any]:
    """What a run page shows changes with the manifest (its rank) and its annotations."""
    stamps = [stamp for _, stamp in (entry.get("annotations") or {}).values()]
    return [*index.rank(entry), max(stamps, default="")]


def _name(entry: dict[str, Any]) -> str:
    return f"{entry['experiment']}/{entry['run_id']}"


# --------------------------------------------------------------------------------------------
# Pages: report.py works out what to show (values, links), charts.py the pixels; templates/
# draws it.


def metric_columns(entries: Iterable[dict[str, Any]], limit: int = MAX_METRIC_COLUMNS
                   ) -> list[str]:
    """The final metrics most runs report, most common first."""
    counts: Counter[str] = Counter()
    for entry in entries:
        counts.update((entry.get("final_metrics") or {}).keys())
    return [name for name, _ in counts.most_common(limit)]


def main_metric(store: Store, entries: list[dict[str, Any]],
                sweep_objectives: dict[str, str] | None = None) -> str | None:
    """The metric the comparison charts and the runs table lead with: the objective of the
    sweep the newest swept run belongs to, else the first validation metric of the newest
    run's metric_definitions (its request), else its first definition that runs report, else
    the metric most runs report. `entries` newest first; `sweep_objectives` (sweep id →
    metric) saves reading the sweeps when the caller has them."""
    swept = next((e["sweep"] for e in entries if e.get("sweep") and e.get("final_metrics")),
                 None)
    newest = next((e for e in entries if e.get("final_metrics")), None)
    return _main_of(store, metric_columns(entries, limit=1000), swept, newest,
                    sweep_objectives)


def _main_of(store: Store, reported: list[str], swept: str | None,
             newest: dict[str, Any] | None, sweep_objectives: dict[str, str] | None
             ) -> str | None:
    """`main_metric` from what it reads of the runs: the metrics they report (most common
    first), the sweep of the newest swept run with metrics, and the newest run with metrics."""
    if swept:
        if sweep_objectives is None:
            sweep_objectives = {s.sweep_id: (s.manifest.get("objective") or {}).get("metric")
                                for s in all_sweeps(store)}
        if sweep_objectives.get(swept) in reported:
            return sweep_objectives[swept]
    if newest is None:
        return None
    try:
        request = json.loads(store.read_text(f"{newest['experiment']}/{newest['run_id']}"
                                             "/request.json"))
        defined = [str(d.get("Name")) for d in
                   request["AlgorithmSpecification"].get("MetricDefinitions") or []]
    except (FileNotFoundError, StoreError, ValueError, KeyError, TypeError, AttributeError):
        defined = []  # an old or damaged record: the metrics the runs report
    defined = [d for d in defined if d in reported]
    validation = [d for d in defined if VALIDATION.search(d)]
    return (validation or defined or reported)[0]


def leading(metrics: list[str], main: str | None) -> list[str]:
    """The metric columns with the main metric first."""
    return metrics if not main else [main] + [m for m in metrics if m != main]


def table_rows(entries: list[dict[str, Any]], metrics: list[str], params: list[str],
               link: Callable[[dict[str, Any]], str | None] | None = None
               ) -> list[dict[str, Any]]:
    """What the runs table shows of each run."""
    return [with_values(table_row(entry, link), entry.get("final_metrics") or {},
                        entry.get("params") or {}, metrics, params) for entry in entries]


def table_row(entry: dict[str, Any], link: Callable[[dict[str, Any]], str | None] | None
              ) -> dict[str, Any]:
    """What the runs table shows of a run but its metrics' and parameters' columns, which
    depend on the other runs (`with_values`)."""
    href = link(entry) if link else None
    seconds = duration(entry)
    tags = entry.get("tags") or {}
    notebook = entry.get("notebook")
    short = SHORT_ID.fullmatch(entry["run_id"])
    failure = entry.get("failure_reason") or ""
    return {
        "run_id": entry["run_id"], "short_id": short.group(1) if short else entry["run_id"],
        "href": href, "name": entry.get("name") or "",
        "experiment": entry.get("experiment"), "user": entry.get("user"),
        "created": entry.get("created") or "",
        "created_short": _short_time(entry.get("created")),
        "instance": entry.get("instance_type"), "status": entry.get("status", ""),
        "failure": failure, "failure_short": clip(failure, 48),
        "seconds": "" if seconds is None else f"{seconds:.1f}",
        "duration": format_duration(seconds), "cost": entry.get("cost"),
        "commit_full": entry.get("git_commit") or "", "commit": format_commit(entry),
        "tags": ", ".join(f"{k}={v}" for k, v in sorted(tags.items())),
        "note": entry.get("note") or "", "note_short": clip(entry.get("note") or "", 40),
        "notebook": notebook or "",
        # captured notebooks have a page next to the run's
        "notebook_href": href.removesuffix(".html") + ".notebook.html"
        if href and notebook in ("completed", "failed") else None,
    }


def with_values(row: dict[str, Any], final: dict[str, Any], run_params: dict[str, Any],
                metrics: list[str], params: list[str]) -> dict[str, Any]:
    """`row` with the values of the metric and parameter columns."""
    row["metrics"] = [final.get(m) for m in metrics]
    row["params"] = [(run_params.get(p), format_param(run_params.get(p))) for p in params]
    return row


def runs_table(entries: list[dict[str, Any]], metrics: list[str] | None = None,
               link: Callable[[dict[str, Any]], str | None] | None = None,
               params: list[str] | None = None, hide: Iterable[str] = ()) -> str:
    """The runs as an HTML table, as the report's index shows them (the dashboard notebook's
    table): without the report's page styles, which would restyle the notebook around it; the
    columns in `hide`, and those no run has a value in, left out."""
    metrics = metric_columns(entries) if metrics is None else metrics
    params = differing_params(entries) if params is None else params
    macros = templates().get_template("report_macros.html").module
    rows = table_rows(entries, metrics, params, link)
    return str(macros.runs_table(rows, metrics, params, empty=[*empty_columns(rows), *hide]))


# a runs table's columns, each by the row field that fills it
_COLUMNS = {"name": "name", "experiment": "experiment", "user": "user", "created": "created",
            "instance": "instance", "duration": "duration", "cost": "cost",
            "failure": "failure", "commit": "commit_full", "tags": "tags", "note": "note",
            "notebook": "notebook"}


def empty_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The runs table's columns no row has a value in: left out, so the table fits."""
    return [c for c, key in _COLUMNS.items() if all(r.get(key) in (None, "") for r in rows)]


def row_cells(row: dict[str, Any], empty: Iterable[str]) -> list[Any]:
    """A row of the index page as its script draws it: [run id, page link, notebook link,
    cells] in the table's column order (the `runs_table` macro's). A cell is its text alone,
    or [text, value, title, kind]: value is what sorting and `NAME OP VALUE` filters compare
    (the text when left out), title 1 is the value again, kind "n" a number, "s" a status,
    "f" a failure. Short because a store of 100,000 runs is 100,000 of them in one page; the
    page draws every part as text."""
    def cell(text: Any, value: Any = None, title: Any = None, kind: str | None = None) -> Any:
        text = "" if text is None else str(text)
        value = None if value is None or str(value) == text else str(value)
        parts = [text, value, 1 if title and title == value else title or None, kind]
        while len(parts) > 1 and parts[-1] is None:
            parts.pop()
        return parts[0] if len(parts) == 1 else parts

    cost = row["cost"]
    columns = {
        "name": cell(row["name"]), "experiment": cell(row["experiment"]),
        "user": cell(row["user"]),
        "created": cell(row["created_short"], row["created"], row["created"]),
        "instance": cell(row["instance"]),
        "duration": cell(row["duration"], row["seconds"], None, "n"),
        "cost": cell("" if cost is None else f"${cost:.2f}", "" if cost is None else cost,
                     None, "n")}
    late = {
        "failure": cell(row["failure_short"], row["failure"], row["failure"], "f"),
        "commit": cell(row["commit"], None, row["commit_full"]),
        "tags": cell(row["tags"]), "note": cell(row["note_short"], None, row["note"]),
        "notebook": cell(row["notebook"])}
    skip = set(empty)
    cells = [cell(row["short_id"], row["run_id"], row["run_id"])]
    cells += [columns[c] for c in ("name", "experiment", "user", "created", "instance")
              if c not in skip]
    cells.append(cell(row["status"], None, row["failure"], "s"))
    cells += [columns[c] for c in ("duration", "cost") if c not in skip]
    cells += [cell("" if v is None else f"{v:.4f}", "" if v is None else v, None, "n")
              for v in row["metrics"]]
    cells += [cell(label, None, None, "n" if is_number(v) else None)
              for v, label in row["params"]]
    cells += [late[c] for c in ("failure", "commit", "tags", "note", "notebook")
              if c not in skip]
    return [row["run_id"], row["href"], row["notebook_href"], cells]


def page_text(text: str) -> Markup:
    """`text` as the content of an element (the index page's runs data): only `&`, `<` and
    `>` escaped, which is all that ends or starts markup there (quotes do only in an
    attribute), so the page's 100,000 rows of JSON are not five bytes a quote."""
    return Markup(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def _short_time(value: Any) -> str:
    parsed = parse_time(value)
    return parsed.strftime("%Y-%m-%d %H:%M") if parsed else ""


class IndexPage:
    """The index page of every run, gathered from the runs one at a time and written as a
    stream, so a report's memory holds a few numbers a run, neither the runs' summaries nor
    the page (58 MB at 100,000 runs). What the page needs of all the runs (its columns, the
    counts and costs, the newest runs for the charts and the first page) is gathered as they
    come; each run's row (`table_row`) is set aside in a scratch file with its metrics and
    parameters, and read back in the page's order (newest first) once the columns are known.
    Each piece of the page is masked as it is written, by one `Masker`, as `redact` masks the
    whole page."""

    def __init__(self) -> None:
        self.runs = 0
        self._spool: IO[bytes] = tempfile.TemporaryFile(prefix="sagebook-report-")
        self._offsets = array("q", [0])  # where each run's row starts in the spool
        self._created: list[str] = []
        self._metrics: Counter[str] = Counter()  # in the runs' order (`metric_columns`)
        self._first_reported: dict[str, tuple[str, int, int]] = {}  # newest run with it
        self._param_first: dict[str, str] = {}  # each parameter's first value (JSON)
        self._param_differs: set[str] = set()
        self._statuses: Counter[str] = Counter()
        self._costs: dict[str, list[float]] = {}
        self._filled: set[str] = set()  # the columns some run has a value in
        self._newest: list[tuple[str, int, dict[str, Any]]] = []
        self._swept: tuple[str, int, str] | None = None  # the newest swept run with metrics
        self._scored: tuple[str, int, dict[str, Any]] | None = None  # newest with metrics

    def __enter__(self) -> IndexPage:
        return self

    def __exit__(self, *_: object) -> None:
        self._spool.close()

    def add(self, entry: dict[str, Any]) -> None:
        """One run's summary, in the index's order."""
        created = entry.get("created") or ""
        # where the run comes in the page: newest first, and in the index's order among runs
        # created at the same time (a stable sort's)
        newest = (created, -self.runs)
        self.runs += 1
        row = table_row(entry, _page_link)
        final = entry.get("final_metrics") or {}
        self._spool.write(json.dumps([row, final, entry.get("params") or {}],
                                     separators=(",", ":"), ensure_ascii=False).encode())
        self._offsets.append(self._spool.tell())
        self._created.append(created)
        self._metrics.update(final.keys())
        for position, name in enumerate(final):
            seen = (*newest, -position)
            if name not in self._first_reported or seen > self._first_reported[name]:
                self._first_reported[name] = seen
        if final:
            if self._scored is None or newest > self._scored[:2]:
                self._scored = (*newest, entry)
            if entry.get("sweep") and (self._swept is None or newest > self._swept[:2]):
                self._swept = (*newest, entry["sweep"])
        self._add_params(entry.get("params") or {})
        self._statuses[entry.get("status", "?")] += 1
        add_cost(self._costs, entry)
        if len(self._filled) < len(_COLUMNS):
            self._filled.update(c for c, key in _COLUMNS.items()
                                if row.get(key) not in (None, ""))
        self._newest.append((*newest, entry))
        kept = max(MAX_CHARTED, PAGE_ROWS)
        if len(self._newest) >= 2 * kept:  # trim in batches: amortised O(log kept) a run
            self._newest = heapq.nlargest(kept, self._newest, key=lambda n: n[:2])

    def _add_params(self, params: dict[str, Any]) -> None:
        """`differing_params` as the runs come: a parameter differs when a run's value (null
        where the run has none) is not its first run's."""
        first = self._param_first
        for name, value in params.items():
            if name in self._param_differs:
                continue
            shown = json.dumps(value)
            if name not in first:
                first[name] = "null" if self.runs > 1 else shown
            if first[name] != shown:
                self._param_differs.add(name)
        if len(first) > len(params):  # a parameter this run has not: null
            self._param_differs.update(name for name, shown in first.items()
                                       if name not in params and shown != "null")

    def main_metric(self, store: Store, sweep_objectives: dict[str, str] | None = None
                    ) -> str | None:
        """`report.main_metric` of the runs added."""
        reported = sorted(self._metrics, reverse=True,
                          key=lambda name: (self._metrics[name], self._first_reported[name]))
        return _main_of(store, reported[:1000], self._swept and self._swept[2],
                        self._scored and self._scored[2], sweep_objectives)

    def publish(self, store: Store, key: str, store_uri: str,
                sweeps: Iterable[dict[str, Any]] = (), main: str | None = None) -> None:
        """Write the page to `key` of the store, through a scratch file."""
        with tempfile.TemporaryDirectory(prefix="sagebook-report-") as scratch:
            path = Path(scratch) / "index.html"
            with path.open("wb") as out:
                self.write(out, store_uri, sweeps, main)
            store.put_file(key, path)

    def write(self, out: IO[bytes], store_uri: str, sweeps: Iterable[dict[str, Any]] = (),
              main: str | None = None) -> None:
        """The page, masked: `main` is the metric the charts and the table lead with
        (`main_metric`)."""
        metrics = leading([name for name, _ in self._metrics.most_common(MAX_METRIC_COLUMNS)],
                          main)
        params = sorted(self._param_differs)[:MAX_PARAM_COLUMNS]
        ordered = [entry for *_, entry in heapq.nlargest(
            max(MAX_CHARTED, PAGE_ROWS), self._newest, key=lambda n: n[:2])]
        charted = ordered[:MAX_CHARTED]
        scored = [e for e in charted if e.get("final_metrics")]
        runs_colouring = colouring(scored, metrics[0] if metrics else None)
        empty = [c for c in _COLUMNS if c not in self._filled]
        # the rows' data is written where this mark is: a comment, which no text from the
        # store can be once escaped, with a random name no chart or template holds
        mark = f"<!--rows-{os.urandom(16).hex()}-->"
        page = templates().get_template("report_index.html").render(
            store_uri=store_uri, status_colours=STATUS_COLOURS,
            rows=table_rows(ordered[:PAGE_ROWS], metrics, params, link=_page_link),
            runs=self.runs, data=Markup(mark), page_rows=PAGE_ROWS, empty=empty,
            colouring=runs_colouring, metrics=metrics, params=params,
            counts=sorted(self._statuses.items()),
            costs=[(k, v[0], int(v[1])) for k, v in sorted(self._costs.items())],
            cost_total=sum(v[0] for v in self._costs.values()),
            sweeps=list(reversed(list(sweeps))),
            parallel=parallel_chart(charted, params[:MAX_CHART_PARAMS], metrics[:3],
                                    colours=runs_colouring.colours),
            scatters=[scatter_chart(charted, p, metrics[0], colours=runs_colouring.colours)
                      for p in params[:MAX_CHART_PARAMS]] if metrics else [],
            capped=len(charted) if self.runs > len(charted) else 0)
        head, tail = page.split(mark)
        mask = Masker()
        out.write(mask(head).encode())
        out.write(b"[")
        for number, at in enumerate(sorted(range(self.runs), key=self._created.__getitem__,
                                           reverse=True)):
            self._spool.seek(self._offsets[at])
            row, final, run_params = json.loads(
                self._spool.read(self._offsets[at + 1] - self._offsets[at]))
            row = with_values(row, final, run_params, metrics, params)
            text = json.dumps(row_cells(row, empty), separators=(",", ":"), ensure_ascii=False)
            out.write((b"," if number else b"") + mask(page_text(text)).encode())
        out.write(b"]")
        out.write(mask(tail).encode())


def _page_link(entry: dict[str, Any]) -> str:
    return f"runs/{entry['experiment']}/{entry['run_id']}.html"


def _render_run(store: Store, experiment: str, run_id: str, converter: _NotebookConverter
                ) -> bool:
    """Write the run's page (and its notebook's); True when there was a notebook."""
    record = Record.open(store, experiment, run_id)
    info = details(record)
    has_notebook = "notebook.ipynb" in info.files
    if has_notebook:
        notebook = _read_within(store, f"{record.prefix}/notebook.ipynb", MAX_NOTEBOOK_BYTES)
        _publish(store, notebook_page_key(record.experiment, record.run_id),
                 converter.page(notebook, f"{record.run_id} notebook",
                                f"../../../{record.experiment}/{record.run_id}/notebook.ipynb"))
    _publish(store, run_page_key(record.experiment, record.run_id), run_page(info, has_notebook))
    return has_notebook


def _read_within(store: Store, key: str, limit: int) -> str | None:
    """The object's text when it is at most `limit` bytes, else None (read no further)."""
    chunks, size = [], 0
    for chunk in store.read_chunks(key):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _publish(store: Store, key: str, page: str) -> None:
    """A page is shown to whoever can read the store: masked like the record it comes from,
    also when that record was written by a sagebook that masked less."""
    store.write_text(key, redact(page))


def run_page(info: RunDetails, has_notebook: bool) -> str:
    m = info.manifest
    record = info.record
    to_record = f"../../../{record.experiment}/{record.run_id}/"
    summary = index.summarize(m)
    git = m.get("git") or {}
    parent = m.get("parent") or {}
    notes = info.annotations
    rehearsal = m.get("interruption") or {}
    facts = [
        ("experiment", record.experiment, None),
        ("user", f"{m.get('user')}@{m.get('host')}", None),
        ("created", m.get("created"), None),
        ("ended", m.get("ended"), None),
        ("duration", format_duration(duration(summary)), None),
        ("cost", describe_cost(m["cost"]) if m.get("cost") else None, None),
        ("instance", f"{m.get('instance_type')} ({m.get('backend')})", None),
        ("job", m.get("job_name"), None),
        ("launched via", m.get("launched_via"), None),
        ("image", m.get("image_uri"), None),
        ("git", f"{git['commit']} {git.get('branch') or ''}"
                f"{' (dirty)' if git.get('dirty') else ''}" if git.get("commit")
         else git.get("note"), None),
        ("overrides", ", ".join((m.get("config") or {}).get("overrides") or []), None),
        ("parent", parent.get("run_id"),
         f"../{parent.get('experiment')}/{parent.get('run_id')}.html"
         if parent.get("run_id") else None),
        ("tags", ", ".join(f"{k}={v}" for k, v in sorted((notes.get("tags") or {}).items())),
         None),
        ("interruption", rehearsal.get("summary", "") + (f" ({rehearsal['evidence']})"
                                                         if rehearsal.get("evidence") else ""),
         None),
        ("record", record.uri, f"{to_record}manifest.json"),
    ]
    charts = [line_chart(name, points, info.units.get(name, "step"))
              for name, points in info.metrics.items() if points]
    final = sorted((k, v) for k, v in (m.get("final_metrics") or {}).items() if is_number(v))
    no_metrics = ("no metrics: the run failed before reporting any" if m.get("status") in
                  ("Failed", "Stopped", "Interrupted", "Lost") else "no metrics reported")
    return templates().get_template("report_run.html").render(
        run_id=record.run_id, experiment=record.experiment, name=notes.get("name"),
        status=m.get("status"), status_colours=STATUS_COLOURS, facts=facts,
        notes=notes.get("notes") or [], record_href=to_record,
        notebook_href=f"{record.run_id}.notebook.html" if has_notebook else None,
        notebook_status=(m.get("notebook") or {}).get("status"),
        failure=_failure(info, to_record), history=m.get("status_history") or [],
        final=final, charts=charts, no_metrics=no_metrics,
        params=[(k, format_param(v)) for k, v in (m.get("params") or {}).items()],
        configs=[(title, _shown(text, f"{to_record}{name}", name))
                 for title, name, text in (
                     ("Training config", "config/training_config.yaml", info.training_config),
                     ("Job config", "sagemaker_config.yaml", info.job_config)) if text],
        request=_shown(json.dumps(info.request, indent=2), f"{to_record}request.json",
                       "request.json") if info.request is not None else None,
        artifacts=_artifact_links(info, to_record))


def _failure(info: RunDetails, to_record: str) -> dict[str, Any] | None:
    """The failure reason, and the whole text where sagebook has it: SageMaker cuts
    FailureReason at 1,024 characters; failure.txt holds the training code's own
    output/failure (local runs) or the reason with each host's last log lines."""
    reason = str(info.manifest.get("failure_reason") or "")
    if not reason and not info.failure:
        return None
    return {"text": _shown(reason, f"{to_record}manifest.json", "manifest.json"),
            "cut": len(reason) >= FAILURE_REASON_LIMIT,
            "full": info.failure, "full_name": "failure.txt",  # cut when read (read_cut)
            "full_href": f"{to_record}failure.txt" if info.failure else None}


def _shown(text: str, href: str, name: str) -> dict[str, Any]:
    """A text of the record as a page shows it: whole up to MAX_SHOWN_TEXT characters, else
    its start and its end, and a link to the file that holds all of it."""
    if len(text) <= MAX_SHOWN_TEXT:
        return {"head": text, "tail": "", "left_out": 0}
    half = MAX_SHOWN_TEXT // 2
    return {"head": text[:half], "tail": text[-half:], "left_out": len(text) - 2 * half,
            "href": href, "name": name}


def _artifact_links(info: RunDetails, to_record: str) -> list[tuple[str, str, str | None]]:
    """Every artifact with a link a browser can follow: the record's own files relative to
    the page, S3 objects to the S3 console, local files as file:// URLs."""
    links = []
    prefix = info.record.uri.rstrip("/") + "/"
    for name, uri in info.artifacts().items():
        href: str | None
        if name in info.files:
            href = f"{to_record}{name}"
        elif uri.startswith(prefix):  # a file of the record, such as output/model.tar.gz
            href = f"{to_record}{uri[len(prefix):]}"
        elif uri.startswith("s3://"):
            bucket, _, key = uri[5:].partition("/")
            href = (f"https://s3.console.aws.amazon.com/s3/object/{quote(bucket)}"
                    f"?prefix={quote(key)}")
        elif uri.startswith("/"):
            href = f"file://{quote(uri)}"
        else:
            href = None
        links.append((name, uri, href))
    return links


class _NotebookConverter:
    """nbconvert's HTMLExporter, one per thread (exporters keep state while converting)."""

    def __init__(self, hide_inputs: bool):
        self.hide_inputs = hide_inputs
        self._local = threading.local()

    def page(self, notebook_json: str | None, title: str, ipynb_href: str) -> str:
        """The notebook's page: nbconvert's HTML of it, sanitized; None (a notebook over
        MAX_NOTEBOOK_BYTES) is a page that says so and links to the .ipynb."""
        page = templates().get_template("report_notebook.html")
        if notebook_json is None:
            return page.render(title=title, too_large=MAX_NOTEBOOK_BYTES >> 20,
                               ipynb_href=ipynb_href, css="")
        import nbformat  # only to render a run's notebook

        exporter = getattr(self._local, "exporter", None)
        if exporter is None:
            from nbconvert import HTMLExporter  # only to render a run's notebook

            exporter = HTMLExporter(template_name="basic", exclude_input=self.hide_inputs,
                                    exclude_input_prompt=self.hide_inputs)
            self._local.exporter = exporter
        try:
            body = sanitized(exporter.from_notebook_node(
                nbformat.reads(notebook_json, as_version=4))[0])
        except Exception as exc:  # a torn or foreign notebook must not stop the whole report
            return page.render(title=title, error=clip(str(exc), 2000),
                               ipynb_href=ipynb_href, css="")
        return page.render(title=title, body=body, css=_notebook_css())


# What a notebook page keeps of nbconvert's HTML: text, tables, lists, code and images, with the
# classes and ids the basic template marks cells with (nh3's defaults drop them), and the
# checkboxes of markdown task lists; never a script, style, form, frame, object, SVG or meta.
_TAGS = {"input"}
_ATTRIBUTES = {"*": {"class", "id", "title", "lang"}, "input": {"disabled", "checked"}}
_ATTRIBUTE_VALUES = {"input": {"type": {"checkbox"}}}
# images only inline: an output's PNG, JPEG, GIF or SVG (which runs no script as an <img>)
_IMAGE_DATA = ("data:image/png;", "data:image/jpeg;", "data:image/gif;", "data:image/svg+xml;")


def sanitized(html: str) -> str:
    """nbconvert's HTML of a record's notebook, with only what `_TAGS`/`_ATTRIBUTES` and nh3's
    (the Rust ammonia sanitizer's) allow-list keep: no script, event handler, style, frame,
    form, meta or SVG; links only to http(s), mailto and relative targets; images only as
    data: URIs of image types. Outputs and markdown cells hold whatever HTML the record's
    writer put there."""
    import nh3  # lazy: the report alone needs it

    tags = nh3.ALLOWED_TAGS | _TAGS
    attributes = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
    for tag, names in _ATTRIBUTES.items():
        attributes[tag] = attributes.get(tag, set()) | names
    return nh3.clean(html, tags=tags, attributes=attributes,
                     tag_attribute_values=_ATTRIBUTE_VALUES,
                     clean_content_tags={"script", "style"},
                     url_schemes={"http", "https", "mailto", "data"},
                     attribute_filter=_data_images_only)


def _data_images_only(tag: str, attribute: str, value: str) -> str | None:
    """data: URIs stay only as the source of an image of an image type; an image's source is
    never fetched (it would tell a server who opened the page)."""
    if tag == "img" and attribute == "src":
        return value if value.strip().lower().startswith(_IMAGE_DATA) else None
    if attribute in ("href", "cite") and value.strip().lower().startswith("data:"):
        return None
    return value


_PYGMENTS_CSS: list[str] = []


def _notebook_css() -> str:
    if not _PYGMENTS_CSS:
        from pygments.formatters import HtmlFormatter  # only to render a notebook or a config

        _PYGMENTS_CSS.append(
            HtmlFormatter(style="default").get_style_defs(".highlight")
            # nbconvert's basic template marks cells up with the classic notebook's classes
            + ".cell{margin:.6em 0}.prompt{color:#6e7781;font-size:.85em}"
              ".input_area{background:#f6f8fa;padding:.2em .6em}.highlight pre{margin:0}"
              ".output_subarea pre{background:none;max-height:none;padding:.2em .6em}"
              ".output_area img{max-width:100%}td,th{white-space:normal}"
              "table{border-collapse:collapse}.rendered_html td,.rendered_html th"
              "{padding:.2em .6em;border:1px solid #d0d7de;text-align:right}")
    return _PYGMENTS_CSS[0]
