"""The team dashboard's glue (notebooks/experiments.ipynb): the notebook only calls these.

Every view is an object that Jupyter displays by itself — tables through `_repr_html_`, plots
through `_repr_png_` — so the executed notebook holds real PNG images (for papermill, nbconvert
and the report) whichever matplotlib backend the kernel has, and the same calls work in a
plain Python session (`.figure`, `.html`). matplotlib is imported only here: it is the
`notebook` extra, not a launch dependency, and where it is missing each plot is one line that
says how to install it, while the tables still show.
"""

from __future__ import annotations

import html
import importlib.util
import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from . import charts, report
from .record import Record
from .runs.details import diff, metric_series, value_text
from .runs.listing import Filters, differing_params, list_runs
from .runs.lookup import find_run, store_from_args
from .secrets import redact
from .stores import Store
from .sweeps import page as sweep_page
from .sweeps.control import refresh
from .sweeps.record import find_sweep

DIFFERS = ' style="background:#fff8c5"'
# the table's columns that, holding one value for every run shown, are said once above it
SAID_ONCE = {"experiment": "experiment", "user": "user", "instance": "instance_type"}
STATUS_ORDER = ("Completed", "InProgress", "Starting", "Stopping", "Failed", "Stopped",
                "Interrupted")


@dataclass
class Html:
    """A view as HTML, its credentials masked as the report's pages are: record fields are
    whatever a store writer put there, and the executed dashboard is a file that gets shared."""

    html: str

    def _repr_html_(self) -> str:
        return redact(self.html)

    def __repr__(self) -> str:  # the text/plain beside the HTML in a notebook's output
        return f"<{len(self.html):,} characters of HTML>"


class Plot:
    """A matplotlib figure that shows as a PNG image in a notebook, every text in it (titles,
    labels, legends: metric names, parameters, run names) masked as the HTML views are."""

    def __init__(self, figure: Any):
        self.figure = figure

    def _repr_png_(self) -> bytes:
        from matplotlib.text import Text

        for text in self.figure.findobj(Text):
            text.set_text(redact(text.get_text()))
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
        return buffer.getvalue()


class Missing:
    """A plot that cannot be drawn in this environment: one line saying what to install, in
    place of a ModuleNotFoundError traceback."""

    def __init__(self, line: str):
        self.line = line

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self.line)}</p>"

    def __repr__(self) -> str:
        return self.line


def plotting_missing() -> str | None:
    """What to run when matplotlib is not installed (the requirement as sagebook's notebook
    extra states it), else None."""
    if importlib.util.find_spec("matplotlib") is not None:
        return None
    wanted = next((r.split(";")[0].strip() for r in metadata.requires("sagebook") or []
                   if r.startswith("matplotlib") and 'extra == "notebook"' in r), "matplotlib")
    return (f"no plots: matplotlib is not installed here; run `%pip install '{wanted}'` in a "
            "cell (or install sagebook with its notebook extra: pip install "
            "'sagebook[notebook]') and restart the kernel")


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    return Figure(figsize=(width, height), layout="constrained")


def _label_axes(axes: Any, x_label: str, y_label: str, whole_x: bool = True) -> None:
    """Both axes named, whole-number ticks on x when it counts epochs, steps or runs, and a
    light grid to read values off."""
    from matplotlib.ticker import MaxNLocator

    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    if whole_x:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, color="#eaeef2", linewidth=0.8)


def _unit(units: dict[str, str], names: Sequence[str]) -> str:
    """The x axis's name: what the log counted (epoch, step, iteration), "step" otherwise."""
    found = {units[n] for n in names if n in units}
    return found.pop() if len(found) == 1 else "step"


class Dashboard:
    """The runs of one store (optionally one experiment), read once from the index."""

    def __init__(self, store: str | Store | None = None, experiment: str | None = None,
                 config: str | None = None, refresh: bool = True):
        self.store = store if isinstance(store, Store) else store_from_args(store, config)
        self.experiment = experiment or None
        listing = list_runs(self.store, Filters(experiment=self.experiment),
                            refresh=refresh)
        self.runs = listing.runs
        self.warning = redact(listing.warning) if listing.warning else listing.warning
        self.colour = charts.RunColours()  # a run's colour, the same in every plot and chart
        self.chosen: list[Record] = []  # the last selection: curves are titled against it
        self.left_out: list[str] = []  # what the default selection could not show, said
        self._main: list[str | None] = []
        self.missing = plotting_missing()
        if self.missing:
            self.warning = "\n".join(filter(None, [self.warning, self.missing]))

    @property
    def main_metric(self) -> str | None:
        """The objective (`report.main_metric`): what the table and the charts lead with."""
        if not self._main:
            self._main.append(report.main_metric(self.store, self.runs))
        return self._main[0]

    def __repr__(self) -> str:
        scope = f" (experiment {self.experiment})" if self.experiment else ""
        return f"{len(self.runs)} runs in {self.store.uri}{scope}"

    # tables ---------------------------------------------------------------------------------

    def table(self, limit: int = 50) -> Html:
        """The newest runs: status, failure, duration, final metrics (the main one first), the
        parameters that differ, commit; one line per run, in a box that scrolls sideways
        rather than spill out of the notebook when there are many columns."""
        shown = self.runs[:limit]
        note = (f"<p>{len(shown)} newest of {len(self.runs)} runs</p>"
                if len(self.runs) > limit else "")
        style = "".join(f".s-{s}{{color:{c};font-weight:600}}"
                        for s, c in charts.STATUS_COLOURS.items())
        style += ("#runs td,#runs th{white-space:nowrap;padding:.2em .5em}"
                  "#runs td.failure{max-width:22em;overflow:hidden;text-overflow:ellipsis}")
        metrics = report.leading(report.metric_columns(shown), self.main_metric)
        params = differing_params(shown)[:report.MAX_PARAM_COLUMNS]
        same = {column: values.pop() for column, field in SAID_ONCE.items()
                if len(shown) > 1 and len(values := {e.get(field) for e in shown}) == 1}
        if same:  # said once above the table rather than repeated down a column
            note += "<p>all: " + ", ".join(f"{k} <b>{html.escape(str(v))}</b>"
                                           for k, v in same.items() if v) + "</p>"
        table = report.runs_table(shown, metrics, params=params, hide=same)
        return Html(f"<style>{style}</style>{note}"
                    f'<div class="runs-box" style="max-width:100%;overflow-x:auto">{table}</div>')

    def status_counts(self) -> Plot | Missing:
        """How many runs ended how, per experiment (one bar segment per status), the legend
        beside the bars."""
        if self.missing:
            return Missing(self.missing)
        counts: dict[str, Counter[str]] = {}
        for entry in self.runs:
            counts.setdefault(entry["experiment"], Counter())[entry.get("status", "?")] += 1
        experiments = sorted(counts)
        statuses = [s for s in STATUS_ORDER if any(c[s] for c in counts.values())]
        statuses += sorted({s for c in counts.values() for s in c} - set(statuses))
        figure = _figure(7, 0.9 + 0.45 * max(len(experiments), 1))
        axes = figure.add_subplot()
        left = [0] * len(experiments)
        for status in statuses:
            values = [counts[e][status] for e in experiments]
            axes.barh(experiments, values, left=left, label=f"{status}",
                      color=charts.STATUS_COLOURS.get(status, "#8c959f"))
            left = [a + b for a, b in zip(left, values, strict=True)]
        _label_axes(axes, "runs", "experiment")
        axes.set_title("runs by status")
        if statuses:
            figure.legend(loc="outside right upper", fontsize="small", frameon=False)
        return Plot(figure)

    def status_table(self) -> Html:
        counts = Counter(e.get("status", "?") for e in self.runs)
        rows = "".join(f"<tr><td class=\"s-{html.escape(s)}\">{html.escape(s)}</td>"
                       f"<td>{n}</td></tr>" for s, n in counts.most_common())
        return Html(f"<table><tr><th>status</th><th>runs</th></tr>{rows}</table>")

    # choosing runs ----------------------------------------------------------------------------

    def select(self, refs: Sequence[str] | str = (), default: int = 3) -> list[Record]:
        """The runs named (any form `sagebook show` takes), else the newest `default` that have
        metrics together with the runs that ended without any since the oldest of those (the
        newest failure shows its reason); `left_out` says what that leaves out."""
        refs = names(refs)
        self.left_out = []
        if refs:
            self.chosen = [find_run(self.store, ref) for ref in refs]
            return self.chosen
        with_metrics = [e for e in self.runs if e.get("final_metrics")][:default]
        newer = self.runs[:self.runs.index(with_metrics[-1]) + 1] if with_metrics else self.runs
        ended = [e for e in newer if not e.get("final_metrics")
                 and e.get("status") in ("Failed", "Stopped", "Interrupted", "Lost")]
        chosen = [e for e in newer if e in with_metrics or e in ended[:default]]
        if len(ended) > default:
            self.left_out.append(f"{len(ended) - default} more runs that ended without "
                                 "metrics are not shown (the table lists them)")
        self.chosen = [Record.open(self.store, e["experiment"], e["run_id"]) for e in chosen]
        return self.chosen

    # metric curves -----------------------------------------------------------------------------

    def curves(self, record: Record) -> Plot | Html | Missing:
        """Every metric of one run, one panel each, over the log's own steps (epochs), in the
        run's colour and titled by what differs from the other runs."""
        if self.missing:
            return Missing(self.missing)
        units: dict[str, str] = {}
        series = metric_series(record, units=units)
        if not series:  # say so, rather than draw an empty box
            why = ("it failed before reporting any" if record.status in
                   ("Failed", "Stopped", "Interrupted", "Lost") else "none were reported")
            reason = str(record.manifest.get("failure_reason") or "").strip().splitlines()
            return Html(f"<p><b>{html.escape(record.run_id)}</b> ({html.escape(record.status)})"
                        f" has no metrics: {why}"
                        + (f" — {html.escape(reason[0][:300])}" if reason else "") + "</p>")
        names = sorted(series)
        figure = _figure(3.2 * min(len(names), 3), 0.4 + 2.6 * ((len(names) + 2) // 3))
        colour = self.colour(record.run_id)
        for i, name in enumerate(names):
            axes = figure.add_subplot((len(names) + 2) // 3, min(len(names), 3), i + 1)
            points = series.get(name, [])
            axes.plot([p[0] for p in points], [p[1] for p in points], color=colour,
                      marker="o" if len(points) <= charts.MAX_DOTS else None, markersize=3)
            axes.set_title(name, fontsize="medium")
            _label_axes(axes, _unit(units, [name]), name)
        label = self._labels().get(record.run_id)
        title = f"{record.run_id} ({record.status})" + (
            f": {label}" if label and label != record.run_id else "")
        figure.suptitle(title, fontsize="medium", color=colour)
        return Plot(figure)

    def _labels(self) -> dict[str, str]:
        """Each run named by what differs among the runs shown (`charts.run_labels`)."""
        return legend_labels(self.chosen) if self.chosen else {}

    def overlay(self, records: Sequence[Record],
                metrics: Sequence[str] | str = ()) -> Plot | Missing:
        """The chosen runs on one set of axes per metric, to compare their curves: each run in
        its colour, one legend for all the plots, beside them, naming each run by what
        differs."""
        if self.missing:
            return Missing(self.missing)
        units: dict[str, str] = {}
        series = {r.run_id: metric_series(r, units=units) for r in records}
        labels = legend_labels(records)
        shown = names(metrics) or sorted({n for s in series.values() for n in s})
        shown = shown or ["(no metrics)"]
        columns, rows = min(len(shown), 3), (len(shown) + 2) // 3
        figure = _figure(3.6 * columns + 2.4, 2.8 * rows)
        handles: dict[str, Any] = {}
        for i, name in enumerate(shown):
            axes = figure.add_subplot(rows, columns, i + 1)
            for run_id, run_series in series.items():
                points = run_series.get(name, [])
                if points:
                    handles[run_id], = axes.plot(
                        [p[0] for p in points], [p[1] for p in points], color=self.colour(run_id),
                        marker="o" if len(points) <= charts.MAX_DOTS else None, markersize=3)
            axes.set_title(name, fontsize="medium")
            _label_axes(axes, _unit(units, [name]), name)
        ordered = [r.run_id for r in records if r.run_id in handles]
        if ordered:
            figure.legend([handles[k] for k in ordered], [labels[k] for k in ordered],
                          loc="outside right upper", fontsize="small", frameon=False)
        return Plot(figure)

    def compare(self, metric: str | None = None, limit: int = charts.MAX_CHARTED) -> Html:
        """The runs' parameters against the main metric (the objective, `main_metric`), one
        scatter per parameter that differs among them, and parallel coordinates over those
        parameters and the main metrics — the same charts as the report's index, a run in the
        colour it has in the plots (or, beyond ten runs, coloured by the main metric), under
        one legend."""
        chosen = [e for e in self.runs[:limit] if e.get("final_metrics")]
        metrics = report.leading(report.metric_columns(chosen), metric or self.main_metric)
        params = differing_params(chosen)[:charts.MAX_CHART_PARAMS]
        macros = charts.templates().get_template("report_macros.html").module
        parts = [str(macros.styles(charts.STATUS_COLOURS))]
        shown = charts.colouring(chosen, metrics[0] if metrics else None, self.colour)
        parallel = charts.parallel_chart(chosen, params, metrics[:3], colours=shown.colours)
        if parallel:
            parts.append(str(macros.parallel(parallel)))
        if metrics:
            parts += [str(macros.scatter(charts.scatter_chart(chosen, p, metrics[0],
                                                              colours=shown.colours)))
                      for p in params]
        if len(parts) == 1:
            parts.append("<p>nothing to compare: no parameter differs among runs with "
                         "metrics</p>")
        else:
            parts[1:1] = [f'<p>main metric: <b class="main-metric">{html.escape(metrics[0])}'
                          "</b></p>", str(macros.legend(shown))]
        return Html("".join(parts))

    # comparing configs -------------------------------------------------------------------------

    def sweep(self, ref: str) -> Html:
        """A sweep's page, as in the report: its trials, the objective per trial over time,
        each parameter against the objective, parallel coordinates (SageMaker sweeps are
        refreshed first)."""
        return Html(sweep_page.render(refresh(find_sweep(self.store, ref)), run_link=""))

    def diff(self, a: Record, b: Record, show_all: bool = False) -> Html:
        """Both runs' configs key by key (the differences, unless show_all), and metrics."""
        rows = [r for r in diff(a, b) if show_all or not r.same or r.section == "metrics"]
        body = "".join(
            f"<tr{'' if r.same else DIFFERS}>"
            f"<td>{html.escape(r.section)}</td><td><code>{html.escape(r.key)}</code></td>"
            f"<td>{html.escape(value_text(r.a))}</td><td>{html.escape(value_text(r.b))}</td></tr>"
            for r in rows)
        return Html(f"<table><tr><th></th><th>key</th><th>{html.escape(a.run_id)}</th>"
                    f"<th>{html.escape(b.run_id)}</th></tr>{body}</table>")


def legend_labels(records: Sequence[Record]) -> dict[str, str]:
    """Each run named by what differs between the runs (`learning_rate=0.1, epochs=20`, "+N
    more" past a few), or by its id when nothing does (`charts.run_labels`)."""
    return charts.run_labels([{"run_id": r.run_id, "params": r.manifest.get("params")}
                              for r in records])


def names(value: Sequence[str] | str | None) -> list[str]:
    """A list of names from a list, or from what `papermill -p` makes of one: a JSON list or
    a comma-separated string."""
    if not value:
        return []
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value.split(",")
        value = parsed if isinstance(parsed, list) else [str(parsed)]
    return [str(v).strip() for v in value if str(v).strip()]


# nbconvert's `lab` page without what it fetches from a CDN (require.js, MathJax, mermaid,
# the widgets' manager): the executed dashboard holds tables, SVG and PNG images, none of
# which needs them, and the page opens offline.
_OFFLINE_PAGE = """{%- extends 'index.html.j2' -%}
{% block html_head_js_requirejs %}{% endblock %}
{% block jupyter_widgets %}{% endblock %}
{% block html_head_js_mathjax %}{% endblock %}
{% block html_head_js_mermaidjs %}{% endblock %}
"""


def export_html(notebook: str | Path, target: str | Path) -> Path:
    """The executed dashboard as one HTML file that fetches nothing (`jupyter nbconvert
    --to html` loads require.js and MathJax from cdnjs): JupyterLab's look, every image and
    style inline."""
    import jinja2  # heavy, as are nbconvert and nbformat: only an export loads them
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", template_file="offline.html.j2",
                            extra_loaders=[jinja2.DictLoader({"offline.html.j2": _OFFLINE_PAGE})])
    body, _ = exporter.from_notebook_node(nbformat.read(str(notebook), as_version=4))
    Path(target).write_text(body, encoding="utf-8")
    return Path(target)
