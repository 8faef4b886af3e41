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
from typing import Any

from . import charts, report
from .record import Record
from .runs.details import diff, metric_series
from .runs.listing import Filters, differing_params, list_runs
from .runs.lookup import find_run, store_from_args
from .runs.text import format_param
from .secrets import redact
from .stores import Store
from .sweeps import page as sweep_page
from .sweeps.control import refresh
from .sweeps.record import find_sweep

DIFFERS = ' style="background:#fff8c5"'
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
        self.missing = plotting_missing()
        if self.missing:
            self.warning = "\n".join(filter(None, [self.warning, self.missing]))

    def __repr__(self) -> str:
        scope = f" (experiment {self.experiment})" if self.experiment else ""
        return f"{len(self.runs)} runs in {self.store.uri}{scope}"

    # tables ---------------------------------------------------------------------------------

    def table(self, limit: int = 50) -> Html:
        """The newest runs: status, duration, final metrics, commit."""
        shown = self.runs[:limit]
        note = (f"<p>{len(shown)} newest of {len(self.runs)} runs</p>"
                if len(self.runs) > limit else "")
        style = "".join(f".s-{s}{{color:{c};font-weight:600}}"
                        for s, c in charts.STATUS_COLOURS.items())
        return Html(f"<style>{style}</style>{note}{report.runs_table(shown)}")

    def status_counts(self) -> Plot | Missing:
        """How many runs ended how, per experiment (one bar segment per status)."""
        if self.missing:
            return Missing(self.missing)
        counts: dict[str, Counter[str]] = {}
        for entry in self.runs:
            counts.setdefault(entry["experiment"], Counter())[entry.get("status", "?")] += 1
        experiments = sorted(counts)
        statuses = [s for s in STATUS_ORDER if any(c[s] for c in counts.values())]
        statuses += sorted({s for c in counts.values() for s in c} - set(statuses))
        figure = _figure(7, 0.5 + 0.45 * max(len(experiments), 1))
        axes = figure.add_subplot()
        left = [0] * len(experiments)
        for status in statuses:
            values = [counts[e][status] for e in experiments]
            axes.barh(experiments, values, left=left, label=f"{status}",
                      color=charts.STATUS_COLOURS.get(status, "#8c959f"))
            left = [a + b for a, b in zip(left, values, strict=True)]
        axes.set_xlabel("runs")
        axes.set_title("runs by status")
        if statuses:
            axes.legend(loc="lower right", fontsize="small")
        return Plot(figure)

    def status_table(self) -> Html:
        counts = Counter(e.get("status", "?") for e in self.runs)
        rows = "".join(f"<tr><td class=\"s-{html.escape(s)}\">{html.escape(s)}</td>"
                       f"<td>{n}</td></tr>" for s, n in counts.most_common())
        return Html(f"<table><tr><th>status</th><th>runs</th></tr>{rows}</table>")

    # choosing runs ----------------------------------------------------------------------------

    def select(self, refs: Sequence[str] | str = (), default: int = 3) -> list[Record]:
        """The runs named (any form `sagebook show` takes), else the newest finished ones that
        have metrics."""
        refs = names(refs)
        if refs:
            return [find_run(self.store, ref) for ref in refs]
        chosen = [e for e in self.runs if e.get("final_metrics")][:default]
        return [Record.open(self.store, e["experiment"], e["run_id"]) for e in chosen]

    # metric curves -----------------------------------------------------------------------------

    def curves(self, record: Record) -> Plot | Html | Missing:
        """Every metric of one run, one panel each, over the log's own steps (epochs)."""
        if self.missing:
            return Missing(self.missing)
        series = metric_series(record)
        if not series:  # say so, rather than draw an empty box
            why = ("it failed before reporting any" if record.status in
                   ("Failed", "Stopped", "Interrupted", "Lost") else "none were reported")
            reason = str(record.manifest.get("failure_reason") or "").strip().splitlines()
            return Html(f"<p><b>{html.escape(record.run_id)}</b> ({html.escape(record.status)})"
                        f" has no metrics: {why}"
                        + (f" — {html.escape(reason[0][:300])}" if reason else "") + "</p>")
        names = sorted(series)
        figure = _figure(3.2 * min(len(names), 3), 2.6 * ((len(names) + 2) // 3))
        for i, name in enumerate(names):
            axes = figure.add_subplot((len(names) + 2) // 3, min(len(names), 3), i + 1)
            points = series.get(name, [])
            axes.plot([p[0] for p in points], [p[1] for p in points],
                      marker="o" if len(points) <= charts.MAX_DOTS else None, markersize=3)
            axes.set_title(name, fontsize="medium")
            axes.set_xlabel("step")
        figure.suptitle(f"{record.run_id} ({record.status})", fontsize="medium")
        return Plot(figure)

    def overlay(self, records: Sequence[Record],
                metrics: Sequence[str] | str = ()) -> Plot | Missing:
        """The chosen runs on one set of axes per metric, to compare their curves."""
        if self.missing:
            return Missing(self.missing)
        series = {r.run_id: metric_series(r) for r in records}
        labels = legend_labels(records)
        shown = names(metrics) or sorted({n for s in series.values() for n in s})
        shown = shown or ["(no metrics)"]
        figure = _figure(4.2 * min(len(shown), 3), 3.0 * ((len(shown) + 2) // 3))
        for i, name in enumerate(shown):
            axes = figure.add_subplot((len(shown) + 2) // 3, min(len(shown), 3), i + 1)
            for run_id, run_series in series.items():
                points = run_series.get(name, [])
                if points:
                    axes.plot([p[0] for p in points], [p[1] for p in points],
                              marker="o" if len(points) <= charts.MAX_DOTS else None,
                              markersize=3, label=labels[run_id])
            axes.set_title(name, fontsize="medium")
            axes.set_xlabel("step")
            if axes.lines:
                axes.legend(fontsize="x-small")
        return Plot(figure)

    def compare(self, metric: str | None = None, limit: int = charts.MAX_CHARTED) -> Html:
        """The runs' parameters against a final metric, one scatter per parameter that differs
        among them, and parallel coordinates over those parameters and the main metrics — the
        same charts as the report's index."""
        chosen = self.runs[:limit]
        metrics = report.metric_columns(chosen)
        if metric:
            metrics = [metric] + [m for m in metrics if m != metric]
        params = differing_params(chosen)[:charts.MAX_CHART_PARAMS]
        macros = charts.templates().get_template("report_macros.html").module
        parts = [str(macros.styles(charts.STATUS_COLOURS))]
        parallel = charts.parallel_chart(chosen, params, metrics[:3])
        if parallel:
            parts.append(str(macros.parallel(parallel)))
        if metrics:
            parts += [str(macros.scatter(charts.scatter_chart(chosen, p, metrics[0])))
                      for p in params]
        if len(parts) == 1:
            parts.append("<p>nothing to compare: no parameter differs among runs with "
                         "metrics</p>")
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
            f"<td>{html.escape(_cell(r.a))}</td><td>{html.escape(_cell(r.b))}</td></tr>"
            for r in rows)
        return Html(f"<table><tr><th></th><th>key</th><th>{html.escape(a.run_id)}</th>"
                    f"<th>{html.escape(b.run_id)}</th></tr>{body}</table>")


def legend_labels(records: Sequence[Record]) -> dict[str, str]:
    """Each run named by what differs between the runs (`learning_rate=0.1, epochs=20`), or
    by its name or id when nothing does."""
    entries = [{"params": r.manifest.get("params") or {}} for r in records]
    differing = differing_params(entries)[:3]
    labels = {}
    for record, entry in zip(records, entries, strict=True):
        text = ", ".join(f"{k}={format_param(entry['params'].get(k))}" for k in differing)
        labels[record.run_id] = text or record.run_id
    if len(set(labels.values())) < len(labels):  # not enough to tell them apart: add the id
        labels = {k: f"{v} ({k[-6:]})" if v != k else v for k, v in labels.items()}
    return labels


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


def _cell(value: Any) -> str:
    return "—" if value is None else str(value)
