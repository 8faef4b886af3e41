"""Rewrite a YAML config with new values while keeping what the user wrote around them.

A config file carries its author's comments, key order, quoting and layout. When the form
saves, only what changed is rewritten: unchanged entries keep their text, changed values are
replaced where they stand, removed keys go (the comments after them stay) and new keys are
appended to their section.

The configs are read by PyYAML (YAML 1.1), while ruamel.yaml edits the text (YAML 1.2). The
two disagree on plain scalars such as `yes`, `on` or `1:30`, so the changes are computed from
the data as PyYAML reads it, new text values that PyYAML would read as something else are
quoted, and the result is read back with PyYAML and compared before anyone writes it.
"""

from __future__ import annotations

import difflib
import io
import json
import math
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

# (mapping indent, sequence indent, dash offset): a file's own layout is whichever of these
# reproduces its text; the first is what new files get.
LAYOUTS = [(2, 4, 2), (2, 2, 0), (4, 4, 2), (4, 6, 4), (4, 4, 0), (2, 4, 0)]


def update_yaml(text: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """`text`, whose data PyYAML reads as `old`, changed to hold `new`.

    Raises ValueError when the result would not read back as exactly `new`.
    """
    document, dumper = _load(text)
    if document is None:
        document = CommentedMap()
    _update_map(document, old, new)
    stream = io.StringIO()
    dumper.dump(document, stream)
    result = stream.getvalue()
    if not same(yaml.safe_load(result) or {}, new):
        raise ValueError("the rewritten YAML does not read back as the values to save")
    return result


def same(a: Any, b: Any) -> bool:
    """Equal in value and in type, so 1, 1.0 and True are three different settings."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _load(text: str) -> tuple[Any, YAML]:
    """The round-trip document and a dumper set up to reproduce the file's indentation."""
    best: tuple[int, Any, YAML] | None = None
    for mapping, sequence, offset in LAYOUTS:
        dumper = YAML(typ="rt")
        dumper.Representer = _Representer
        dumper.preserve_quotes = True
        dumper.width = 4096
        dumper.indent(mapping=mapping, sequence=sequence, offset=offset)
        document = dumper.load(text)
        stream = io.StringIO()
        dumper.dump(document, stream)
        differences = sum(
            1 for line in difflib.ndiff(text.splitlines(), stream.getvalue().splitlines())
            if line[:1] in "+-"
        )
        if best is None or differences < best[0]:
            best = (differences, dumper.load(text), dumper)
        if differences == 0:
            break
    assert best is not None
    return best[1], best[2]


# --------------------------------------------------------------------------------------------
# Applying the changes


def _update_map(node: CommentedMap, old: dict[str, Any], new: dict[str, Any]) -> None:
    # PyYAML and ruamel may read the same key differently (`on:`), but in the same order.
    keys = dict(zip(old.keys(), node.keys(), strict=False))
    for key in [k for k in old if k not in new]:
        _delete(node, keys[key])
    for key, value in new.items():
        if key not in old:
            _append(node, key, value)
            continue
        node_key = keys[key]
        before = old[key]
        if same(before, value):
            continue
        child = node[node_key]
        if isinstance(before, dict) and isinstance(value, dict) and isinstance(child, CommentedMap):
            _update_map(child, before, value)
        elif isinstance(before, list) and isinstance(value, list) and isinstance(
            child, CommentedSeq
        ):
            _update_seq(child, before, value)
        else:
            _replace(node, node_key, value)


def _update_seq(node: CommentedSeq, old: list[Any], new: list[Any]) -> None:
    """Match items by content, so removing one item keeps the others and their comments."""
    matcher = difflib.SequenceMatcher(a=[_fingerprint(v) for v in old],
                                      b=[_fingerprint(v) for v in new], autojunk=False)
    # Work from the end so the indices of the earlier items stay valid.
    for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
        if tag == "equal":
            continue
        common = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        for offset in range(common):
            before, value = old[i1 + offset], new[j1 + offset]
            child = node[i1 + offset]
            if isinstance(before, dict) and isinstance(value, dict) and isinstance(
                child, CommentedMap
            ):
                _update_map(child, before, value)
            else:
                _replace(node, i1 + offset, value)
        for index in reversed(range(i1 + common, i2)):
            _delete(node, index)
        for position, value in enumerate(new[j1 + common:j2]):
            _insert(node, i1 + common + position, value)


def _fingerprint(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _delete(node: CommentedMap | CommentedSeq, key: Any) -> None:
    """Remove an entry; the comment lines after it move to the entry before it."""
    comment = _take_comment_after(node, key)
    keys = list(node.keys()) if isinstance(node, CommentedMap) else list(range(len(node)))
    position = keys.index(key)
    del node[key]  # ruamel moves the comments of later sequence items down by itself
    if comment is not None and position > 0:
        previous = keys[position - 1] if isinstance(node, CommentedMap) else position - 1
        _put_comment_after(node, previous, comment)


def _append(node: CommentedMap, key: Any, value: Any) -> None:
    """Add an entry at the end; comment lines that ended the mapping stay at its end."""
    comment = _take_comment_after(node, list(node.keys())[-1]) if len(node) else None
    node[key] = _to_node(value)
    if comment is not None:
        _put_comment_after(node, key, comment)


def _insert(node: CommentedSeq, index: int, value: Any) -> None:
    if index >= len(node):
        comment = _take_comment_after(node, len(node) - 1) if len(node) else None
        node.append(_to_node(value))
        if comment is not None:
            _put_comment_after(node, len(node) - 1, comment)
        return
    node.insert(index, _to_node(value))


def _replace(node: CommentedMap | CommentedSeq, key: Any, value: Any) -> None:
    comment = _take_comment_after(node, key)
    node[key] = _to_node(value)
    if comment is not None:
        _put_comment_after(node, key, comment)


# --------------------------------------------------------------------------------------------
# Comments: ruamel keeps the comment lines after an entry on that entry (index 2 of a mapping
# entry's slot, index 0 of a sequence item's), or, when the value is itself a mapping or a
# sequence, on the last entry inside it.


def _slot(node: CommentedMap | CommentedSeq) -> int:
    return 2 if isinstance(node, CommentedMap) else 0


def _last_key(node: Any) -> Any:
    if isinstance(node, CommentedMap) and len(node):
        return list(node.keys())[-1]
    if isinstance(node, CommentedSeq) and len(node):
        return len(node) - 1
    return None


def _comment_holder(node: CommentedMap | CommentedSeq, key: Any) -> tuple[Any, Any]:
    """The (container, key) whose slot holds the comment lines after entry `key`."""
    child = node[key]
    own = node.ca.items.get(key)
    if own is None or own[_slot(node)] is None:
        last = _last_key(child)
        if last is not None:
            return _comment_holder(child, last)
    return node, key


def _take_comment_after(node: CommentedMap | CommentedSeq, key: Any) -> CommentToken | None:
    holder, holder_key = _comment_holder(node, key)
    entry = holder.ca.items.get(holder_key)
    if entry is None:
        return None
    slot = _slot(holder)
    comment, entry[slot] = entry[slot], None
    return comment


def _put_comment_after(
    node: CommentedMap | CommentedSeq, key: Any, comment: CommentToken
) -> None:
    holder, holder_key = _comment_holder(node, key)
    entry = holder.ca.items.setdefault(holder_key, [None, None, None, None])
    slot = _slot(holder)
    existing = entry[slot]
    if existing is None:
        entry[slot] = comment
    else:
        # Both start by ending their own line: keep one line end, and one blank line at most.
        addition = comment.value.removeprefix("\n")
        if existing.value.endswith("\n\n"):
            addition = addition.lstrip("\n")
        existing.value = existing.value + addition


def _to_node(value: Any) -> Any:
    """A new value as ruamel should write it so that PyYAML reads back the same value."""
    if isinstance(value, dict):
        node = CommentedMap()
        for key, item in value.items():
            node[key] = _to_node(item)
        return node
    if isinstance(value, list):
        return CommentedSeq(_to_node(item) for item in value)
    if isinstance(value, str) and _misread(value):
        return DoubleQuotedScalarString(value)
    return value


class _Representer(RoundTripRepresenter):
    """Writes new floats so that PyYAML reads them as floats (it needs `1.0e-05`, not `1e-05`)."""

    def represent_float(self, data: float) -> Any:
        text = repr(data)
        if not math.isfinite(data) or "e" not in text or "." in text:
            return super().represent_float(data)
        mantissa, _, exponent = text.partition("e")
        return self.represent_scalar("tag:yaml.org,2002:float", f"{mantissa}.0e{exponent}")


_Representer.add_representer(float, _Representer.represent_float)


def _misread(text: str) -> bool:
    """Whether PyYAML would read this text, written plain, as something else."""
    try:
        return yaml.safe_load(text) != text
    except yaml.YAMLError:
        return False  # not plain-writable at all: ruamel quotes it by itself
