"""Presentation layer (L6): every table and line the terminal shows of runs: `list`, `show`
and `diff`, and the durations, costs and parameters as the report and dashboard write them too.

Each function takes the data runs/listing.py and runs/details.py return and gives text; a
value read from a record passes `printing.terminal_text` on its way to the terminal.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from .. import index
from ..inputs import DamagedFile
from ..printing import cell_text, terminal_lines, terminal_text
from ..record import Record
from .details import DiffRow, RunDetails, value_text
from .listing import duration, parse_time
from .lookup import CUT_HEAD, CUT_TAIL


def format_costs(costs: dict[str, tuple[float, int]]) -> str | None:
    """`cost: $12.34 over 5 runs (exp-a $10.00 in 3, exp-b $2.34 in 2)`, or None."""
    if not costs:
        return None
    total, runs = sum(c for c, _ in costs.values()), sum(n for _, n in costs.values())
    parts = ", ".join(f"{name} ${c:,.2f} in {n}" for name, (c, n) in sorted(costs.items()))
    return f"cost: ${total:,.2f} over {runs} runs with a known cost ({parts})"


def damage_lines(damaged: Sequence[DamagedFile], shown: int = 5) -> list[str]:
    """What to tell a reader about the store files it had to skip, and what to do."""
    if not damaged:
        return []
    lines = [terminal_text(f"skipped {d}", one_line=True) for d in damaged[:shown]]
    if len(damaged) > shown:
        lines.append(f"… and {len(damaged) - shown} more damaged files")
    lines.append("`sagebook fsck` lists every damaged file and what to do; "
                 "`sagebook list --reindex` rebuilds the index from the records")
    return lines


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_commit(entry: dict[str, Any]) -> str:
    """The short commit, with `*` when the training code had uncommitted changes."""
    commit = entry.get("git_commit")
    if not commit:
        return ""
    return commit[:8] + ("*" if entry.get("git_dirty") else "")


STATUS_COLOURS = {"Completed": "32", "Failed": "31", "Lost": "31", "Stopped": "33",
                  "Interrupted": "33", "Stopping": "33", "InProgress": "36", "Starting": "36"}


def use_colour(stream: Any) -> bool:
    """Colour on a terminal only, and never under NO_COLOR (https://no-color.org)."""
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


def format_number(value: Any, places: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    return f"{value:.{places}f}" if isinstance(value, float) else str(value)


def format_param(value: Any) -> str:
    """A parameter as the user wrote it: 0.01, not 0.0100."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return format_number(value)


def format_cost(value: Any) -> str:
    return f"${value:,.2f}" if isinstance(value, int | float) else ""


def format_table(rows: list[dict[str, Any]], metrics: list[str], params: Sequence[str] = (),
                 colour: bool = False, sweep_parameters: Sequence[str] = ()) -> str:
    """The runs as a text table: numbers right-aligned, each metric at one precision; a name,
    cost, tags and note column only when a run has one; `sweep_parameters`: a sweep's searched
    keys, as columns of their own before the metrics. Every cell is terminal text of one line
    (printing.terminal_text): the status colours are the only escape sequences it holds."""
    now = _dt.datetime.now(_dt.timezone.utc)
    optional = {key: any(e.get(key) for e in rows) for key in ("name", "cost", "tags", "note")}
    columns: list[tuple[str, bool, Callable[[dict[str, Any]], str]]] = [
        ("RUN", False, lambda e: e["run_id"]),
        *([("NAME", False, lambda e: clip(e.get("name") or "", 30))] if optional["name"] else []),
        ("EXPERIMENT", False, lambda e: e.get("experiment", "")),
        ("USER", False, lambda e: e.get("user", "")),
        ("CREATED", False, lambda e: _created(e)),
        ("INSTANCE", False, lambda e: e.get("instance_type", "")),
        ("STATUS", False, lambda e: e.get("status", "")),
        ("DURATION", True, lambda e: format_duration(duration(e, now))),
        *([("COST", True, lambda e: format_cost(e.get("cost")))] if optional["cost"] else []),
        *((p, False, lambda e, p=p: cell_text((e.get("parameters") or {}).get(p, "")))
          for p in sweep_parameters),
        *((m.upper(), True, lambda e, m=m: format_number((e.get("final_metrics") or {}).get(m)))
          for m in metrics),
        *((p, _numeric(rows, p), lambda e, p=p: format_param((e.get("params") or {}).get(p)))
          for p in params),
        ("COMMIT", False, format_commit),
        *([("TAGS", False, lambda e: clip(",".join(
            f"{k}={v}" for k, v in sorted((e.get("tags") or {}).items())), 40))]
          if optional["tags"] else []),
        *([("NOTE", False, lambda e: clip(e.get("note") or "", 40))]
          if optional["note"] else []),
    ]
    table = [[name for name, _, _ in columns], *([cell(e) for _, _, cell in columns] for e in rows)]
    # headers too: metric, parameter and tag names are the record's words
    table = [[terminal_text(text, one_line=True) for text in line] for line in table]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    status_at = [name for name, _, _ in columns].index("STATUS")
    lines = []
    for n, line in enumerate(table):
        cells = []
        for i, (text, width) in enumerate(zip(line, widths, strict=True)):
            padded = text.rjust(width) if columns[i][1] and n else text.ljust(width)
            if colour and n and i == status_at and text in STATUS_COLOURS:
                padded = f"\033[{STATUS_COLOURS[text]}m{text}\033[0m" + " " * (width - len(text))
            cells.append(padded)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _numeric(rows: list[dict[str, Any]], param: str) -> bool:
    values = [(e.get("params") or {}).get(param) for e in rows]
    return all(v is None or (isinstance(v, int | float) and not isinstance(v, bool))
               for v in values)


def _created(entry: dict[str, Any]) -> str:
    created = parse_time(entry.get("created"))
    return created.strftime("%Y-%m-%d %H:%M") if created else ""


def clip(text: str, width: int) -> str:
    """One line of at most `width` characters, `…` marking a cut."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def describe_cost(cost: dict[str, Any]) -> str:
    """`$0.10 (771 s × 2 × ml.m5.large at $0.115/h, table of 2026-09-24); spot saved …`."""
    source = "price list" if cost.get("price_source") == "cache" else "table"
    text = (f"${cost['usd']:,.2f} ({cost['billable_seconds']} s billable × "
            f"{cost['instance_count']} × {cost['instance_type']} at ${cost['usd_per_hour']:g}/h"
            f" in {cost['region']}, {source} of {cost.get('price_date')})")
    if cost.get("spot_saved_usd") is not None:
        text += (f"; spot saved ${cost['spot_saved_usd']:,.2f} "
                 f"({cost.get('spot_savings_percent')}% of {cost['training_seconds']} s)")
    if cost.get("warm_pool_usd"):
        text += (f"; warm pool kept {cost['warm_pool_seconds']} s: "
                 f"${cost['warm_pool_usd']:,.2f}")
    return text


def format_details(info: RunDetails) -> str:
    """What `show` prints, laid out line by line: each line is terminal text of its own
    (`terminal_lines`), whatever the record's fields hold."""
    m = info.manifest
    summary = index.summarize(m)
    git = m.get("git") or {}
    parent = m.get("parent") or {}
    notes = info.annotations
    status = f"status:      {m.get('status')}"
    if info.lost:
        from ..backends.liveness import cleanup_hint  # the backends package: for a Lost run

        status = (f"status:      Lost: {info.lost} (the record says {m.get('status')}); "
                  + cleanup_hint(m))
    lines = [
        f"run:         {info.record.run_id}",
        *([f"name:        {notes['name']}"] if notes.get("name") else []),
        f"experiment:  {info.record.experiment}",
        status,
        f"user:        {m.get('user')}@{m.get('host')}",
        f"created:     {m.get('created')}",
        f"ended:       {m.get('ended') or ''}",
        f"duration:    {format_duration(duration(summary))}",
        *([f"cost:        {describe_cost(m['cost'])}"] if m.get("cost") else []),
        f"instance:    {m.get('instance_type')} ({m.get('backend')})",
        f"job:         {m.get('job_name')}",
        f"launched:    via {m.get('launched_via')}",
        f"image:       {(m.get('image') or {}).get('uri') or m.get('image_uri') or ''}",
        f"git:         {git.get('commit') or git.get('note') or ''}"
        f"{' (dirty)' if git.get('dirty') else ''}"
        f"{' on ' + git['branch'] if git.get('branch') else ''}",
        f"overrides:   {', '.join((m.get('config') or {}).get('overrides') or [])}",
        f"record:      {info.record.uri}",
        *(f"unreadable:  {item}" for item in info.unreadable),
    ]
    if notes.get("tags"):
        lines.append("tags:        " + ", ".join(f"{k}={v}" for k, v in
                                                 sorted(notes["tags"].items())))
    if parent.get("run_id"):
        lines.append(f"parent:      {parent.get('experiment')}/{parent['run_id']}"
                     + (f" ({parent['code']} code)" if parent.get("code") else ""))
    code = next((u for u in m.get("uploads") or [] if u.get("kind") == "code"), None)
    if code:
        lines.append(f"code:        {code.get('uri')} ({code.get('source')})")
    checkpoints = m.get("checkpoints") or {}
    if checkpoints.get("uri"):
        resumed = checkpoints.get("resumed_from_run") or checkpoints.get("resumed_from")
        lines.append(f"checkpoints: {checkpoints['uri']}"
                     + (f" (resumed from {resumed})" if resumed else ""))
    rehearsal = m.get("interruption") or {}
    if rehearsal.get("summary"):
        lines.append(f"interruption: {rehearsal['summary']}"
                     + (f" ({rehearsal['evidence']})" if rehearsal.get("evidence") else ""))
        for attempt in rehearsal.get("attempts") or []:
            logs = attempt.get("logs")
            lines.append(f"  attempt {attempt.get('attempt')}: "
                         f"{', '.join(map(str, logs.values())) if isinstance(logs, dict) else ''}"
                         f", exit {attempt.get('exit_code')}"
                         + (" (interrupted)" if attempt.get("interrupted") else ""))
    capacity = m.get("capacity") or {}
    for attempt in capacity.get("attempts") or []:
        reason = str(attempt.get("reason") or "").splitlines()[:1]
        lines.append(f"capacity:    attempt {attempt.get('attempt')} {attempt.get('instance_type')}"
                     f" ({attempt.get('job_name')}): {attempt.get('outcome')}"
                     + (f", {reason[0]}" if reason else ""))
    if capacity.get("waiting"):
        lines.append(f"capacity:    waiting for capacity since {capacity['waiting'].get('since')},"
                     f" next try {capacity['waiting'].get('next_try')}")
    sweep = m.get("sweep") or {}
    if sweep.get("id"):
        settings = ", ".join(f"{k}={cell_text(v)}"
                             for k, v in (sweep.get("parameters") or {}).items())
        lines.append(f"sweep:       {sweep['id']} (trial {sweep.get('trial')}: {settings})")
    if notes.get("notes"):
        lines += ["", "notes:"]
        for item in notes["notes"]:
            text = str(item["note"]).splitlines() or [""]
            lines.append(f"  {item.get('time')}  {item.get('user')}: {text[0]}")
            lines += [f"    {line}" for line in text[1:]]
    lines += ["", "status timeline:"]
    start = parse_time(m.get("created"))
    for step in m.get("status_history") or []:
        at = parse_time(step.get("time"))
        offset = f"+{format_duration((at - start).total_seconds())}" if at and start else ""
        secondary = f" ({step['secondary_status']})" if step.get("secondary_status") else ""
        lines.append(f"  {step.get('time')}  {offset:>8}  {step.get('status')}{secondary}")
    if m.get("failure_reason"):
        reason = cut_text(str(m["failure_reason"]), info.record.url("manifest.json"))
        lines += ["", "failure:", *(f"  {line}" for line in reason.splitlines())]
    final = {k: v for k, v in (m.get("final_metrics") or {}).items()
             if isinstance(v, int | float) and not isinstance(v, bool)}
    if final or info.summary:
        lines += ["", "metrics:        final      min      max   points"]
        for name in sorted(set(final) | set(info.summary)):
            figures = info.summary.get(name)
            low = f"{figures.low:8.4g}" if figures else " " * 8
            high = f"{figures.high:8.4g}" if figures else " " * 8
            last = f"{final[name]:8.4g}" if name in final else " " * 8
            lines.append(f"  {name:<12} {last} {low} {high} "
                         f"{figures.points if figures else 0:>8}")
    artifacts = info.artifacts()
    notebook = m.get("notebook") or {}
    if artifacts or notebook or info.report_page:
        lines += ["", "artifacts:"]
        lines += [f"  {k + ':':<16} {v}" for k, v in artifacts.items()]
        if notebook:
            detail = ": ".join(str(notebook[k]) for k in ("note", "path") if notebook.get(k))
            lines.append(f"  {'notebook status:':<16} {notebook.get('status')}"
                         + (f" ({detail})" if notebook.get("status") != "completed" and detail
                            else ""))
        if info.report_page:
            lines.append(f"  {'report page:':<16} {info.report_page}")
            if "notebook.ipynb" in info.files:
                lines.append(f"  {'notebook html:':<16} "
                             f"{info.report_page.removesuffix('.html')}.notebook.html")
    for title, text in (("training config (config/training_config.yaml)", info.training_config),
                        ("job config (sagemaker_config.yaml)", info.job_config)):
        if text:
            lines += ["", f"{title}:", *(f"  {line}" for line in text.rstrip().splitlines())]
    if info.request is not None:
        lines += ["", "request (request.json):",
                  *(f"  {line}" for line in json.dumps(info.request, indent=2).splitlines())]
    return terminal_lines(lines)


def cut_text(text: str, where: str, head: int = CUT_HEAD, tail: int = CUT_TAIL) -> str:
    """`text` whole up to `head + tail` characters, else its start and its end around a line
    saying how much was left out and that `where` holds all of it (as `read_cut` cuts files):
    a record's text of any length prints as a few screens."""
    if len(text) <= head + tail:
        return text
    return (f"{text[:head]}\n[… {len(text) - head - tail:,} characters left out here: the whole "
            f"text is {where} …]\n{text[-tail:]}")


def format_diff(a: Record, b: Record, rows: list[DiffRow], show_all: bool = False,
                unreadable: Sequence[str] = ()) -> str:
    """The rows as a table of terminal text, then which configs could not be compared."""

    def cell(value: Any) -> str:
        return cell_text(value if isinstance(value, dict | list) else value_text(value), 60)

    shown = [r for r in rows if show_all or not r.same or r.section == "metrics"]
    table = [("", "KEY", a.run_id, b.run_id)]
    for row in shown:
        mark = " " if row.same else "*"
        table.append((mark, f"{row.section}.{row.key}", cell(row.a), cell(row.b)))
    table = [tuple(terminal_text(text, one_line=True) for text in line) for line in table]
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in table)
    differing = sum(not r.same for r in rows if r.section in ("job", "training"))
    note = ("configs identical" if not differing else
            f"{differing} config keys differ")
    if unreadable:
        note = f"{note} among those compared"
    return "\n".join([
        text, "", f"{note} (* marks a difference{'' if show_all else '; --all shows every key'})",
        *(terminal_text(f"not compared: {item}", one_line=True) for item in unreadable)])
