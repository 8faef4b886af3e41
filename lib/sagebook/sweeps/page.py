"""A sweep's page, for the report and the dashboard: its trials, the objective per trial over
time, each parameter against the objective, and parallel coordinates.

The charts are the report's (charts.py: inline SVG, no script, nothing fetched): this module
hands them the trials as runs and works out the one chart of its own, and
`templates/sweep.html` draws them with the report's macros, escaping as it goes.
"""

from __future__ import annotations

from typing import Any

from ..charts import (
    STATUS_COLOURS,
    Axis,
    frame,
    is_number,
    parallel_chart,
    scatter_chart,
    status_colour,
    templates,
    x_pixel,
    y_pixel,
)
from ..inputs import DamagedFile, parse_yaml_text
from ..printing import cell_text
from ..runs.listing import parse_time
from .record import SweepRecord

BEST = "#8250df"  # the best trial, in the chart over time and in the table


def context(record: SweepRecord, run_link: str = "../../runs/{experiment}/{run_id}.html"
            ) -> dict[str, Any]:
    """Everything the template draws, in pixels: the report's own scatter and parallel
    coordinates over the trials, and the objective per trial over time."""
    m = record.manifest
    objective = m.get("objective") or {}
    metric, maximize = objective.get("metric", ""), objective.get("goal") == "maximize"
    keys = list(m.get("parameters") or [])
    try:
        where = record.store.url(f"{record.prefix}/sweep.yaml")
        spec = parse_yaml_text(record.read_text("sweep.yaml"), where) or {}
    except (FileNotFoundError, DamagedFile):
        spec = {}
    logs = {k for k, p in (spec.get("parameters") or {}).items()
            if isinstance(p, dict) and p.get("scale") == "log"}
    best = record.best()
    trials = []
    for entry in record.trials:
        trials.append({
            **entry, "best": best is not None and entry["trial"] == best["trial"],
            "link": run_link.format(experiment=record.experiment, run_id=entry["run_id"])
            if entry.get("run_id") and run_link else None,
            "cells": [cell_text(entry.get("parameters", {}).get(k, "")) for k in keys],
        })
    scored = [t for t in trials if is_number(t.get("objective"))]
    # the trials as the report's charts take runs
    runs = [{"run_id": t.get("run_id") or f"trial {t['trial']}",
             "status": t.get("status"), "params": t["parameters"],
             "final_metrics": {metric: t["objective"]}} for t in scored]
    charts: dict[str, Any] = {"over_time": None, "scatters": [], "parallel": None}
    if scored:
        charts["over_time"] = _over_time(scored, Axis.of(metric, [t["objective"] for t in scored]),
                                         maximize)
        charts["scatters"] = [scatter_chart(runs, k, metric, logs) for k in keys]
        charts["parallel"] = parallel_chart(runs, keys, [metric], logs)
    counts = record.status_counts()
    return {"sweep": m, "id": record.sweep_id, "metric": metric, "keys": keys,
            "trials": trials, "best": best, "counts": sorted(counts.items()),
            "charts": charts, "status_colours": {**STATUS_COLOURS, "best": BEST}}


def _over_time(scored: list[dict[str, Any]], y_axis: Axis, maximize: bool) -> dict[str, Any]:
    """Each finished trial at its end time, and the best so far as a step line."""
    ends = [parse_time(t.get("ended")) for t in scored]
    times = [end.timestamp() if end else None for end in ends]
    if any(t is None for t in times):  # cloud trials without an end time: trial order
        times = [float(t["trial"]) for t in scored]
    x_axis = Axis("time", "linear", min(times), max(times))  # type: ignore[type-var]
    order = sorted(zip(times, scored, strict=True), key=lambda p: p[0])
    chart = frame(f"{y_axis.name} per trial, by end time", "end time", y_axis.name)
    chart["y_ticks"] = [(y_pixel(f), label) for f, label in y_axis.ticks()]
    points, steps, best = [], [], None
    for when, trial in order:
        x, y = x_pixel(x_axis.position(when)), y_pixel(y_axis.position(trial["objective"]))
        points.append({"x": x, "y": y, "colour": BEST if trial["best"] else status_colour(trial),
                       "title": f"trial {trial['trial']}: {trial['objective']:.4g}"})
        if best is None or (trial["objective"] > best if maximize else trial["objective"] < best):
            best = trial["objective"]
        steps.append(f"{x},{y_pixel(y_axis.position(best))}")
    chart.update(points=points, best_line=" ".join(steps))
    return chart


def render(record: SweepRecord, **links: str) -> str:
    """The sweep's page as one self-contained HTML document."""
    return templates().get_template("sweep.html").render(**context(record, **links))
