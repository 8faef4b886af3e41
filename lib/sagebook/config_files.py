"""Config files read so that every problem names its file, line and key.

Layer 1 (configuration): the plumbing that the job config (config.py) and a sweep
(sweeps/spec.py) share, apart from what either file means. A YAML file is read with the line
of each of its keys, `key.path=value` overrides are applied with the override that set each
key, and a pydantic model validates the result with messages that name where the value was
written (`file:line`, or the override) and, for a typo, the nearest valid key: a mistake is
reported where the user would fix it, every one of them at once.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ValidationError

from . import inputs
from .errors import MAX_PROBLEMS, ConfigError, format_problem

KeyPath = tuple[str | int, ...]


# --------------------------------------------------------------------------------------------
# YAML with line numbers


def read_yaml(
    path: Path, referenced_from: tuple[Path, dict[KeyPath, int]] | None = None
) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """The mapping in a YAML file and the line of every key in it, read within the bounds of
    `inputs` (size, alias expansion): a hostile file is refused, never parsed at any cost."""
    try:
        text = inputs.read_text(path)
    except inputs.UnreadableFile as exc:
        if referenced_from:
            job_path, lines = referenced_from
            raise ConfigError.one(
                f"{job_path}:{lines.get(('training_config',), '?')}",
                "job.training_config",
                f"{exc.reason}: {path}{inputs.nearest_hint(exc)}",
            ) from None
        raise ConfigError.one(str(path), None, exc.reason + inputs.nearest_hint(exc)) from None
    return parse_yaml(text, path)


def parse_yaml(text: str, path: Path) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """`read_yaml` of text held in memory (a form's editor) that stands for the file `path`."""
    data, node = inputs.parse_yaml(text, str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError.one(f"{path}:1", None, "expected a mapping of keys at the top level")
    lines: dict[KeyPath, int] = {}
    problems: list[str] = []
    _index_lines(node, (), lines, problems, path, set())
    if problems:
        raise ConfigError(problems)
    return data, lines


def _index_lines(
    node: yaml.Node | None, prefix: KeyPath, lines: dict[KeyPath, int], problems: list[str],
    path: Path, seen: set[int],
) -> None:
    """The line of every key; a node reached again through an alias is not walked again (its
    keys keep the alias's line), so the walk is linear in the file, whatever the aliases."""
    if node is None or id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = prefix + (str(key_node.value) if isinstance(key_node, yaml.ScalarNode)
                            else f"<{key_node.tag}>",)
            if key in lines:
                problems.append(format_problem(
                    f"{path}:{key_node.start_mark.line + 1}", dotted_key(key),
                    f"duplicate key (first on line {lines[key]})",
                ))
            lines[key] = key_node.start_mark.line + 1
            _index_lines(value_node, key, lines, problems, path, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[prefix + (index,)] = item.start_mark.line + 1
            _index_lines(item, prefix + (index,), lines, problems, path, seen)


def dotted_key(key: KeyPath, prefix: str = "") -> str:
    """How a message names a key: `job.channels.train`."""
    return prefix + ".".join(str(k) for k in key)


# --------------------------------------------------------------------------------------------
# Overrides


def split_overrides(overrides: tuple[str, ...],
                    known: Callable[[], list[str]] | None = None) -> tuple[list[str], list[str]]:
    """`job.` and `training.` overrides apart, each without its prefix; ConfigError for any
    other, naming the full key path meant (`epochs=3`: `training.epochs=3`) among the `known`
    ones (asked only then: knowing the training keys imports the training code's schema)."""
    job, training, problems = [], [], []
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            problems.append(format_problem(
                f"override {item!r}", None, "expected key.path=value, e.g. training.epochs=5"
            ))
        elif item.startswith("job."):
            job.append(item[len("job."):])
        elif item.startswith("training."):
            training.append(item[len("training."):])
        else:
            key, _, value = item.partition("=")
            near = nearest_override(key, known() if known else [])
            problems.append(format_problem(
                f"override {item!r}", None,
                f"the key must start with job. or training.; did you mean {near}={value}?"
                if near else
                "the key must start with job. or training. (e.g. job.instance_type=local)",
            ))
    if problems:
        raise ConfigError(problems)
    return job, training


def nearest_override(key: str, paths: list[str]) -> str | None:
    """The full key path (`training.epochs`) that an override's key without its prefix
    (`epochs`, `data.train_file`, `epoch`) most likely meant: the path it ends, else the one
    whose last part it is, else the nearest in spelling."""
    for ends in (lambda path: path.split(".", 1)[-1] == key,
                 lambda path: path.rsplit(".", 1)[-1] == key):
        found = [path for path in paths if ends(path)]
        if found:
            return found[0]
    bare = {path.split(".", 1)[-1]: path for path in paths}
    close = difflib.get_close_matches(key, list(bare), n=1, cutoff=0.75)
    return bare[close[0]] if close else None


def apply_overrides(
    data: dict[str, Any], overrides: list[str], schema: type[BaseModel] | None, prefix: str
) -> dict[KeyPath, str]:
    """Set each `key.path=value` in `data`; return which key paths came from which override."""
    sources: dict[KeyPath, str] = {}
    for item in overrides:
        dotted, _, raw = item.partition("=")
        key: KeyPath = tuple(int(p) if p.isdigit() else p for p in dotted.split("."))
        where = f"override '{prefix}{item}'"
        if any(p == "" for p in key):
            raise ConfigError.one(where, None, "empty key segment")
        value = raw if _is_text_field(schema, key) else _parse_scalar(raw)
        parent: Any = data
        for depth, part in enumerate(key[:-1]):
            nxt = parent[part] if _has(parent, part) else None
            if nxt is None:
                if isinstance(parent, list):
                    raise ConfigError.one(
                        where, dotted_key(key[: depth + 1], prefix), "index out of range"
                    )
                nxt = parent[part] = {}
            if not isinstance(nxt, dict | list):
                raise ConfigError.one(
                    where, dotted_key(key[: depth + 1], prefix),
                    f"is a {type(nxt).__name__}, not a section",
                )
            parent = nxt
        if isinstance(parent, list):
            if not isinstance(key[-1], int) or key[-1] >= len(parent):
                raise ConfigError.one(where, dotted_key(key, prefix), "index out of range")
        parent[key[-1]] = value
        sources[key] = where
    return sources


def _has(container: Any, part: str | int) -> bool:
    if isinstance(container, list):
        return isinstance(part, int) and part < len(container)
    return part in container


def _parse_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        return raw


def _is_text_field(schema: type[BaseModel] | None, key: KeyPath) -> bool:
    """Whether the schema types `key` as text, so `image_uri=123` stays the string '123'."""
    annotation = _annotation_at(schema, key)
    return annotation is not None and set(_plain_types(annotation)) <= {str, type(None)}


def _annotation_at(schema: Any, key: KeyPath) -> Any:
    current = schema
    for part in key:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return None
            current = info.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return None
    return current


def _unwrap(annotation: Any) -> Any:
    """The one model/container type inside Optional[...] and Annotated[...], if there is one."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return _unwrap(options[0])
    return annotation


def _plain_types(annotation: Any) -> list[Any]:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(annotation) for t in _plain_types(a)]
    return [annotation]


# --------------------------------------------------------------------------------------------
# Validation and error messages


def has_key(schema: type[BaseModel], dotted: str) -> bool:
    """Whether `dotted` (as in an override, without its job./training. prefix) is a key of
    the schema, or inside one of its maps."""
    key = tuple(int(p) if p.isdigit() else p for p in dotted.split("."))
    return _annotation_at(schema, key) is not None


def keys_of(schema: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key of the schema, sections' keys dotted (`data.train_file`): for suggestions."""
    keys = []
    for name, info in schema.model_fields.items():
        keys.append(prefix + name)
        inner = _unwrap(info.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            keys += keys_of(inner, f"{prefix}{name}.")
    return keys


def validate_model(
    schema: type[BaseModel], data: dict[str, Any], path: Path, lines: dict[KeyPath, int],
    sources: dict[KeyPath, str], prefix: str,
) -> Any:
    """Validate `data` read from `path` against any model; ConfigError with every problem
    named by file and line (or override), key, and the nearest key for a typo."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        problems = [_describe(error, schema, path, lines, sources, prefix)
                    for error in errors[:MAX_PROBLEMS + 1]]
        raise ConfigError(problems, unlisted=len(errors) - len(problems)) from None


def _describe(
    error: Any, schema: type[BaseModel], path: Path, lines: dict[KeyPath, int],
    sources: dict[KeyPath, str], prefix: str,
) -> str:
    loc = _keys_in(schema, error["loc"])
    where = key_location(loc, path, lines, sources)
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = _fields_at(schema, loc[:-1])
        near = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.6)
        hint = f"did you mean '{near[0]}'?" if near else f"valid keys: {', '.join(valid)}"
        return format_problem(where, dotted_key(loc, prefix), f"unknown key; {hint}")
    if kind == "missing":
        return format_problem(where, dotted_key(loc, prefix), "required key is missing")
    message = error["msg"].removeprefix("Value error, ")
    got = error.get("input")
    if kind not in ("value_error", "assertion_error") and not isinstance(got, dict | list):
        message += f" (got {got!r})"
    return format_problem(where, dotted_key(loc, prefix) if loc else None, message)


def _keys_in(schema: type[BaseModel], loc: tuple[Any, ...]) -> KeyPath:
    """The config keys in a pydantic error location, without its union and validator tags."""
    keys: list[str | int] = []
    current: Any = schema
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            if part not in current.model_fields:
                keys.append(part)
                break
            current = current.model_fields[part].annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            continue
        keys.append(part)
    return tuple(keys)


def key_location(
    loc: KeyPath, path: Path, lines: dict[KeyPath, int], sources: dict[KeyPath, str]
) -> str:
    """Where `loc` was set: the override that set it or the section around it, else the line
    of it or of its nearest section in `path`, else the file's first line."""
    for depth in range(len(loc), -1, -1):
        if loc[:depth] in sources:
            return sources[loc[:depth]]
        if loc[:depth] in lines:
            return f"{path}:{lines[loc[:depth]]}"
    return f"{path}:1"


def _fields_at(schema: type[BaseModel], loc: KeyPath) -> list[str]:
    current: Any = schema
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            current = current.model_fields[str(part)].annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def dump_yaml(data: Any) -> str:
    """`data` as YAML in the order its keys were written, as a person would write it."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
