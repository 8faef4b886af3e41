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
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from . import index, runs
from .errors import StoreError
from .record import Record
from .secrets import redact
from .stores import Store

ROOT = "_report"
STATE = f"{ROOT}/state.json"
PAGE_FORMAT = 1  # bump when pages change shape, so the next report renders every page again
MAX_METRIC_COLUMNS = 6
STATUS_COLOURS = {
    "Completed": "#1a7f37", "Failed": "#cf222e", "Stopped": "#9a6700", "Interrupted": "#9a6700",
    "InProgress": "#0969da", "Starting": "#6e7781", "Stopping": "#9a6700",
}
_EXTERNAL_ASSET = re.compile(
    r"<script\b[^>]*\bsrc=[\"']?(?:https?:)?//[^>]*>\s*</script>"
    r"|<link\b[^>]*\bhref=[\"']?(?:https?:)?//[^>]*>", re.IGNORECASE)


def run_page_key(experiment: str, run_id: str) -> str:
    return f"{ROOT}/runs/{experiment}/{run_id}.html"


def notebook_page_key(experiment: str, run_id: str) -> str:
    return f"{ROOT}/runs/{experiment}/{run_id}.notebook.html"


@dataclass
class ReportResult:
    index_url: str
    runs: int
    rendered: int
    notebooks: int


def render(store: Store, *, hide_inputs: bool = False, force: bool = False,
           echo: Callable[[str], None] = lambda _: None) -> ReportResult:
    """Bring `_report/` up to date with the store: new or changed runs, then the index."""
    try:
        state = json.loads(store.read_text(STATE))
    except (FileNotFoundError, ValueError):
        state = {}
    options = {"format": PAGE_FORMAT, "hide_inputs": hide_inputs}
    same_options = state.get("options") == options and not force
    rendered_before: dict[str, list[Any]] = state.get("runs", {}) if same_options else {}
    damaged: list[Any] = []
    entries = list(index.entries(store, damaged=damaged))
    for line in runs.damage_lines(damaged):
        echo(line)
    changed = [e for e in entries
               if rendered_before.get(_name(e)) != list(index.rank(e))]
    converter = _NotebookConverter(hide_inputs)

    skipped: dict[str, str] = {}

    def render_one(entry: dict[str, Any]) -> bool:
        try:
            return _render_run(store, entry, converter)
        except (FileNotFoundError, StoreError) as exc:
            # a record gone or damaged: the others are still rendered, and this one named
            skipped[_name(entry)] = "its record folder is gone" if isinstance(
                exc, FileNotFoundError) else str(exc)
            return False

    if store.local_path() is not None or len(changed) < 4:
        notebooks = sum(render_one(e) for e in changed)
    else:
        with ThreadPoolExecutor(8) as pool:  # on S3 each run is a handful of round trips
            notebooks = sum(pool.map(render_one, changed))
    changed = [e for e in changed if _name(e) not in skipped]
    for name, why in sorted(skipped.items()):
        echo(f"skipped {name}: {why}")
    sweeps = _render_sweeps(store)
    if changed or not same_options or sweeps:
        _publish(store, f"{ROOT}/index.html", index_page(entries, store.uri, sweeps))
    state = {"options": options,
             "runs": {**rendered_before, **{_name(e): list(index.rank(e)) for e in changed}}}
    store.write_text(STATE, json.dumps(state, separators=(",", ":")))
    echo(f"{len(changed)} of {len(entries)} run pages rendered ({notebooks} notebooks)"
         + (f", {len(skipped)} skipped (`sagebook fsck` says what to do)" if skipped else ""))
    return ReportResult(store.url(f"{ROOT}/index.html"), len(entries), len(changed), notebooks)


def sweep_page_key(experiment: str, sweep_id: str) -> str:
    return f"{ROOT}/sweeps/{experiment}/{sweep_id}.html"


def _render_sweeps(store: Store) -> list[dict[str, Any]]:
    """Every sweep's page (a handful of small records: always rendered); their summaries."""
    from .sweeps import page
    from .sweeps.record import all_sweeps

    summaries = []
    for sweep in all_sweeps(store):
        _publish(store, sweep_page_key(sweep.experiment, sweep.sweep_id), page.render(sweep))
        best = sweep.best()
        summaries.append({"id": sweep.sweep_id, "experiment": sweep.experiment,
                          "status": sweep.status, "strategy": sweep.manifest.get("strategy"),
                          "trials": len(sweep.trials),
                          "objective": (sweep.manifest.get("objective") or {}).get("metric"),
                          "best": best and best.get("objective")})
    return summaries


def _name(entry: dict[str, Any]) -> str:
    return f"{entry['experiment']}/{entry['run_id']}"


# --------------------------------------------------------------------------------------------
# Pages


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#1f2328}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse}td,th{padding:.25em .6em;border-bottom:1px solid #eaeef2;
text-align:left;vertical-align:top;white-space:nowrap}th{background:#f6f8fa;position:sticky;top:0}
th[data-col]{cursor:pointer;user-select:none}th.asc::after{content:" \\25B2"}
th.desc::after{content:" \\25BC"}td.num{text-align:right;font-variant-numeric:tabular-nums}
.status{font-weight:600}pre{background:#f6f8fa;padding:.8em;overflow:auto;max-height:40em}
.muted{color:#6e7781}.counts span{margin-right:1.2em}input{padding:.3em;width:22em}
a{color:#0969da}svg{background:#fff;border:1px solid #eaeef2;margin:.3em .6em .3em 0}
"""
_STATUS_CSS = "".join(f".s-{s}{{color:{c}}}" for s, c in STATUS_COLOURS.items())

_SORT_SCRIPT = """
(function(){
  var table=document.getElementById('runs'), body=table.tBodies[0];
  var heads=table.tHead.rows[0].cells;
  function value(row,i){var c=row.cells[i], v=c.getAttribute('data-v');
    if(v===null) v=c.textContent; var n=parseFloat(v);
    return (v!=='' && !isNaN(n) && isFinite(v)) ? n : v;}
  function sortBy(i,desc){
    var rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){var x=value(a,i), y=value(b,i);
      if(x===''&&y!=='') return 1; if(y===''&&x!=='') return -1;
      var r=(typeof x===typeof y)?(x<y?-1:x>y?1:0):String(x).localeCompare(String(y));
      return desc?-r:r;});
    rows.forEach(function(r){body.appendChild(r);});
    for(var j=0;j<heads.length;j++) heads[j].classList.remove('asc','desc');
    heads[i].classList.add(desc?'desc':'asc');}
  for(var i=0;i<heads.length;i++)(function(i){
    heads[i].addEventListener('click',function(){
      sortBy(i,!heads[i].classList.contains('desc')&&heads[i].classList.contains('asc'));});
  })(i);
  var filter=document.getElementById('filter');
  filter.addEventListener('input',function(){var q=filter.value.toLowerCase(), shown=0;
    Array.prototype.forEach.call(body.rows,function(r){
      var hit=r.textContent.toLowerCase().indexOf(q)>=0; r.style.display=hit?'':'none';
      if(hit) shown++;});
    document.getElementById('shown').textContent=shown;});
})();
"""


def _page(title: str, body: str, extra_css: str = "") -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}{_STATUS_CSS}{extra_css}</style>"
            f"</head><body>\n{body}\n</body></html>\n")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def metric_columns(entries: Iterable[dict[str, Any]], limit: int = MAX_METRIC_COLUMNS
                   ) -> list[str]:
    """The final metrics most runs report, most common first."""
    counts: Counter[str] = Counter()
    for entry in entries:
        counts.update((entry.get("final_metrics") or {}).keys())
    return [name for name, _ in counts.most_common(limit)]


def runs_table(entries: list[dict[str, Any]], metrics: list[str] | None = None,
               link: Callable[[dict[str, Any]], str | None] | None = None) -> str:
    """The runs as an HTML table (the report's index, and the dashboard notebook's table)."""
    metrics = metric_columns(entries) if metrics is None else metrics
    columns = ["run", "experiment", "user", "created", "instance", "status", "duration",
               *metrics, "commit", "notebook"]
    head = "".join(f"<th data-col=\"{_e(c)}\">{_e(c)}</th>" for c in columns)
    rows = []
    for entry in entries:
        href = link(entry) if link else None
        run = (f"<a href=\"{_e(href)}\">{_e(entry['run_id'])}</a>" if href
               else _e(entry["run_id"]))
        status = entry.get("status", "")
        seconds = runs.duration(entry)
        cells = [
            f"<td data-v=\"{_e(entry['run_id'])}\">{run}</td>",
            f"<td>{_e(entry.get('experiment'))}</td>",
            f"<td>{_e(entry.get('user'))}</td>",
            f"<td data-v=\"{_e(entry.get('created'))}\">{_e(_short_time(entry.get('created')))}"
            "</td>",
            f"<td>{_e(entry.get('instance_type'))}</td>",
            f"<td class=\"status s-{_e(status)}\" title=\"{_e(entry.get('failure_reason'))}\">"
            f"{_e(status)}</td>",
            f"<td class=\"num\" data-v=\"{'' if seconds is None else f'{seconds:.1f}'}\">"
            f"{runs.format_duration(seconds)}</td>",
        ]
        final = entry.get("final_metrics") or {}
        for name in metrics:
            value = final.get(name)
            cells.append(f"<td class=\"num\" data-v=\"{_e(value)}\">"
                         f"{'' if value is None else f'{value:.4g}'}</td>")
        cells.append(f"<td title=\"{_e(entry.get('git_commit'))}\">"
                     f"<code>{_e(runs.format_commit(entry))}</code></td>")
        notebook = entry.get("notebook")
        if href and notebook in ("completed", "failed"):  # captured: its page exists
            nb_href = href.removesuffix(".html") + ".notebook.html"
            cells.append(f"<td><a href=\"{_e(nb_href)}\">{_e(notebook)}</a></td>")
        else:
            cells.append(f"<td class=\"muted\">{_e(notebook)}</td>")
        rows.append(f"<tr data-run=\"{_e(entry['run_id'])}\">{''.join(cells)}</tr>")
    return (f"<table id=\"runs\"><thead><tr>{head}</tr></thead>\n<tbody>\n"
            + "\n".join(rows) + "\n</tbody></table>")


def _short_time(value: Any) -> str:
    parsed = runs.parse_time(value)
    return parsed.strftime("%Y-%m-%d %H:%M") if parsed else ""


def index_page(entries: list[dict[str, Any]], store_uri: str,
               sweeps: Iterable[dict[str, Any]] = ()) -> str:
    ordered = sorted(entries, key=lambda e: e.get("created") or "", reverse=True)
    counts = Counter(e.get("status", "?") for e in entries)
    summary = "".join(f"<span class=\"s-{_e(s)}\">{_e(s)}: {n}</span>"
                      for s, n in sorted(counts.items()))
    table = runs_table(ordered, link=lambda e: f"runs/{e['experiment']}/{e['run_id']}.html")
    body = (f"<h1>Experiments</h1><p class=\"muted\">{_e(store_uri)} — {len(entries)} runs"
            f"</p><p class=\"counts\">{summary}</p>"
            f"<p><input id=\"filter\" type=\"search\" placeholder=\"filter: user, status, "
            f"experiment, run…\"> <span class=\"muted\"><span id=\"shown\">{len(entries)}</span>"
            f" shown; click a column to sort</span></p>\n{table}\n{_sweep_list(sweeps)}"
            f"<script>{_SORT_SCRIPT}</script>")
    return _page("Experiments", body)


def _sweep_list(sweeps: Iterable[dict[str, Any]]) -> str:
    items = [f"<li><a href=\"sweeps/{_e(s['experiment'])}/{_e(s['id'])}.html\">{_e(s['id'])}"
             f"</a> {_e(s['experiment'])}: {_e(s['strategy'])}, {s['trials']} trials, "
             f"<span class=\"s-{_e(s['status'])}\">{_e(s['status'])}</span>"
             + (f", best {_e(s['objective'])} {s['best']:.4g}" if s["best"] is not None else "")
             + "</li>" for s in reversed(list(sweeps))]
    return f"<h2>Sweeps</h2><ul id=\"sweeps\">{''.join(items)}</ul>" if items else ""


def _render_run(store: Store, entry: dict[str, Any], converter: _NotebookConverter) -> bool:
    """Write the run's page (and its notebook's); True when there was a notebook."""
    record = Record.open(store, entry["experiment"], entry["run_id"])
    info = runs.details(record)
    has_notebook = "notebook.ipynb" in info.files
    if has_notebook:
        notebook = store.read_text(f"{record.prefix}/notebook.ipynb")
        _publish(store, notebook_page_key(record.experiment, record.run_id),
                 converter.page(notebook, f"{record.run_id} notebook"))
    _publish(store, run_page_key(record.experiment, record.run_id), run_page(info, has_notebook))
    return has_notebook


def _publish(store: Store, key: str, page: str) -> None:
    """A page is shown to whoever can read the store: masked like the record it comes from,
    also when that record was written by a sagebook that masked less."""
    store.write_text(key, redact(page))


def run_page(info: runs.RunDetails, has_notebook: bool) -> str:
    m = info.manifest
    record = info.record
    to_record = f"../../../{record.experiment}/{record.run_id}/"
    summary = index.summarize(m)
    git = m.get("git") or {}
    parent = m.get("parent") or {}
    parent_link = (f"<a href=\"../{_e(parent.get('experiment'))}/{_e(parent['run_id'])}.html\">"
                   f"{_e(parent['run_id'])}</a>" if parent.get("run_id") else "")
    facts = [
        ("status", f"<span class=\"status s-{_e(m.get('status'))}\">{_e(m.get('status'))}"
                   "</span>"),
        ("experiment", _e(record.experiment)),
        ("user", f"{_e(m.get('user'))}@{_e(m.get('host'))}"),
        ("created", _e(m.get("created"))),
        ("ended", _e(m.get("ended"))),
        ("duration", runs.format_duration(runs.duration(summary))),
        ("instance", f"{_e(m.get('instance_type'))} ({_e(m.get('backend'))})"),
        ("job", _e(m.get("job_name"))),
        ("launched via", _e(m.get("launched_via"))),
        ("image", _e(m.get("image_uri"))),
        ("git", f"<code>{_e(git['commit'])}</code> {_e(git.get('branch'))}"
                f"{' <b>dirty</b>' if git.get('dirty') else ''}" if git.get("commit")
         else _e(git.get("note"))),
        ("overrides", _e(", ".join((m.get("config") or {}).get("overrides") or []))),
        ("parent", parent_link),
        ("record", f"<a href=\"{to_record}manifest.json\">{_e(record.uri)}</a>"),
    ]
    if has_notebook:
        facts.append(("notebook", f"<a href=\"{_e(record.run_id)}.notebook.html\">executed "
                                  f"notebook</a> ({_e((m.get('notebook') or {}).get('status'))}"
                                  f") · <a href=\"{to_record}notebook.ipynb\">.ipynb</a>"))
    parts = [f"<p><a href=\"../../index.html\">← all runs</a></p><h1>{_e(record.run_id)}</h1>",
             "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts
                                 if v) + "</table>"]
    if m.get("failure_reason"):
        parts.append(f"<h2>Failure</h2><pre>{_e(m['failure_reason'])}</pre>")
        if info.failure:
            parts.append(f"<details><summary>failure.txt</summary><pre>{_e(info.failure)}"
                         "</pre></details>")
    parts.append("<h2>Status timeline</h2><table>" + "".join(
        f"<tr><td class=\"status s-{_e(h.get('status'))}\">{_e(h.get('status'))}</td>"
        f"<td>{_e(h.get('time'))}</td></tr>" for h in m.get("status_history") or []) + "</table>")
    final = m.get("final_metrics") or {}
    if final or info.metrics:
        parts.append("<h2>Metrics</h2><table>" + "".join(
            f"<tr><th>{_e(k)}</th><td class=\"num\">{v:.6g}</td></tr>"
            for k, v in final.items()) + "</table>")
        parts.append("".join(svg_chart(name, points) for name, points in info.metrics.items()))
    for title, text in (("Training config", info.training_config),
                        ("Job config", info.job_config)):
        if text:
            parts.append(f"<h2>{title}</h2><pre>{_e(text)}</pre>")
    if info.request is not None:
        parts.append("<h2>Request</h2><details><summary>CreateTrainingJob</summary><pre>"
                     f"{_e(json.dumps(info.request, indent=2))}</pre></details>")
    artifacts = []
    for name, uri in info.artifacts().items():
        local = name in info.files
        href = f"{to_record}{name}" if local else None
        artifacts.append(f"<tr><th>{_e(name)}</th><td>"
                         + (f"<a href=\"{_e(href)}\">{_e(uri)}</a>" if href else _e(uri))
                         + "</td></tr>")
    if artifacts:
        parts.append("<h2>Artifacts</h2><table>" + "".join(artifacts) + "</table>")
    return _page(f"{record.run_id} — {record.experiment}", "\n".join(parts))


def svg_chart(name: str, points: list[tuple[int | None, float, float | None]],
              width: int = 360, height: int = 180) -> str:
    """A metric's curve as inline SVG: no plotting library, no script, prints anywhere."""
    values = [(step if step is not None else i, value)
              for i, (step, value, _) in enumerate(points)]
    if not values:
        return ""
    pad = 32
    xs, ys = [v[0] for v in values], [v[1] for v in values]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (width - 2 * pad) / ((x1 - x0) or 1)
    sy = (height - 2 * pad) / ((y1 - y0) or 1)
    path = " ".join(f"{pad + (x - x0) * sx:.1f},{height - pad - (y - y0) * sy:.1f}"
                    for x, y in values)
    return (f"<svg role=\"img\" aria-label=\"{_e(name)}\" width=\"{width}\" height=\"{height}\""
            f" viewBox=\"0 0 {width} {height}\" xmlns=\"http://www.w3.org/2000/svg\">"
            f"<text x=\"{pad}\" y=\"18\" font-size=\"13\" font-weight=\"600\">{_e(name)}</text>"
            f"<text x=\"2\" y=\"{pad + 4}\" font-size=\"10\">{y1:.4g}</text>"
            f"<text x=\"2\" y=\"{height - pad}\" font-size=\"10\">{y0:.4g}</text>"
            f"<text x=\"{pad}\" y=\"{height - 8}\" font-size=\"10\">{x0}</text>"
            f"<text x=\"{width - pad}\" y=\"{height - 8}\" font-size=\"10\" "
            f"text-anchor=\"end\">{x1}</text>"
            f"<polyline fill=\"none\" stroke=\"#0969da\" stroke-width=\"2\" points=\"{path}\"/>"
            "</svg>")


class _NotebookConverter:
    """nbconvert's HTMLExporter, one per thread (exporters keep state while converting)."""

    def __init__(self, hide_inputs: bool):
        self.hide_inputs = hide_inputs
        self._local = threading.local()

    def page(self, notebook_json: str, title: str) -> str:
        import nbformat

        exporter = getattr(self._local, "exporter", None)
        if exporter is None:
            from nbconvert import HTMLExporter

            exporter = HTMLExporter(template_name="basic", exclude_input=self.hide_inputs,
                                    exclude_input_prompt=self.hide_inputs)
            self._local.exporter = exporter
        try:
            body, _ = exporter.from_notebook_node(nbformat.reads(notebook_json, as_version=4))
        except Exception as exc:  # a torn or foreign notebook must not stop the whole report
            body = f"<p>this notebook could not be rendered: {_e(exc)}</p>"
        return _page(title, _EXTERNAL_ASSET.sub("", body), _notebook_css())


_PYGMENTS_CSS: list[str] = []


def _notebook_css() -> str:
    if not _PYGMENTS_CSS:
        from pygments.formatters import HtmlFormatter

        _PYGMENTS_CSS.append(
            HtmlFormatter(style="default").get_style_defs(".highlight")
            # nbconvert's basic template marks cells up with the classic notebook's classes
            + ".cell{margin:.6em 0}.prompt{color:#6e7781;font-size:.85em}"
              ".input_area{background:#f6f8fa;padding:.2em .6em}.highlight pre{margin:0}"
              ".output_subarea pre{background:none;max-height:none;padding:.2em .6em}"
              ".output_area img{max-width:100%}td,th{white-space:normal}")
    return _PYGMENTS_CSS[0]
