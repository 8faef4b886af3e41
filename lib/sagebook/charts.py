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
from .runs.listing import differing_params
from .runs.text import format_param

TEMPLATES = Path(__file__).with_name("templates")
# a run's status as the pages colour it (the terminal's are runs.text.STATUS_COLOURS)
STATUS_COLOURS = {
    "Completed": "#1a7f37", "Failed": "#cf222e", "Stopped": "#9a6700", "Interrupted": "#9a6700",
    "InProgress": "#0969da", "Starting": "#6e7781", "Stopping": "#9a6700",
}
# a run's colour in every chart of a page or of the dashboard: matplotlib's tab10, so the
# dashboard's PNG plots and the pages' SVG charts agree
RUN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf")
# the objective's low-to-high colours when there are more runs than RUN_COLOURS (viridis)
GRADIENT = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
MOST_LABEL_PARAMS = 4  # a run's legend label names this many differing parameters, then "+N more"


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


WIDTH, HEIGHT, PAD = 360, 200, 36
LEFT = 62  # room left of a chart for its tick labels and its y axis's name
MOST_TICKS = 6
INSET = 6  # pixels between a chart's axis lines and its outermost points
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
    integer: bool = False  # every value a whole number: ticks only at whole numbers

    @classmethod
    def of(cls, name: str, values: list[Any], log: bool = False) -> Axis:
        numbers = [v for v in values if is_number(v)]
        if values and len(numbers) == len(values):
            if log and min(numbers) > 0:
                return cls(name, "log", math.log10(min(numbers)), math.log10(max(numbers)))
            return cls(name, "linear", float(min(numbers)), float(max(numbers)),
                       integer=all(isinstance(v, int) for v in numbers))
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
        if self.kind == "log":
            decades = range(math.ceil(self.low), math.floor(self.high) + 1)
            exponents = list(decades) if len(decades) >= 2 else [self.low, self.high]
            return [(self.position(10 ** e), f"{10 ** e:.3g}") for e in exponents]
        return [(self.position(v), label) for v, label in nice_ticks(self.low, self.high,
                                                                      self.integer)]


def nice_ticks(low: float, high: float, integer: bool = False
               ) -> list[tuple[float, str]]:
    """Up to MOST_TICKS round values between low and high (steps of 1, 2, 2.5 or 5 times a
    power of ten; whole steps on an integer axis), each with its label: enough to read a
    value off the chart."""
    if high <= low:
        return [(low, _tick_label(low, 1.0 if integer else abs(low) or 1.0))]
    raw = (high - low) / (MOST_TICKS - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in steps if m * magnitude >= raw * (1 - 1e-9))
    if integer:
        step = max(1.0, float(round(step)))
    first = math.ceil(low / step - 1e-9)
    count = math.floor(high / step + 1e-9) - first + 1
    return [((first + i) * step, _tick_label((first + i) * step, step)) for i in range(count)]


def _tick_label(value: float, step: float) -> str:
    """A tick's value with as many decimals as its step needs (`0.025`, `120`, `1e-05`)."""
    if value and not 1e-4 <= abs(value) < 1e6:
        return f"{value:.3g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if step * 10 ** decimals % 1:  # 2.5 × a power of ten: one more
        decimals += 1
    return f"{value:.{decimals}f}"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def x_pixel(fraction: float, width: int = WIDTH, left: int = LEFT, right: int = PAD) -> float:
    """Where a point `fraction` of the way along an axis sits across a chart `width` wide
    (INSET inside the axis lines, so that no point sits on one)."""
    return round(left + INSET + fraction * (width - left - right - 2 * INSET), 1)


def y_pixel(fraction: float) -> float:
    """Where a point `fraction` of the way up an axis sits in a chart (SVG counts down)."""
    return round(HEIGHT - PAD - INSET - fraction * (HEIGHT - 2 * PAD - 2 * INSET), 1)


def wide(values: list[Any]) -> bool:
    """Positive numbers over two or more decades (0.001 … 0.1): drawn on a log scale, where
    they do not bunch up at one end."""
    numbers = [v for v in values if is_number(v)]
    return (len(numbers) == len(values) > 1 and min(numbers) > 0
            and max(numbers) / min(numbers) >= 100)


def frame(title: str, x_label: str = "", y_label: str = "") -> dict[str, Any]:
    """What every small chart has: its title, size and axis names; the caller adds ticks and
    points."""
    return {"title": title, "width": WIDTH, "height": HEIGHT, "pad": PAD, "left": LEFT,
            "x_ticks": [], "y_ticks": [], "x_label": x_label, "y_label": y_label}


def line_chart(name: str, points: list[Point], unit: str = "step") -> dict[str, Any]:
    """A metric's curve over its steps (`runs.details.metric_series`; `unit` is what the log
    counted them in: epoch, step or iteration), a dot with its value at each point while there
    are few enough to point at."""
    xy = [(step, value) for step, value, _ in points]
    x_axis = Axis.of(unit, [x for x, _ in xy])
    y_axis = Axis.of(name, [y for _, y in xy])
    chart = frame(name, unit, name)
    placed = [(x_pixel(x_axis.position(x)), y_pixel(y_axis.position(y)), f"{unit} {x}: {y:.6g}")
              for x, y in xy]
    chart.update(points=" ".join(f"{x},{y}" for x, y, _ in placed),
                 dots=placed if len(placed) <= MAX_DOTS else [],
                 y_ticks=[(y_pixel(f), label) for f, label in y_axis.ticks()],
                 x_ticks=[(x_pixel(f), label) for f, label in x_axis.ticks()])
    return chart


def status_colour(entry: dict[str, Any]) -> str:
    """A run's dot or line in the colour of its status (grey when it has none known)."""
    return STATUS_COLOURS.get(entry.get("status", ""), "#6e7781")


class RunColours:
    """Each run's colour, the same in every chart: given out from RUN_COLOURS in the order runs
    are first asked for (the dashboard asks for its chosen runs first)."""

    def __init__(self) -> None:
        self.given: dict[str, str] = {}

    def __call__(self, run_id: str) -> str:
        if run_id not in self.given:
            self.given[run_id] = RUN_COLOURS[len(self.given) % len(RUN_COLOURS)]
        return self.given[run_id]


def run_labels(entries: list[dict[str, Any]]) -> dict[str, str]:
    """Each run named by the parameters that differ among the runs (`learning_rate=0.1,
    optimizer=sgd`, the first MOST_LABEL_PARAMS, then "+N more"), or by its id when none does;
    the short id is added when that does not tell two runs apart."""
    differing = differing_params(entries)
    shown, more = differing[:MOST_LABEL_PARAMS], len(differing) - MOST_LABEL_PARAMS
    labels = {}
    for entry in entries:
        params = entry.get("params") or {}
        text = ", ".join(f"{k}={format_param(params.get(k))}" for k in shown)
        labels[entry["run_id"]] = (text + (f", +{more} more" if more > 0 else "")
                                   or entry["run_id"])
    if len(set(labels.values())) < len(labels):
        labels = {k: f"{v} ({k[-6:]})" if v != k else v for k, v in labels.items()}
    return labels


def gradient_colour(fraction: float) -> str:
    """The colour `fraction` (0..1) of the way along GRADIENT."""
    at = min(max(fraction, 0.0), 1.0) * (len(GRADIENT) - 1)
    i = min(int(at), len(GRADIENT) - 2)
    low, high = GRADIENT[i], GRADIENT[i + 1]
    return "#" + "".join(f"{round(a + (b - a) * (at - i)):02x}"
                         for a, b in zip(low, high, strict=True))


@dataclass
class Colouring:
    """How a page's comparison charts colour their runs, and the one legend that says so."""

    colours: dict[str, str]
    legend: list[tuple[str, str]]  # (colour, label)
    title: str


def colouring(entries: list[dict[str, Any]], metric: str | None,
              colour: RunColours | None = None) -> Colouring:
    """One colour per run while there are at most as many runs as RUN_COLOURS (the legend
    names each by what differs); beyond, the colour of each run's `metric` from low to high
    (the legend gives the values), and grey for a run without it."""
    if len(entries) <= len(RUN_COLOURS) or not metric:
        colour = colour or RunColours()
        labels = run_labels(entries)
        colours = {e["run_id"]: colour(e["run_id"]) for e in entries}
        return Colouring(colours, [(colours[k], v) for k, v in labels.items()], "runs")
    values = {e["run_id"]: (e.get("final_metrics") or {}).get(metric) for e in entries}
    numbers = [v for v in values.values() if is_number(v)]
    axis = Axis.of(metric, numbers) if numbers else Axis(metric, "linear")
    colours = {k: gradient_colour(axis.position(v)) if is_number(v) else "#8c959f"
               for k, v in values.items()}
    legend = [(gradient_colour(axis.position(v)), label) for v, label in
              nice_ticks(axis.low, axis.high)] if numbers else []
    return Colouring(colours, legend, f"colour: {metric}")


def scatter_chart(entries: list[dict[str, Any]], param: str, metric: str,
                  log: Collection[str] = (), colours: dict[str, str] | None = None
                  ) -> dict[str, Any]:
    """One parameter against one final metric, a point per run that has the metric; the
    parameters in `log` on a log scale (a sweep's log ranges); each run in its colour of
    `colours`, else of its status."""
    scored = [e for e in entries if is_number((e.get("final_metrics") or {}).get(metric))]
    values = [(e.get("params") or {}).get(param) for e in scored]
    x_axis = Axis.of(param, [format_param(v) if not is_number(v) else v for v in values],
                     param in log or wide(values))
    y_axis = Axis.of(metric, [e["final_metrics"][metric] for e in scored])
    chart = frame(f"{metric} by {param}", param, metric)
    chart.update(
        points=[{"run": e["run_id"],
                 "colour": (colours or {}).get(e["run_id"]) or status_colour(e),
                 "x": x_pixel(x_axis.position(v if is_number(v) else format_param(v))),
                 "y": y_pixel(y_axis.position(e["final_metrics"][metric])),
                 "title": f"{e['run_id']}: {param}={format_param(v)}, "
                          f"{metric}={e['final_metrics'][metric]:.4g}"}
                for v, e in zip(values, scored, strict=True)],
        y_ticks=[(y_pixel(f), label) for f, label in y_axis.ticks()] if scored else [],
        x_ticks=[(x_pixel(f), label) for f, label in x_axis.ticks()] if scored else [])
    return chart


def parallel_chart(entries: list[dict[str, Any]], params: list[str], metrics: list[str],
                   log: Collection[str] = (), colours: dict[str, str] | None = None
                   ) -> dict[str, Any] | None:
    """One vertical axis per parameter and per metric, a line per run that has them all; the
    parameters in `log` on a log scale; each run in its colour of `colours`, else of its
    status."""
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
    columns = [[value(e, n, is_m) for e in scored] for n, is_m in names]
    axes = [Axis.of(n, column, n in log or (not is_m and wide(column)))
            for (n, is_m), column in zip(names, columns, strict=True)]
    width = max(WIDTH, 140 * len(axes))
    xs = [x_pixel(i / (len(axes) - 1), width, left=70, right=70) for i in range(len(axes))]
    lines = [{"run": e["run_id"], "colour": (colours or {}).get(e["run_id"]) or status_colour(e),
              "title": f"{e['run_id']}: " + ", ".join(
                  f"{n}={format_param(value(e, n, is_m))}" for n, is_m in names),
              "points": " ".join(f"{x},{y_pixel(axis.position(value(e, n, is_m)))}"
                                 for x, axis, (n, is_m) in zip(xs, axes, names, strict=True))}
             for e in scored]
    return {"width": width, "height": HEIGHT, "pad": PAD, "lines": lines,
            "axes": [{"x": x, "name": axis.name,
                      "ticks": [(y_pixel(f), label) for f, label in axis.ticks()]}
                     for x, axis in zip(xs, axes, strict=True)]}
