"""Every constraint the SageMaker service model states, checked before a request is sent.

botocore's own validator checks required members, types and minimums only; the model also
states maximum lengths and values, maximum items of lists and maps, patterns and enums, and
nothing checks those before the API does — after the data went up. This module walks a request
against the input shape of its operation and reports every violation at once, each with its
path into the request, the limit and the actual size or value.

The constraints are read at run time from the model botocore loads (never re-typed here), so a
botocore upgrade moves every limit with it. The model's patterns are Java regexes: they are
translated to the `regex` package's syntax (which has `\\p{L}`, `\\p{Z}`, `\\p{N}`), keeping
Java's meaning of `.`, `\\w`, `\\d`, `\\s` and the POSIX classes.

Loading the model costs ~170 ms (botocore's import and JSON); a local launch would otherwise
not pay it. The shapes an operation reaches are therefore kept in a small cache file, keyed by
the botocore version and every model file botocore's loader could read, and rebuilt from the
loaded model whenever one of those changes.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import cache_folder

Path_ = tuple[str | int, ...]
Shapes = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ApiProblem:
    """One constraint a request breaks: where in the request, and what the service would say.

    `kind` is one of required, unknown, type, length, range, items, pattern, enum, union,
    documented; callers that add advice for one kind (an unlisted instance type) read it.
    """

    path: Path_
    message: str
    kind: str = ""
    shape: str = ""


# --------------------------------------------------------------------------------------------
# Constraints the service documents but the model does not state. One row per rule; each
# cites where AWS says it. The checks run on the shape named in the first column, wherever
# the operation's input uses it.

TAGGING_DOC = ("https://docs.aws.amazon.com/general/latest/gr/aws_tagging.html "
               "(tag naming limits and requirements; linked from the model's Tag shape)")


def _reserved_tag_prefix(key: Any) -> Iterable[tuple[Path_, str]]:
    if isinstance(key, str) and key.lower().startswith("aws:"):
        yield (), f"tag keys starting with 'aws:' are reserved for AWS use, got {key!r}"


def _unique_tag_keys(tags: Any) -> Iterable[tuple[Path_, str]]:
    first: dict[str, int] = {}
    for index, tag in enumerate(tags if isinstance(tags, list) else []):
        key = tag.get("Key") if isinstance(tag, Mapping) else None
        if not isinstance(key, str):
            continue
        if key in first:
            yield (index, "Key"), (f"tag key {key!r} appears twice (first as item "
                                   f"{first[key]}); each tag key must be unique")
        else:
            first[key] = index


TUNING_RANGES_DOC = ("https://docs.aws.amazon.com/sagemaker/latest/dg/"
                     "automatic-model-tuning-define-ranges.html (at most 30 ranges and 100 "
                     "hyperparameters in total; `_tuning_objective_metric` counts)")
HYPERBAND_DOC = ("https://docs.aws.amazon.com/sagemaker/latest/APIReference/"
                 "API_HyperbandStrategyConfig.html (MaxResource: at most 20,000, else inferred)")
MAX_RANGES = 30
MAX_HYPERPARAMETERS = 100
TUNING_OBJECTIVE_HYPERPARAMETER = "_tuning_objective_metric"  # SageMaker adds it to each job
HYPERBAND_MAX_RESOURCE = 20_000
HYPERBAND_RESOURCE_KEYS = ("epochs", "numepochs", "n-epochs", "n_epochs", "num_epochs")
RANGE_KINDS = ("IntegerParameterRanges", "ContinuousParameterRanges",
               "CategoricalParameterRanges")


def _ranges_in_total(ranges: Any) -> Iterable[tuple[Path_, str]]:
    counts = {kind: len(ranges[kind]) for kind in RANGE_KINDS
              if isinstance(ranges.get(kind), list) and ranges[kind]}
    total = sum(counts.values())
    if total > MAX_RANGES:
        parts = ", ".join(f"{n} {kind.removesuffix('ParameterRanges').lower()}"
                          for kind, n in counts.items())
        yield (), (f"{total} hyperparameter ranges ({parts}); a tuning job searches at most "
                   f"{MAX_RANGES} in total")


def _definitions(request: Mapping[str, Any]) -> Iterable[tuple[Path_, Mapping[str, Any],
                                                                 Mapping[str, Any]]]:
    """Each training-job definition of a tuning request, with its path and its ranges."""
    config = request.get("HyperParameterTuningJobConfig")
    shared = config.get("ParameterRanges") if isinstance(config, Mapping) else None
    single = request.get("TrainingJobDefinition")
    several = request.get("TrainingJobDefinitions")
    found: list[tuple[Path_, Any]] = [(("TrainingJobDefinition",), single)]
    if isinstance(several, list):
        found += [(("TrainingJobDefinitions", i), d) for i, d in enumerate(several)]
    for path, definition in found:
        if isinstance(definition, Mapping):
            ranges = definition.get("HyperParameterRanges") or shared
            yield path, definition, ranges if isinstance(ranges, Mapping) else {}


def _static(definition: Mapping[str, Any]) -> Mapping[str, Any]:
    static = definition.get("StaticHyperParameters")
    return static if isinstance(static, Mapping) else {}


def _hyperparameters_in_total(request: Any) -> Iterable[tuple[Path_, str]]:
    for path, definition, ranges in _definitions(request):
        static = _static(definition)
        tuned = {r.get("Name") for kind in RANGE_KINDS for r in ranges.get(kind) or ()
                 if isinstance(r, Mapping)} - set(static)
        added = TUNING_OBJECTIVE_HYPERPARAMETER not in static
        total = len(static) + len(tuned) + added
        # more static ones than that alone: the map's own limit in the model says so
        if total > MAX_HYPERPARAMETERS and len(static) <= MAX_HYPERPARAMETERS:
            yield path + ("StaticHyperParameters",), (
                f"{total} hyperparameters in total: {len(static)} static + {len(tuned)} tuned"
                + (f" + {TUNING_OBJECTIVE_HYPERPARAMETER}, which SageMaker adds" if added else "")
                + f"; a tuning job takes at most {MAX_HYPERPARAMETERS}")


def _hyperband_resource(config: Any) -> Iterable[tuple[Path_, str]]:
    given = config.get("MaxResource")
    if isinstance(given, int) and given > HYPERBAND_MAX_RESOURCE:
        yield ("MaxResource",), (f"at most {HYPERBAND_MAX_RESOURCE:,} allowed (epochs, or "
                                 f"whatever the resource is), got {given:,}")


def _hyperband_inferred_resource(request: Any) -> Iterable[tuple[Path_, str]]:
    """Without MaxResource, SageMaker reads it from a static hyperparameter named like epochs."""
    config = request.get("HyperParameterTuningJobConfig")
    if not isinstance(config, Mapping) or config.get("Strategy") != "Hyperband":
        return
    strategy = config.get("StrategyConfig")
    hyperband = strategy.get("HyperbandStrategyConfig") if isinstance(strategy, Mapping) else None
    if isinstance(hyperband, Mapping) and hyperband.get("MaxResource") is not None:
        return
    where = ("HyperParameterTuningJobConfig", "Strategy")
    names = ", ".join(HYPERBAND_RESOURCE_KEYS)
    for _path, definition, ranges in _definitions(request):
        static = _static(definition)
        key = next((k for k in HYPERBAND_RESOURCE_KEYS if k in static), None)
        if key is None:
            tuned = [r.get("Name") for kind in RANGE_KINDS for r in ranges.get(kind) or ()
                     if isinstance(r, Mapping) and r.get("Name") in HYPERBAND_RESOURCE_KEYS]
            why = (f"{tuned[0]} is tuned, not static" if tuned
                   else "there is no such static hyperparameter")
            yield where, (f"Hyperband without MaxResource: SageMaker infers it from a static "
                          f"hyperparameter named {names}, and {why}; give "
                          f"HyperbandStrategyConfig.MaxResource")
            return
        value = str(static[key]).strip()
        if not (value.isdigit() and 1 <= int(value) <= HYPERBAND_MAX_RESOURCE):
            yield where, (f"Hyperband without MaxResource: SageMaker infers it from the static "
                          f"hyperparameter {key}, {static[key]!r}, which is not a whole number "
                          f"from 1 to {HYPERBAND_MAX_RESOURCE:,}; give "
                          f"HyperbandStrategyConfig.MaxResource")
            return


DOCUMENTED: tuple[tuple[str, Callable[[Any], Iterable[tuple[Path_, str]]], str], ...] = (
    ("TagKey", _reserved_tag_prefix, TAGGING_DOC),
    ("TagList", _unique_tag_keys, TAGGING_DOC),
    ("ParameterRanges", _ranges_in_total, TUNING_RANGES_DOC),
    ("CreateHyperParameterTuningJobRequest", _hyperparameters_in_total, TUNING_RANGES_DOC),
    ("HyperbandStrategyConfig", _hyperband_resource, HYPERBAND_DOC),
    ("CreateHyperParameterTuningJobRequest", _hyperband_inferred_resource, HYPERBAND_DOC),
)


# --------------------------------------------------------------------------------------------
# The check


def check_request(
    operation: str, request: Mapping[str, Any], service_model: Any = None
) -> list[ApiProblem]:
    """Every way `request` breaks the constraints of `operation`'s input in the SageMaker model.

    `service_model` is a botocore ServiceModel (a client's `meta.service_model`) to read the
    constraints from; without it the model botocore loads (through the cache) is used.
    """
    shapes, root = operation_shapes(operation, service_model)
    problems: list[ApiProblem] = []
    _check(shapes, root, request, (), problems)
    return problems


def allowed_values(operation: str, path: Path_) -> list[str]:
    """The values the model's enum lists for the field at `path` of `operation`'s input."""
    shapes, name = operation_shapes(operation)
    for part in path:
        name = shapes[name]["members"][part]
    return list(shapes[name].get("enum", ()))


def not_listed(value: str, listed: list[str]) -> str:
    """What is said of a value the model's enum does not list: the list, or the nearest."""
    near = difflib.get_close_matches(value, listed, n=3, cutoff=0.0)
    choice = (f"one of {', '.join(listed)}" if len(listed) <= 8 else
              f"one of the {len(listed)} values the service model lists; nearest: "
              f"{', '.join(near)}")
    return f"{_show(value)} is not {choice}"


def operation_shapes(operation: str, service_model: Any = None) -> tuple[Shapes, str]:
    """The shapes `operation`'s input reaches, as plain dicts, and the input shape's name."""
    if service_model is not None:
        return _derive(service_model, operation)
    return _cached(operation)


def _check(shapes: Shapes, name: str, value: Any, path: Path_,
           problems: list[ApiProblem]) -> None:
    shape = shapes[name]
    kind = shape["type"]
    expected = _TYPES.get(kind)
    if expected is not None and not _is(value, kind):
        problems.append(ApiProblem(
            path, f"expected {expected}, got {type(value).__name__} {_show(value)}", "type", name))
        return
    if kind == "structure":
        _check_structure(shapes, name, shape, value, path, problems)
    elif kind == "list":
        _check_size(name, shape, len(value), "item", path, problems)
        for index, item in enumerate(value):
            _check(shapes, shape["member"], item, path + (index,), problems)
    elif kind == "map":
        _check_size(name, shape, len(value), "entry", path, problems)
        for key, item in value.items():
            before = len(problems)
            _check(shapes, shape["key"], key, path + (key,), problems)
            for i in range(before, len(problems)):
                old = problems[i]
                problems[i] = ApiProblem(old.path, f"key: {old.message}",
                                         old.kind, old.shape)
            _check(shapes, shape["value"], item, path + (key,), problems)
    elif kind == "string":
        _check_string(name, shape, value, path, problems)
    elif kind in ("integer", "long", "float", "double"):
        _check_range(name, shape, value, path, problems)
    for rule_shape, rule, _source in DOCUMENTED:
        if rule_shape == name:
            problems += [ApiProblem(path + sub, message, "documented", name)
                         for sub, message in rule(value)]


def _check_structure(shapes: Shapes, name: str, shape: dict[str, Any], value: Mapping[str, Any],
                     path: Path_, problems: list[ApiProblem]) -> None:
    members: dict[str, str] = shape["members"]
    for member in shape.get("required", ()):
        if value.get(member) is None:
            problems.append(ApiProblem(path + (member,), "required member is missing",
                                       "required", name))
    present = [m for m, v in value.items() if v is not None]
    if shape.get("union") and len(present) != 1:
        problems.append(ApiProblem(
            path, f"exactly one of {', '.join(members)} must be set, got {len(present)}",
            "union", name))
    for member in present:
        if member not in members:
            near = difflib.get_close_matches(str(member), members, n=1, cutoff=0.6)
            hint = f"did you mean {near[0]!r}?" if near else f"valid: {', '.join(members)}"
            problems.append(ApiProblem(path + (member,), f"unknown member; {hint}",
                                       "unknown", name))
        else:
            _check(shapes, members[member], value[member], path + (member,), problems)


def _check_size(name: str, shape: dict[str, Any], size: int, unit: str, path: Path_,
                problems: list[ApiProblem]) -> None:
    if "max" in shape and size > shape["max"]:
        problems.append(ApiProblem(path, f"at most {_many(shape['max'], unit)} allowed, got "
                                         f"{size:,}", "items", name))
    if "min" in shape and size < shape["min"]:
        problems.append(ApiProblem(path, f"at least {_many(shape['min'], unit)} needed, got "
                                         f"{size:,}", "items", name))


def _check_string(name: str, shape: dict[str, Any], value: str, path: Path_,
                  problems: list[ApiProblem]) -> None:
    size = len(value)
    if "max" in shape and size > shape["max"]:
        problems.append(ApiProblem(
            path, f"at most {_many(shape['max'], 'character')} allowed, got {size:,}: "
                  f"{_show(value)}",
            "length", name))
    if "min" in shape and size < shape["min"]:
        problems.append(ApiProblem(
            path, f"at least {_many(shape['min'], 'character')} needed, got {size:,}", "length",
            name))
    if "enum" in shape and value not in shape["enum"]:
        problems.append(ApiProblem(path, not_listed(value, shape["enum"]), "enum", name))
    if "pattern" in shape:
        compiled = java_pattern(shape["pattern"])
        if not compiled.fullmatch(value):
            problems.append(ApiProblem(
                path, f"{_show(value)} does not match the pattern {shape['pattern']}"
                f"{_first_refused(compiled, value)}", "pattern", name))


def _check_range(name: str, shape: dict[str, Any], value: float, path: Path_,
                 problems: list[ApiProblem]) -> None:
    if "max" in shape and value > shape["max"]:
        problems.append(ApiProblem(path, f"at most {shape['max']:,} allowed, got {value:,}",
                                   "range", name))
    if "min" in shape and value < shape["min"]:
        problems.append(ApiProblem(path, f"at least {shape['min']:,} allowed, got {value:,}",
                                   "range", name))


_TYPES = {
    "structure": "a mapping", "list": "a list", "map": "a mapping", "string": "a string",
    "integer": "an integer", "long": "an integer", "float": "a number", "double": "a number",
    "boolean": "true or false",
}


def _is(value: Any, kind: str) -> bool:
    if kind in ("structure", "map"):
        return isinstance(value, Mapping)
    if kind == "list":
        return isinstance(value, list | tuple)
    if kind == "string":
        return isinstance(value, str)
    if kind in ("integer", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "double"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, bool)  # boolean; other kinds have no entry in _TYPES


def _many(count: int, unit: str) -> str:
    plural = unit[:-1] + "ies" if unit.endswith("y") else unit + "s"
    return f"{count:,} {unit if count == 1 else plural}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}…"


def _first_refused(compiled: JavaPattern, value: str) -> str:
    """Where the value stops fitting: the first character no match could continue with."""
    full = compiled.full
    if full is None:
        return ""
    for end in range(1, len(value) + 1):
        if full.fullmatch(value[:end], partial=True) is None:
            return f" (refused from character {end}: {value[end - 1]!r})"
    return ""


# --------------------------------------------------------------------------------------------
# Java regexes
#
# Two translations of each pattern: one for the `regex` package, faithful for any value (it has
# Unicode properties and Java's nested classes), and, where the pattern allows, one for Python's
# `re` that is faithful for ASCII values only (\p{L} becomes the ASCII letters, …). Almost
# every value a launch sends is ASCII: `re` then answers, and `regex` (~6 ms to import, slower
# to compile) is loaded only for a value that needs it.


_JAVA_POSIX = {
    "Lower": "a-z", "Upper": "A-Z", "ASCII": "\\x00-\\x7F", "Alpha": "a-zA-Z", "Digit": "0-9",
    "Alnum": "a-zA-Z0-9", "Punct": "!-/:-@\\[-`{-~", "Graph": "!-~", "Print": " -~",
    "Blank": " \\t", "Cntrl": "\\x00-\\x1F\\x7F", "XDigit": "0-9a-fA-F",
    "Space": " \\t\\n\\x0B\\f\\r",
}
# Java's shorthand classes are ASCII unless UNICODE_CHARACTER_CLASS is set (the service's are not)
_JAVA_SHORTHAND = {"w": "a-zA-Z_0-9", "d": "0-9", "s": " \\t\\n\\x0B\\f\\r"}
# what Java's `.` refuses by default: the line terminators
_JAVA_DOT = "[^\\n\\r\\u0085\\u2028\\u2029]"


class _Untranslatable(Exception):
    """The pattern uses what the ASCII `re` translation cannot express."""


@dataclass(frozen=True)
class JavaPattern:
    """A Java regex, matched as Java matches it (`matches()`: the whole value)."""

    source: str
    ascii: Any  # re.Pattern for ASCII values, or None
    regex_source: str

    @property
    def full(self) -> Any:
        """The `regex` translation, compiled on first need; None if it does not compile."""
        return _compile_regex(self.regex_source)

    def fullmatch(self, value: str) -> bool:
        if self.ascii is not None and value.isascii():
            return self.ascii.fullmatch(value) is not None
        full = self.full
        return full is None or full.fullmatch(value) is not None


@functools.lru_cache(maxsize=512)
def java_pattern(pattern: str) -> JavaPattern:
    try:
        ascii_re = re.compile(translate_java(pattern, ascii_only=True), re.ASCII)
    except (_Untranslatable, re.error):
        ascii_re = None
    return JavaPattern(pattern, ascii_re, translate_java(pattern))


@functools.lru_cache(maxsize=512)
def _compile_regex(source: str) -> Any:
    import regex  # third-party, ~10 ms: loaded for the first pattern `re` cannot run

    try:
        return regex.compile(source, regex.V1)
    except regex.error:
        return None  # tests compile every pattern of the model, so this is never silent


def translate_java(pattern: str, *, ascii_only: bool = False) -> str:
    """Java regex → `regex` V1 syntax (V1: nested classes and `&&`, as in Java); or, with
    `ascii_only`, → `re` syntax (compiled with re.ASCII) that means the same for ASCII values."""
    out: list[str] = []
    depth = 0  # nesting of character classes
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in "pP" and pattern.startswith("{", i + 2):
                end = pattern.index("}", i)
                name = pattern[i + 3:end].removeprefix("Is")
                body = _JAVA_POSIX.get(name)
                if body is None and ascii_only:
                    body = _ascii_members(name)
                if body is not None:
                    out.append(_class(body, negate=nxt == "P", inside=depth > 0,
                                      ascii_only=ascii_only))
                else:
                    out.append(pattern[i:end + 1])
                i = end + 1
                continue
            if nxt.lower() in _JAVA_SHORTHAND:
                if ascii_only:  # re.ASCII gives \w \d \s Java's own ASCII meaning
                    out.append(pattern[i:i + 2])
                else:
                    out.append(_class(_JAVA_SHORTHAND[nxt.lower()], negate=nxt.isupper(),
                                      inside=depth > 0))
                i += 2
                continue
            if nxt == "u" and i + 6 <= len(pattern):
                code = int(pattern[i + 2:i + 6], 16)
                low = pattern[i + 6:i + 12]
                if 0xD800 <= code <= 0xDBFF and low.startswith("\\u") and \
                        0xDC00 <= int(low[2:], 16) <= 0xDFFF:
                    # a UTF-16 surrogate pair in Java is one code point here
                    point = 0x10000 + ((code - 0xD800) << 10) + (int(low[2:], 16) - 0xDC00)
                    out.append(f"\\U{point:08X}")
                    i += 12
                    continue
                out.append(pattern[i:i + 6])
                i += 6
                continue
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if char == "[":
            if ascii_only and depth:
                raise _Untranslatable("a nested class")
            depth += 1
        elif char == "]" and depth:
            depth -= 1
        elif char == "&" and depth and ascii_only and pattern.startswith("&&", i):
            raise _Untranslatable("a class intersection")
        elif char == "." and depth == 0:
            out.append(_JAVA_DOT)
            i += 1
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _class(body: str, *, negate: bool, inside: bool, ascii_only: bool = False) -> str:
    if not body:  # a category with no ASCII member (the `re` translation only)
        if inside:
            raise _Untranslatable("an empty class inside a class")
        return "[\\s\\S]" if negate else "(?!)"
    if negate:
        if inside and ascii_only:
            raise _Untranslatable("a negated class inside a class")
        return f"[^{body}]"  # nested inside a class: a V1 nested set, a union as in Java
    return body if inside else f"[{body}]"


@functools.lru_cache(maxsize=64)
def _ascii_members(category: str) -> str | None:
    """The ASCII characters of a Unicode general category (L, Lu, N, Z, P, S, …), as a class
    body; None for any other property (scripts, blocks), which only `regex` knows."""
    if not (1 <= len(category) <= 2 and category[0] in "LMNPSZC" and category.isalpha()):
        return None
    members = [chr(c) for c in range(128) if unicodedata.category(chr(c)).startswith(category)]
    return "".join(re.escape(c) for c in members)


# --------------------------------------------------------------------------------------------
# The model: from botocore, or from the cache derived from it


@functools.lru_cache(maxsize=8)
def _derive(service_model: Any, operation: str) -> tuple[Shapes, str]:
    """The shapes `operation`'s input reaches, constraints only (no documentation)."""
    root = service_model.operation_model(operation).input_shape
    shapes: Shapes = {}
    pending = [root]
    while pending:
        shape = pending.pop()
        if shape.name in shapes:
            continue
        spec: dict[str, Any] = {"type": shape.type_name}
        for key in ("min", "max", "pattern"):
            if key in shape.metadata:
                spec[key] = shape.metadata[key]
        if getattr(shape, "enum", None):
            spec["enum"] = list(shape.enum)
        if shape.type_name == "structure":
            spec["members"] = {n: m.name for n, m in shape.members.items()}
            spec["required"] = list(shape.required_members)
            if shape.metadata.get("union"):
                spec["union"] = True
            pending += shape.members.values()
        elif shape.type_name == "list":
            spec["member"] = shape.member.name
            pending.append(shape.member)
        elif shape.type_name == "map":
            spec["key"], spec["value"] = shape.key.name, shape.value.name
            pending += [shape.key, shape.value]
        shapes[shape.name] = spec
    return shapes, root.name


@functools.lru_cache(maxsize=8)
def _cached(operation: str) -> tuple[Shapes, str]:
    fingerprint = model_fingerprint()
    cache = _cache_path(operation, fingerprint)
    try:
        data = json.loads(cache.read_text())
        if data["fingerprint"] == fingerprint:
            return data["shapes"], data["root"]
    except (OSError, ValueError, KeyError):
        pass
    import botocore.session  # ~170 ms with the model: only when the cache is stale

    model = botocore.session.get_session().get_service_model("sagemaker")
    shapes, root = _derive(model, operation)
    _write_atomic(cache, json.dumps({"fingerprint": fingerprint, "root": root,
                                     "shapes": shapes}))
    return shapes, root


def model_fingerprint() -> list[Any]:
    """What botocore's loader would read the SageMaker model from, without importing botocore:
    its version and the size and time of every `sagemaker/*/service-2.json*` on its search
    path (AWS_DATA_PATH, ~/.aws/models, botocore's own data)."""
    spec = importlib.util.find_spec("botocore")
    assert spec is not None and spec.origin is not None
    package = Path(spec.origin).parent
    roots = [p for p in os.environ.get("AWS_DATA_PATH", "").split(os.pathsep) if p]
    roots += [str(Path("~/.aws/models").expanduser()), str(package / "data")]
    found: list[Any] = [_botocore_version(package)]
    for root in roots:
        service = Path(root) / "sagemaker"
        try:
            versions = sorted(os.scandir(service), key=lambda e: e.name)
        except OSError:
            continue
        for version in versions:
            try:
                files = sorted(os.scandir(version.path), key=lambda e: e.name)
            except OSError:
                continue
            for entry in files:
                if entry.name.startswith("service-2."):
                    stat = entry.stat()
                    found.append([entry.path, stat.st_size, stat.st_mtime_ns])
    return found


def _botocore_version(package: Path) -> str:
    text = (package / "__init__.py").read_text()
    start = text.index("__version__")
    return text[start:text.index("\n", start)]


def _cache_path(operation: str, fingerprint: list[Any]) -> Path:
    """One file per model: environments with other botocore versions (a venv for the SDK)
    share the cache folder without evicting each other's entry."""
    digest = hashlib.sha256(json.dumps(fingerprint).encode()).hexdigest()[:16]
    return cache_folder() / f"sagemaker-{operation}-{digest}.json"


def _write_atomic(path: Path, text: str) -> None:
    """A cache is an optimisation: if it cannot be written, the next launch derives it again."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False,
                                         suffix=".tmp") as handle:
            handle.write(text)
        os.replace(handle.name, path)
    except OSError:
        pass
