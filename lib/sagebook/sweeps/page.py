"""A sweep's page, for the report and the dashboard: its trials, the objective per trial over
time, each parameter against the objective, and parallel coordinates.

The charts are the report's (inline SVG, no script, nothing fetched): this module hands it the
trials as runs and works out the one chart of its own, and `templates/sweep.html` draws them
with the report's macros, escaping as it goes.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from .record import SweepRecord

BEST = "#8250df"  # the best trial, in every chart


@dataclass
class Axis:
    """Where a parameter's (or the objective's) values sit on a 0..1 scale."""

    name: str
    kind: str  # linear, log or categorical
    low: float = 0.0
    high: float = 1.0
    categories: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, values: list[Any], log: bool = False) -> Axis:
        numbers = [v for v in values if _is_number(v)]
        if values and len(numbers) == len(values):
            if log and min(numbers) > 0:
                return cls(name, "log", math.log10(min(numbers)), math.log10(max(numbers)))
            return cls(name, "linear", float(min(numbers)), float(max(numbers)))
        seen: list[str] = []
        for value in values:
            if _label(value) not in seen:
                seen.append(_label(value))
        return cls(name, "categorical", categories=seen)

    def position(self, value: Any) -> float:
        if self.kind == "categorical":
            if len(self.categories) < 2:
                return 0.5
            return self.categories.index(_label(value)) / (len(self.categories) - 1)
        number = math.log10(value) if self.kind == "log" else float(value)
        return 0.5 if self.high == self.low else (number - self.low) / (self.high - self.low)

    def ticks(self) -> list[tuple[float, str]]:
        if self.kind == "categorical":
            return [(self.position(c), c) for c in self.categories]
        ends = (self.low, self.high)
        shown = [10 ** e if self.kind == "log" else e for e in ends]
        return [(0.0, f"{shown[0]:.3g}"), (1.0, f"{shown[1]:.3g}")]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _time(text: Any) -> float | None:
    try:
        return _dt.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def context(record: SweepRecord, run_link: str = "../../runs/{experiment}/{run_id}.html"
            ) -> dict[str, Any]:
    """Everything the template draws, in pixels: the report's own scatter and parallel
    coordinates over the trials, and the objective per trial over time."""
    from .. import report

    m = record.manifest
    objective = m.get("objective") or {}
    metric, maximize = objective.get("metric", ""), objective.get("goal") == "maximize"
    keys = list(m.get("parameters") or [])
    try:
        spec = yaml.safe_load(record.read_text("sweep.yaml")) or {}
    except (FileNotFoundError, yaml.YAMLError):
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
            "cells": [_label(entry.get("parameters", {}).get(k, "")) for k in keys],
        })
    scored = [t for t in trials if _is_number(t.get("objective"))]
    # the trials as the report's charts take runs
    runs = [{"run_id": t.get("run_id") or f"trial {t['trial']}",
             "status": t.get("status"), "params": t["parameters"],
             "final_metrics": {metric: t["objective"]}} for t in scored]
    charts: dict[str, Any] = {"over_time": None, "scatters": [], "parallel": None}
    if scored:
        charts["over_time"] = _over_time(scored, Axis.of(metric, [t["objective"] for t in scored]),
                                         maximize)
        charts["scatters"] = [report.scatter_chart(runs, k, metric, logs) for k in keys]
        charts["parallel"] = report.parallel_chart(runs, keys, [metric], logs)
    counts: dict[str, int] = {}
    for entry in record.trials:
        counts[entry.get("status", "")] = counts.get(entry.get("status", ""), 0) + 1
    return {"sweep": m, "id": record.sweep_id, "metric": metric, "keys": keys,
            "trials": trials, "best": best, "counts": sorted(counts.items()),
            "charts": charts, "status_colours": {**report.STATUS_COLOURS, "best": BEST}}


def _over_time(scored: list[dict[str, Any]], y_axis: Axis, maximize: bool) -> dict[str, Any]:
    """Each finished trial at its end time, and the best so far as a step line."""
    from .. import report

    times = [_time(t.get("ended")) for t in scored]
    if any(t is None for t in times):  # cloud trials without an end time: trial order
        times = [float(t["trial"]) for t in scored]
    x_axis = Axis("time", "linear", min(times), max(times))  # type: ignore[type-var]
    order = sorted(zip(times, scored, strict=True), key=lambda p: p[0])
    chart = {"title": f"{y_axis.name} per trial, by end time", "width": report.WIDTH,
             "height": report.HEIGHT, "pad": report.PAD, "x_ticks": [],
             "y_ticks": [(_y(f), label) for f, label in y_axis.ticks()]}
    points, steps, best = [], [], None
    for when, trial in order:
        x, y = _x(x_axis.position(when)), _y(y_axis.position(trial["objective"]))
        points.append({"x": x, "y": y, "colour": BEST if trial["best"] else
                       report.STATUS_COLOURS.get(trial.get("status", ""), "#6e7781"),
                       "title": f"trial {trial['trial']}: {trial['objective']:.4g}"})
        if best is None or (trial["objective"] > best if maximize else trial["objective"] < best):
            best = trial["objective"]
        steps.append(f"{x},{_y(y_axis.position(best))}")
    chart.update(points=points, best_line=" ".join(steps))
    return chart


def _x(fraction: float) -> float:
    from ..report import PAD, WIDTH

    return round(PAD + fraction * (WIDTH - 2 * PAD), 1)


def _y(fraction: float) -> float:
    from ..report import HEIGHT, PAD

    return round(HEIGHT - PAD - fraction * (HEIGHT - 2 * PAD), 1)


def render(record: SweepRecord, **links: str) -> str:
    """The sweep's page as one self-contained HTML document."""
    from ..report import templates

    return templates().get_template("sweep.html").render(**context(record, **links))
