"""A sweep's page, for the report and the dashboard: its trials, the objective per trial over
time, each parameter against the objective, and parallel coordinates.

The charts are inline SVG (no plotting library, no script, nothing fetched): this module works
out what to draw, in pixels, and `templates/sweep.html` draws it, escaping as it goes.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .record import SweepRecord

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
WIDTH, HEIGHT, PAD = 360, 200, 36
STATUS_COLOURS = {"Completed": "#0969da", "Failed": "#cf222e", "Stopped": "#9a6700"}
BEST = "#1a7f37"


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
    """Everything the template draws, in pixels."""
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
    charts: dict[str, Any] = {"over_time": None, "scatters": [], "parallel": None}
    if scored:
        y_axis = Axis.of(metric, [t["objective"] for t in scored])
        charts["over_time"] = _over_time(scored, y_axis, maximize)
        charts["scatters"] = [_scatter(k, scored, y_axis, k in logs) for k in keys]
        charts["parallel"] = _parallel(keys, scored, y_axis, logs)
    counts: dict[str, int] = {}
    for entry in record.trials:
        counts[entry.get("status", "")] = counts.get(entry.get("status", ""), 0) + 1
    return {"sweep": m, "id": record.sweep_id, "metric": metric, "keys": keys,
            "trials": trials, "best": best, "counts": sorted(counts.items()),
            "charts": charts, "width": WIDTH, "height": HEIGHT, "pad": PAD,
            "best_colour": BEST}


def _x(fraction: float, width: int = WIDTH, pad: int = PAD) -> float:
    return round(pad + fraction * (width - 2 * pad), 1)


def _y(fraction: float) -> float:
    return round(HEIGHT - PAD - fraction * (HEIGHT - 2 * PAD), 1)


def _colour(trial: dict[str, Any]) -> str:
    return BEST if trial["best"] else STATUS_COLOURS.get(trial.get("status", ""), "#6e7781")


def _over_time(scored: list[dict[str, Any]], y_axis: Axis, maximize: bool) -> dict[str, Any]:
    """Each finished trial at its end time, and the best so far as a step line."""
    times = [_time(t.get("ended")) for t in scored]
    if any(t is None for t in times):  # cloud trials without an end time: trial order
        times = [float(t["trial"]) for t in scored]
    x_axis = Axis("time", "linear", min(times), max(times))  # type: ignore[type-var]
    order = sorted(zip(times, scored, strict=True), key=lambda p: p[0])
    points, steps, best = [], [], None
    for when, trial in order:
        x, y = _x(x_axis.position(when)), _y(y_axis.position(trial["objective"]))
        points.append({"x": x, "y": y, "colour": _colour(trial),
                       "title": f"trial {trial['trial']}: {trial['objective']:.4g}"})
        if best is None or (trial["objective"] > best if maximize else trial["objective"] < best):
            best = trial["objective"]
        steps.append(f"{x},{_y(y_axis.position(best))}")
    return {"title": f"{y_axis.name} per trial, by end time", "points": points,
            "best_line": " ".join(steps), "y_ticks": _y_ticks(y_axis)}


def _scatter(key: str, scored: list[dict[str, Any]], y_axis: Axis, log: bool) -> dict[str, Any]:
    values = [t["parameters"].get(key) for t in scored]
    axis = Axis.of(key, values, log)
    points = [{"x": _x(axis.position(v)), "y": _y(y_axis.position(t["objective"])),
               "colour": _colour(t), "title": f"trial {t['trial']}: {key}={_label(v)}, "
                                              f"{y_axis.name}={t['objective']:.4g}"}
              for v, t in zip(values, scored, strict=True)]
    return {"title": f"{key}{' (log)' if axis.kind == 'log' else ''}", "points": points,
            "x_ticks": [(_x(f), label) for f, label in axis.ticks()],
            "y_ticks": _y_ticks(y_axis)}


def _parallel(keys: list[str], scored: list[dict[str, Any]], y_axis: Axis, logs: set[str]
              ) -> dict[str, Any]:
    """One vertical axis per parameter and one for the objective; a line per trial."""
    axes = [Axis.of(k, [t["parameters"].get(k) for t in scored], k in logs) for k in keys]
    axes.append(y_axis)
    width = max(WIDTH, 140 * len(axes))
    xs = [_x(i / (len(axes) - 1) if len(axes) > 1 else 0.5, width, pad=70)
          for i in range(len(axes))]
    lines = []
    for trial in sorted(scored, key=lambda t: t["best"]):  # the best drawn last, on top
        values = [trial["parameters"].get(k) for k in keys] + [trial["objective"]]
        points = " ".join(f"{x},{_y(axis.position(v))}"
                          for x, axis, v in zip(xs, axes, values, strict=True))
        lines.append({"points": points, "colour": _colour(trial), "best": trial["best"],
                      "title": f"trial {trial['trial']}: {trial['objective']:.4g}"})
    return {"width": width, "lines": lines, "axes": [
        {"x": x, "name": axis.name, "ticks": [(_y(f), label) for f, label in axis.ticks()]}
        for x, axis in zip(xs, axes, strict=True)]}


def _y_ticks(axis: Axis) -> list[tuple[float, str]]:
    return [(_y(f), label) for f, label in axis.ticks()]


def render(record: SweepRecord, **links: str) -> str:
    """The sweep's page as one self-contained HTML document."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    return env.get_template("sweep.html").render(**context(record, **links))
