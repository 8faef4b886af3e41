"""What a manifest, a run summary and an annotation event must look like before readers use them.

Every field of a record was written by anyone with write access to the shared store. Readers
format, sort, sum and compare these fields (`created` sorted against `created`, `tags` merged
into a dict, a metric formatted as a number), so one field of the wrong type in one record
would end `list`, `report` or the dashboard for the whole team in a traceback. Each file is
held to its shape where it is read (`record.read_manifest`, `index.parse_entry`,
`Record.annotations`): a field of another type makes the file a DamagedFile naming the field,
which readers skip and `fsck` lists, as they do a garbled file. A field that is missing or
null is left to the reader's default, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .inputs import DamagedFile

Check = Callable[[Any], bool]


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _whole(value: Any) -> bool:
    return type(value) is int


def _number(value: Any) -> bool:
    return type(value) in (int, float)


def _flag(value: Any) -> bool:
    return type(value) is bool


def _map(value: Any) -> bool:
    return isinstance(value, dict)


def _list(value: Any) -> bool:
    return isinstance(value, list)


def _map_of(check: Check) -> Check:
    return lambda value: isinstance(value, dict) and all(
        isinstance(key, str) and check(item) for key, item in value.items())


def _list_of(check: Check) -> Check:
    return lambda value: isinstance(value, list) and all(check(item) for item in value)


def _optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


_HISTORY_ENTRY = _map_of(_text)
# an annotation state: field → [value, stamp], the value a text or null (a removed tag)
_ANNOTATION = _map_of(lambda pair: isinstance(pair, list) and len(pair) == 2
                      and _optional(_text)(pair[0]) and _text(pair[1]))



class Shape:
    """Fields (dotted into nested maps) and, for each, what it must be and its check; split
    once into top-level fields, looked up from the data's own keys (a summary is checked for
    every run `list` reads), and nested ones."""

    def __init__(self, fields: Mapping[str, tuple[str, Check]]):
        self.top = {name: rule for name, rule in fields.items() if "." not in name}
        self.nested = [(*name.split(".", 1), rule) for name, rule in fields.items()
                       if "." in name]

TEXT, WHOLE, NUMBER, FLAG = ("text", _text), ("whole number", _whole), ("number", _number), \
    ("true or false", _flag)
MAP, LIST = ("mapping", _map), ("list", _list)
TEXTS = ("list of texts", _list_of(_text))
TEXT_MAP = ("mapping of texts", _map_of(_text))
NUMBER_MAP = ("mapping of numbers", _map_of(_number))

MANIFEST = Shape({
    **{name: TEXT for name in (
        "created", "updated", "ended", "user", "host", "job_name", "job_arn", "instance_type",
        "backend", "launched_via", "image_uri", "failure_reason", "name", "note", "work_dir",
        "local_copy", "git.commit", "git.branch", "config.digest", "sweep.id",
        "notebook.status", "parent.run_id", "aws.region", "aws.profile",
        "interruption.summary", "interruption.evidence")},
    "revision": WHOLE,
    "status_history": ("list of {status, time}", _list_of(_HISTORY_ENTRY)),
    **{name: MAP for name in ("git", "config", "notebook", "parent", "sweep", "aws", "cost",
                              "checkpoints", "params", "sweep.parameters", "interruption")},
    "git.dirty": FLAG,
    "config.overrides": TEXTS,
    "cost.usd": NUMBER,
    "final_metrics": NUMBER_MAP,
    "tags": TEXT_MAP,
    "uploads": ("list of mappings", _list_of(_map)),
    "interruption.attempts": ("list of mappings", _list_of(_map)),
})

SUMMARY = Shape({
    **{name: TEXT for name in (
        "updated", "created", "started", "ended", "user", "host", "job_name", "job_arn",
        "aws_region", "aws_profile", "instance_type", "backend", "launched_via", "image_uri",
        "git_commit", "git_branch", "digest", "failure_reason", "parent", "notebook", "sweep",
        "name", "note")},
    "revision": WHOLE,
    "git_dirty": FLAG,
    "overrides": TEXTS,
    "final_metrics": NUMBER_MAP,
    "tags": TEXT_MAP,
    "params": MAP,
    "parameters": MAP,
    "cost": NUMBER,
    "annotations": ("mapping of [value, stamp] pairs", _ANNOTATION),
})

ANNOTATION_EVENT = Shape({
    "set": ("mapping of texts or nulls", _map_of(_optional(_text))),
    "time": TEXT,
    "user": TEXT,
})


def checked(data: Any, shape: Shape, where: str) -> dict[str, Any]:
    """`data` when it is a mapping whose fields have their shape's types (missing or null
    fields pass); else a DamagedFile naming `where` and the first field that does not."""
    if not isinstance(data, dict):
        raise DamagedFile(where, f"a {type(data).__name__} where a mapping is expected")
    for field, value in data.items():
        rule = shape.top.get(field)
        if rule is not None and value is not None and not rule[1](value):
            raise DamagedFile(where, f"its {field} is not a {rule[0]}")
    for parent, field, (expected, check) in shape.nested:
        inner = data.get(parent)
        value = inner.get(field) if isinstance(inner, dict) else None
        if value is not None and not check(value):
            raise DamagedFile(where, f"its {parent}.{field} is not a {expected}")
    return data
