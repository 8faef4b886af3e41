"""Presentation layer (L6): the HTML pages' drawing kit, shared by the report, the sweep
page and the dashboard notebook.

Charts are inline SVG with their positions worked out here (no plotting library, nothing
fetched): a chart is a dict of pixels and labels that `templates/report_macros.html` draws.
The jinja2 environment of `templates/` and each page's Content-Security-Policy live here too,
so that every page is drawn, and locked down, the same way.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .printing import cell_text
from .runs.details import Point
from .runs.text import format_param

TEMPLATES = Path(__file__).with_name("templates")
# a run's status as the pages colour it (the terminal's are runs.text.STATUS_COLOURS)
STATUS_COLOURS = {
    "Completed": "#1a7f37", "Failed": "#cf222e", "Stopped": "#9a6700", "Interrupted": "#9a6700",
    "InProgress": "#0969da", "Starting": "#6e7781", "Stopping": "#9a6700",
}


def templates() -> Any:
    """The jinja2 environment of `templates/` (the report's pages, the sweep page)."""
    import jinja2  # heavy: only the commands that draw a page load it

    if not _ENV:
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                 trim_blocks=True, lstrip_blocks=True)
        env.globals["csp"] = content_security_policy
        _ENV.append(env)
    return _ENV[0]


_ENV: list[Any] = []


def content_security_policy(*scripts: str) -> str:
    """A page's Content-Security-Policy: only `scripts`, the page's own inline scripts, run
    (named by their SHA-256, so a script that reaches the page any other way does not); nothing
    is fetched, framed or posted, and images come only as data: URIs. Inline styles are
    allowed (the pages' own <style> blocks): with nothing to fetch, a style cannot send
    anything anywhere."""
    allowed = " ".join("'sha256-{}'".format(base64.b64encode(
        hashlib.sha256(script.encode()).digest()).decode()) for script in scripts) or "'none'"
    return (f"default-src 'none'; script-src {allowed}; style-src 'unsafe-inline'; "
            "img-src data:; base-uri 'none'; form-action 'none'")


WIDTH, HEIGHT, PAD = 360, 190, 36
MAX_CHART_PARAMS = 6
MAX_CHARTED = 500  # the newest runs drawn in the index's comparison charts
MAX_DOTS = 200  # a curve's points drawn as dots, each with its value on hover; beyond, a line


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
        numbers = [v for v in values if is_number(v)]
        if values and len(numbers) == len(values):
            if log and min(numbers) > 0:
                return cls(name, "log", math.log10(min(numbers)), math.log10(max(numbers)))
            return cls(name, "linear", float(min(numbers)), float(max(numbers)))
        seen: list[str] = []
        for value in values:
            if cell_text(value) not in seen:
                seen.append(cell_text(value))
        return cls(name, "categorical", categories=seen)

    def position(self, value: Any) -> float:
        if self.kind == "categorical":
            if len(self.categories) < 2:
                return 0.5
            return self.categories.index(cell_text(value)) / (len(self.categories) - 1)
        number = math.log10(value) if self.kind == "log" else float(value)
        return 0.5 if self.high == self.low else (number - self.low) / (self.high - self.low)

    def ticks(self) -> list[tuple[float, str]]:
        if self.kind == "categorical":
            return [(self.position(c), c) for c in self.categories]
        ends = (self.low, self.high)
        shown = [10 ** e if self.kind == "log" else e for e in ends]
        return [(0.0, f"{shown[0]:.3g}"), (1.0, f"{shown[1]:.3g}")]


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def x_pixel(fraction: float, width: int = WIDTH, pad: int = PAD) -> float:
    """Where a point `fraction` of the way along an axis sits across a chart `width` wide."""
    return round(pad + fraction * (width - 2 * pad), 1)


def y_pixel(fraction: float) -> float:
    """Where a point `fraction` of the way up an axis sits in a chart (SVG counts down)."""
    return round(HEIGHT - PAD - fraction * (HEIGHT - 2 * PAD), 1)


def frame(title: str) -> dict[str, Any]:
    """What every small chart has: its title and size; the caller adds ticks and points."""
    return {"title": title, "width": WIDTH, "height": HEIGHT, "pad": PAD, "x_ticks": []}


def line_chart(name: str, points: list[Point]) -> dict[str, Any]:
    """A metric's curve over its steps (`runs.details.metric_series`), a dot with its value at each
    point while there are few enough to point at."""
    xy = [(step, value) for step, value, _ in points]
    x_axis = Axis.of("step", [x for x, _ in xy])
    y_axis = Axis.of(name, [y for _, y in xy])
    chart = frame(name)
    placed = [(x_pixel(x_axis.position(x)), y_pixel(y_axis.position(y)), f"{x}: {y:.6g}")
              for x, y in xy]
    chart.update(points=" ".join(f"{x},{y}" for x, y, _ in placed),
                 dots=placed if len(placed) <= MAX_DOTS else [],
                 x_label="step", y_ticks=[(y_pixel(f), label) for f, label in y_axis.ticks()],
                 x_ticks=[(x_pixel(f), label) for f, label in x_axis.ticks()])
    return chart


def status_colour(entry: dict[str, Any]) -> str:
    """A run's dot or line in the colour of its status (grey when it has none known)."""
    return STATUS_COLOURS.get(entry.get("status", ""), "#6e7781")


def scatter_chart(entries: list[dict[str, Any]], param: str, metric: str,
                  log: Collection[str] = ()) -> dict[str, Any]:
    """One parameter against one final metric, a point per run that has the metric; the
    parameters in `log` on a log scale (a sweep's log ranges)."""
    scored = [e for e in entries if is_number((e.get("final_metrics") or {}).get(metric))]
    values = [(e.get("params") or {}).get(param) for e in scored]
    x_axis = Axis.of(param, [format_param(v) if not is_number(v) else v for v in values],
                     param in log)
    y_axis = Axis.of(metric, [e["final_metrics"][metric] for e in scored])
    chart = frame(f"{metric} by {param}")
    chart.update(
        points=[{"run": e["run_id"], "colour": status_colour(e),
                 "x": x_pixel(x_axis.position(v if is_number(v) else format_param(v))),
                 "y": y_pixel(y_axis.position(e["final_metrics"][metric])),
                 "title": f"{e['run_id']}: {param}={format_param(v)}, "
                          f"{metric}={e['final_metrics'][metric]:.4g}"}
                for v, e in zip(values, scored, strict=True)],
        y_ticks=[(y_pixel(f), label) for f, label in y_axis.ticks()] if scored else [],
        x_ticks=[(x_pixel(f), label) for f, label in x_axis.ticks()] if scored else [])
    return chart


def parallel_chart(entries: list[dict[str, Any]], params: list[str], metrics: list[str],
                   log: Collection[str] = ()) -> dict[str, Any] | None:
    """One vertical axis per parameter and per metric, a line per run that has them all; the
    parameters in `log` on a log scale."""
    scored = [e for e in entries
              if all(is_number((e.get("final_metrics") or {}).get(m)) for m in metrics)]
    if not scored or len(params) + len(metrics) < 2:
        return None

    def value(entry: dict[str, Any], name: str, is_metric: bool) -> Any:
        if is_metric:
            return entry["final_metrics"][name]
        found = (entry.get("params") or {}).get(name)
        return found if is_number(found) else format_param(found)

    names = [(p, False) for p in params] + [(m, True) for m in metrics]
    axes = [Axis.of(n, [value(e, n, is_m) for e in scored], n in log) for n, is_m in names]
    width = max(WIDTH, 140 * len(axes))
    xs = [x_pixel(i / (len(axes) - 1), width, pad=70) for i in range(len(axes))]
    lines = [{"run": e["run_id"], "colour": status_colour(e),
              "title": f"{e['run_id']}: " + ", ".join(
                  f"{n}={format_param(value(e, n, is_m))}" for n, is_m in names),
              "points": " ".join(f"{x},{y_pixel(axis.position(value(e, n, is_m)))}"
                                 for x, axis, (n, is_m) in zip(xs, axes, names, strict=True))}
             for e in scored]
    return {"width": width, "height": HEIGHT, "pad": PAD, "lines": lines,
            "axes": [{"x": x, "name": axis.name,
                      "ticks": [(y_pixel(f), label) for f, label in axis.ticks()]}
                     for x, axis in zip(xs, axes, strict=True)]}
