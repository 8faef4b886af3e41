"""Columns of an index chunk: what `sagebook list` filters, sorts and counts on, one JSON array
per field on a line of its own, so a query parses only the fields it names.

A page's head and each of its sealed parts (index.py) hold one run summary a line: at 100,000
runs, parsing and checking every summary costs `list` ~3 s (40 µs a run), while one field of
every run parses in ~10 ms. So the compactor that writes a chunk also writes its columns, a
sidecar named in the page's header, and `list` reads a chunk's whole summaries only for the
runs it shows (index.scan, index.resolve).

Layout of a columns object:

    {"columns":1,"runs":N,"fields":["run_id","created",…,"final_metrics.val_loss",…]}
    ["20260101-000000-abcdef", …]          one line per field: N values, null where absent
    …

A field is written when at least one run of the chunk has it, so a field missing from
`fields` is one no run has. The values are the summaries as readers see them (annotations
applied: tags, name, note). Scalars the table and `--where` can name are columns;
`final_metrics`, `params` and `tags` are one column per key (`section.key`).

Columns come from the store, so anyone on the team may have written them: each column read is
held to its field's type and its chunk's run count, and a chunk whose columns do not hold is
read from its lines instead (DamagedFile says why). A column that lies within its types lies
as a summary line could: `sagebook fsck` compares them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import repeat
from typing import Any

from .inputs import DamagedFile, parse_json

FORMAT = 1
# the summary fields `list` can filter or sort on (runs.listing.COLUMN_NAMES), and those the
# index needs of every run (revision, removed); the rest of a summary is read for runs shown
TEXTS = ("run_id", "experiment", "updated", "status", "created", "started", "ended", "user",
         "host", "job_name", "instance_type", "backend", "image_uri", "git_commit", "parent",
         "sweep", "name", "note")
SECTIONS = ("final_metrics", "params", "tags")


_NONE = type(None)
TEXT, NUMBER = ("text", {str, _NONE}), ("number", {int, float, _NONE})
# what each field's values may be: their types (a type, not an instance check: a bool is no
# number here), or None for any JSON value
TYPES: dict[str, tuple[str, set[type] | None]] = {
    **{name: TEXT for name in TEXTS},
    "revision": ("whole number", {int, _NONE}),
    "cost": NUMBER,
    "removed": ("true or false", {bool, _NONE}),
    "final_metrics": NUMBER,
    "tags": TEXT,
    "params": ("value", None),
}


def encode(entries: list[dict[str, Any]]) -> bytes:
    """The columns of these summaries (as readers see them), in their order."""
    scalars = [f for f in TYPES if f not in SECTIONS and any(f in e for e in entries)]
    keyed = sorted({f"{section}.{key}" for e in entries for section in SECTIONS
                    for key in (e.get(section) or {})})
    lines = [json.dumps({"columns": FORMAT, "runs": len(entries), "fields": scalars + keyed},
                        separators=(",", ":"))]
    for field in scalars:
        lines.append(json.dumps([e.get(field) for e in entries], separators=(",", ":"),
                                default=str))
    for field in keyed:
        section, key = field.split(".", 1)
        lines.append(json.dumps([(e.get(section) or {}).get(key) for e in entries],
                                separators=(",", ":"), default=str))
    return "\n".join(lines).encode() + b"\n"


class Columns:
    """The columns of one chunk, parsed a field at a time as a query asks for it."""

    def __init__(self, data: bytes, where: str, runs: int):
        """`runs`: how many summaries the chunk holds, by its page's header; columns that
        hold another number are not this chunk's."""
        self.where = where
        self._lines = data.split(b"\n")
        header = parse_json(self._lines[0], where)
        fields = header.get("fields") if isinstance(header, dict) else None
        if not (isinstance(header, dict) and header.get("columns") == FORMAT
                and isinstance(fields, list) and all(isinstance(f, str) for f in fields)):
            raise DamagedFile(where, f"not index columns of format {FORMAT} (line 1)")
        if header.get("runs") != runs:
            raise DamagedFile(where, f"its columns hold {header.get('runs')!r} runs, its "
                                     f"chunk {runs}")
        if len(self._lines) < len(fields) + 1:
            raise DamagedFile(where, f"{len(fields)} fields named, "
                                     f"{len(self._lines) - 1} lines")
        self.runs = runs
        self.fields = {field: number for number, field in enumerate(fields, 2)}
        self._parsed: dict[str, list[Any]] = {}

    def keys(self, section: str) -> list[str]:
        """The keys of a section (`final_metrics`, `params`, `tags`) some run of the chunk
        has."""
        return [f.split(".", 1)[1] for f in self.fields if f.startswith(f"{section}.")]

    def column(self, field: str) -> list[Any]:
        """The values of `field` (a scalar, or `section.key`), one a run; all None when no run
        of the chunk has it. DamagedFile when the line is not a list of that many values of
        the field's type."""
        if field in self._parsed:
            return self._parsed[field]
        number = self.fields.get(field)
        if number is None:
            return [None] * self.runs
        expected, types = TYPES.get(field.split(".", 1)[0], ("value", None))
        values = parse_json(self._lines[number - 1], f"{self.where}, line {number}")
        if not (isinstance(values, list) and len(values) == self.runs):
            raise DamagedFile(self.where, f"line {number} ({field}) is not {self.runs} values")
        if types is not None and not set(map(type, values)) <= types:
            raise DamagedFile(self.where, f"line {number} ({field}) holds a value that is not "
                                          f"a {expected}")
        self._parsed[field] = values
        return values


def rows(columns: Columns, fields: Iterable[str], constant: dict[str, Any]
         ) -> list[dict[str, Any]]:
    """A dict a run holding `fields` (scalars, or `section.key` gathered into their section's
    dict, where a run has the key) and `constant`: what a query reads of each run. A field no
    run of the chunk has is left out, as a summary leaves it out."""
    fields = [f for f in dict.fromkeys(fields) if f in columns.fields]
    scalars = [f for f in fields if f.split(".", 1)[0] not in SECTIONS]
    names = [*scalars, *constant]
    values = [*(columns.column(f) for f in scalars),
              *(repeat(v, columns.runs) for v in constant.values())]
    views = [dict(zip(names, run, strict=True)) for run in zip(*values, strict=True)]
    for section in SECTIONS:
        keys = [f.split(".", 1)[1] for f in fields if f.startswith(f"{section}.")]
        if not keys:
            continue
        for view, values in zip(views, zip(*(columns.column(f"{section}.{k}") for k in keys),
                                           strict=True), strict=True):
            view[section] = {k: v for k, v in zip(keys, values, strict=True) if v is not None}
    return views


def difference(found: Columns, summaries: list[dict[str, Any]]) -> str | None:
    """How `found` differs from the columns of `summaries` (its chunk's lines, as readers see
    them): the first field whose values are not theirs, or None when it holds them."""
    if found.runs != len(summaries):
        return f"it holds {found.runs} runs, its chunk's lines {len(summaries)}"
    expected = Columns(encode(summaries), found.where, len(summaries))
    for field in sorted(set(found.fields) | set(expected.fields)):
        values, truth = found.column(field), expected.column(field)
        if values != truth:
            run = next(n for n, (a, b) in enumerate(zip(values, truth, strict=True)) if a != b)
            return (f"its {field} of run {expected.column('run_id')[run]!r} is "
                    f"{values[run]!r}, its line says {truth[run]!r}")
    return None

