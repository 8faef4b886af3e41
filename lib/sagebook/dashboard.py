"""The team dashboard's glue (notebooks/experiments.ipynb): the notebook only calls these.

Every view is an object that Jupyter displays by itself — tables through `_repr_html_`, plots
through `_repr_png_` — so the executed notebook holds real PNG images (for papermill, nbconvert
and the report) whichever matplotlib backend the kernel has, and the same calls work in a
plain Python session (`.figure`, `.html`). matplotlib is imported only here: it is the
`dashboard` extra, not a launch dependency.
"""

from __future__ import annotations

import html
import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import report, runs
from .record import Record
from .stores import Store

DIFFERS = ' style="background:#fff8c5"'
STATUS_ORDER = ("Completed", "InProgress", "Starting", "Stopping", "Failed", "Stopped",
                "Interrupted")


@dataclass
class Html:
    html: str

    def _repr_html_(self) -> str:
        return self.html


class Plot:
    """A matplotlib figure that shows as a PNG image in a notebook."""

    def __init__(self, figure: Any):
        self.figure = figure

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
        return buffer.getvalue()


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    return Figure(figsize=(width, height), layout="constrained")


class Dashboard:
    """The runs of one store (optionally one experiment), read once from the index."""

    def __init__(self, store: str | Store | None = None, experiment: str | None = None,
                 config: str | None = None, refresh: bool = True):
        self.store = store if isinstance(store, Store) else runs.store_from_args(store, config)
        self.experiment = experiment or None
        listing = runs.list_runs(self.store, runs.Filters(experiment=self.experiment),
                                 refresh=refresh)
        self.runs = listing.runs
        self.warning = listing.warning

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
                        for s, c in report.STATUS_COLOURS.items())
        return Html(f"<style>{style}</style>{note}{report.runs_table(shown)}")

    def status_counts(self) -> Plot:
        """How many runs ended how, per experiment (one bar segment per status)."""
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
                      color=report.STATUS_COLOURS.get(status, "#8c959f"))
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
            return [runs.find_run(self.store, ref) for ref in refs]
        chosen = [e for e in self.runs if e.get("final_metrics")][:default]
        return [Record.open(self.store, e["experiment"], e["run_id"]) for e in chosen]

    # metric curves -----------------------------------------------------------------------------

    def curves(self, record: Record) -> Plot:
        """Every metric of one run, one panel each."""
        series = runs.metric_series(record)
        names = sorted(series) or ["(no metrics)"]
        figure = _figure(3.2 * min(len(names), 3), 2.6 * ((len(names) + 2) // 3))
        for i, name in enumerate(names):
            axes = figure.add_subplot((len(names) + 2) // 3, min(len(names), 3), i + 1)
            points = series.get(name, [])
            axes.plot([_step(p, j) for j, p in enumerate(points)], [p[1] for p in points],
                      marker="o", markersize=3)
            axes.set_title(name, fontsize="medium")
            axes.set_xlabel("step")
        figure.suptitle(f"{record.run_id} ({record.status})", fontsize="medium")
        return Plot(figure)

    def overlay(self, records: Sequence[Record], metrics: Sequence[str] | str = ()) -> Plot:
        """The chosen runs on one set of axes per metric, to compare their curves."""
        series = {r.run_id: runs.metric_series(r) for r in records}
        shown = names(metrics) or sorted({n for s in series.values() for n in s})
        shown = shown or ["(no metrics)"]
        figure = _figure(4.2 * min(len(shown), 3), 3.0 * ((len(shown) + 2) // 3))
        for i, name in enumerate(shown):
            axes = figure.add_subplot((len(shown) + 2) // 3, min(len(shown), 3), i + 1)
            for run_id, run_series in series.items():
                points = run_series.get(name, [])
                if points:
                    axes.plot([_step(p, j) for j, p in enumerate(points)],
                              [p[1] for p in points], marker="o", markersize=3, label=run_id)
            axes.set_title(name, fontsize="medium")
            axes.set_xlabel("step")
            if axes.lines:
                axes.legend(fontsize="x-small")
        return Plot(figure)

    # comparing configs -------------------------------------------------------------------------

    def sweep(self, ref: str) -> Html:
        """A sweep's page, as in the report: its trials, the objective per trial over time,
        each parameter against the objective, parallel coordinates (SageMaker sweeps are
        refreshed first)."""
        from .sweeps import find_sweep, page, refresh

        return Html(page.render(refresh(find_sweep(self.store, ref)), run_link=""))

    def diff(self, a: Record, b: Record, show_all: bool = False) -> Html:
        """Both runs' configs key by key (the differences, unless show_all), and metrics."""
        rows = [r for r in runs.diff(a, b) if show_all or not r.same or r.section == "metrics"]
        body = "".join(
            f"<tr{'' if r.same else DIFFERS}>"
            f"<td>{html.escape(r.section)}</td><td><code>{html.escape(r.key)}</code></td>"
            f"<td>{html.escape(_cell(r.a))}</td><td>{html.escape(_cell(r.b))}</td></tr>"
            for r in rows)
        return Html(f"<table><tr><th></th><th>key</th><th>{html.escape(a.run_id)}</th>"
                    f"<th>{html.escape(b.run_id)}</th></tr>{body}</table>")


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


def _step(point: tuple[int | None, float, float | None], index: int) -> int:
    return point[0] if point[0] is not None else index


def _cell(value: Any) -> str:
    return "—" if value is None else str(value)
