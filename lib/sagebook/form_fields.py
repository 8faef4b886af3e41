"""The config form's fields, generated from a pydantic schema: one editor per config value.

Each field's widget follows its type — text, number, checkbox, a dropdown for `Literal`
choices, a duration, a list, a key/value map, a nested section — and its default, limits and
help text come from the schema, so a new option in `JobConfig` or in the training code's
schema shows up in the form without touching this module. An editor knows the value in the
file and the value it shows; what it shows is only ever parsed, never judged: validity is
`sagebook.config`'s to decide (see `sagebook.widgets`).
"""

from __future__ import annotations

import html
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import ipywidgets as widgets
import yaml
from pydantic import BaseModel, BeforeValidator
from pydantic_core import PydanticUndefined

from . import config
from .kinds import offered_types
from .yaml_update import same

KeyPath = tuple[str | int, ...]


class _Unset:
    """The value of a key that is not in the file (and is not to be written)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()

# Fields offered as a list that also takes free text: what the backend registry offers.
SUGGESTIONS: dict[KeyPath, Callable[[], list[str]]] = {("job", "instance_type"): offered_types}

# The form manages this link itself: Save points it at the training file it writes.
READ_ONLY: set[KeyPath] = {("job", "training_config")}

LABEL_WIDTH = "16em"
INPUT_WIDTH = "46em"

# --------------------------------------------------------------------------------------------
# What the schema says about one field


@dataclass
class Spec:
    """One field as the schema describes it."""

    name: str
    key: KeyPath
    annotation: Any
    optional: bool = False
    default: Any = UNSET
    description: str = ""
    limits: list[str] = field(default_factory=list)
    before: list[Callable[[Any], Any]] = field(default_factory=list)
    is_field: bool = False  # a model's field (not a list item or map value)
    # the optional section whose presence makes a required field required (job.mlflow)
    required_with: str | None = None

    @property
    def dotted(self) -> str:
        return ".".join(str(k) for k in self.key)

    @property
    def is_duration(self) -> bool:
        return config.parse_duration in self.before

    @classmethod
    def of(cls, name: str, key: KeyPath, annotation: Any, info: Any = None) -> Spec:
        """The spec of a model field (`info`) or of a list item or map value (no `info`)."""
        spec = cls(name, key, None)
        metadata = list(info.metadata) if info is not None else []
        annotation, optional = _strip(annotation, metadata)
        spec.annotation, spec.optional = annotation, optional
        spec.before = [m.func for m in metadata if isinstance(m, BeforeValidator)]
        spec.limits = [text for m in metadata if (text := _limit(m))]
        if info is not None:
            spec.is_field = True
            spec.description = info.description or ""
            if info.default_factory is not None:
                spec.default = info.default_factory()
            elif info.default is not PydanticUndefined:
                spec.default = info.default
        return spec


def _strip(annotation: Any, metadata: list[Any]) -> tuple[Any, bool]:
    """The type inside Optional[...] and Annotated[...], collecting the Annotated metadata."""
    optional = False
    while True:
        if typing.get_origin(annotation) is Annotated:
            base, *extra = typing.get_args(annotation)
            metadata.extend(extra)
            annotation = base
        elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = optional or len(options) < len(typing.get_args(annotation))
            if len(options) != 1:
                return annotation, optional
            annotation = options[0]
        else:
            return annotation, optional


_LIMITS = {"ge": "≥ {}", "gt": "> {}", "le": "≤ {}", "lt": "< {}",
           "min_length": "at least {} characters", "max_length": "at most {} characters"}


def _limit(metadata: Any) -> str | None:
    for name, template in _LIMITS.items():
        value = getattr(metadata, name, None)
        if value is not None and not callable(value):
            return template.format(value)
    return None


def _model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) \
        else None


# --------------------------------------------------------------------------------------------
# Editors: one per config value, built from its spec


class Editor:
    """One value of the config in the form: its widgets, its value in the file, its value now.

    `value()` is what the file would hold: the original value (exactly as read) while the
    widget still shows it, else the value parsed from the widget; UNSET means the key is not
    written. A *fresh* editor (a new list item or map entry) has no original and always
    reports the widget's value.
    """

    def __init__(self, spec: Spec, original: Any, notify: Callable[[], None],
                 fresh: bool = False):
        self.spec = spec
        self.original = original
        self.notify = notify
        self.fresh = fresh
        self.error = widgets.HTML(layout=widgets.Layout(display="none"))
        self.error.add_class("sagebook-error")
        self.box: widgets.Box = widgets.VBox()

    def value(self) -> Any:
        raise NotImplementedError

    def changed(self) -> bool:
        """Whether the value differs from the file's."""
        return self.fresh or not _same_or_unset(self.value(), self.original)

    def own_change(self) -> bool:
        """Whether this editor itself (not a field inside it) is to be highlighted."""
        return self.changed()

    def settle(self, saved: Any) -> None:
        """The file now holds what the form shows (a Save wrote it; `saved` is the value read
        back): the same widgets go on showing it, with nothing left changed. Rebuilding the
        widgets instead would race the browser, which still renders the old ones."""
        self.original = saved
        self.fresh = False

    def children(self) -> list[Editor]:
        return []

    def walk(self) -> Iterator[Editor]:
        yield self
        for child in self.children():
            yield from child.walk()

    def find(self, parts: list[str]) -> tuple[Editor, list[str]]:
        """The editor deepest along a key path (as in a problem's `job.a.b`), and the parts of
        the path below it that no editor matched."""
        return self, parts

    def form_problems(self) -> list[tuple[Editor, str]]:
        """Problems the config data cannot even express (an empty or repeated map key)."""
        return []

    def show_errors(self, messages: list[str]) -> None:
        self.error.value = "<br>".join(html.escape(m) for m in messages)
        self.error.layout.display = "block" if messages else "none"

    def highlight(self) -> None:
        if self.own_change():
            self.box.add_class("sagebook-changed")
        else:
            self.box.remove_class("sagebook-changed")

    @property
    def css_class(self) -> str:
        """The class naming this value's box on the page (a problem's link finds it by it)."""
        return "sagebook-key-" + _css_name(self.spec.key)

    def _decorate(self, help_text: str) -> None:
        self.box.add_class("sagebook-field")
        self.box.add_class(self.css_class)
        self.help = widgets.HTML(html.escape(help_text))
        self.help.add_class("sagebook-help")
        if not help_text:
            self.help.layout.display = "none"


def _same_or_unset(a: Any, b: Any) -> bool:
    if a is UNSET or b is UNSET:
        return a is b
    return same(a, b)


def _css_name(key: KeyPath) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", "-".join(str(k) for k in key))


def _help(spec: Spec, default_text: str | None = None) -> str:
    parts = [spec.description.rstrip(".")] if spec.description else []
    if spec.default is UNSET and not spec.optional and spec.is_field:
        parts.append(f"required when {spec.required_with} is set" if spec.required_with
                     else "required")
    elif default_text is not None:
        parts.append(f"default: {default_text}")
    parts += spec.limits
    return " · ".join(p for p in parts if p)


class ScalarEditor(Editor):
    """A value in one input widget; subclasses say how text or numbers become config values."""

    widget: widgets.ValueWidget

    def __init__(self, spec: Spec, original: Any, notify: Callable[[], None],
                 fresh: bool = False, label: bool = True):
        super().__init__(spec, original, notify, fresh)
        self.widget = self._make_widget()
        if label and spec.name:
            self.widget.description = spec.name
            self.widget.style = {"description_width": LABEL_WIDTH}
            self.widget.layout.width = INPUT_WIDTH
        self.widget.disabled = spec.key in READ_ONLY
        self.shown = self.widget.value
        self.widget.observe(lambda _change: self.notify(), names="value")
        help_text = _help(spec, self._default_text())
        if spec.key in READ_ONLY:
            help_text += " · Save writes this file; Save as… can name another"
        self._decorate(help_text)
        self.box.children = [self.widget, self.help, self.error]

    def _make_widget(self) -> widgets.ValueWidget:
        raise NotImplementedError

    def _default_text(self) -> str | None:
        default = self.spec.default
        if default is UNSET:
            return None
        return "not set" if default is None else _yaml_text(default)

    def _parse(self, shown: Any) -> Any:
        return shown

    def _start(self) -> Any:
        """What the widget first shows: the file's value, else the schema's default."""
        return self.original if self.original is not UNSET else (
            None if self.spec.default is UNSET else self.spec.default)

    def settle(self, saved: Any) -> None:
        super().settle(saved)
        self.shown = self.widget.value

    def value(self) -> Any:
        if not self.fresh and self.widget.value == self.shown and type(
            self.widget.value
        ) is type(self.shown):
            return self.original
        return self._parse(self.widget.value)


class TextEditor(ScalarEditor):
    """Text: plain strings, durations (`90m`, `2h`, seconds), or any value written as YAML."""

    def __init__(self, spec: Spec, original: Any, notify: Callable[[], None],
                 fresh: bool = False, label: bool = True, kind: str = "str"):
        self.kind = kind
        super().__init__(spec, original, notify, fresh, label)

    def _make_widget(self) -> widgets.ValueWidget:
        suggestions = SUGGESTIONS.get(self.spec.key)
        text = self._text(self._start())
        if suggestions:
            return widgets.Combobox(value=text, options=suggestions(), ensure_option=False,
                                    placeholder="choose or type", continuous_update=True)
        placeholder = {"duration": "e.g. 90m, 2h, 3600", "yaml": "a YAML value"}.get(
            self.kind, "")
        return widgets.Text(value=text, placeholder=placeholder, continuous_update=True)

    def _text(self, value: Any) -> str:
        if value is None:
            return ""
        if self.kind == "duration" and isinstance(value, int) and not isinstance(value, bool):
            return config.duration_text(value)
        if self.kind == "str" and isinstance(value, str):
            return value
        return _yaml_text(value)

    def _default_text(self) -> str | None:
        default = self.spec.default
        if self.kind == "duration" and isinstance(default, int):
            return config.duration_text(default)
        return super()._default_text()

    def _parse(self, shown: Any) -> Any:
        text = str(shown)
        if not text.strip():
            # An emptied optional field is unset; otherwise validation judges the empty text.
            return None if self.spec.optional or self.kind == "yaml" else text
        if self.kind == "duration":
            stripped = text.strip()
            return int(stripped) if stripped.isdigit() else stripped
        if self.kind == "yaml":
            return _parse_yaml(text)
        return text


class NumberEditor(ScalarEditor):
    """A number, typed as text: a browser's number input drops what is not a number without a
    word (`abc` became the old value again), so the text reaches validation, which names it."""

    def __init__(self, spec: Spec, original: Any, notify: Callable[[], None],
                 fresh: bool = False, label: bool = True, kind: type = int):
        self.kind = kind
        super().__init__(spec, original, notify, fresh, label)

    def _make_widget(self) -> widgets.ValueWidget:
        start = self._start()
        return widgets.Text(value=repr(self.kind(start or 0)), continuous_update=True)

    def _parse(self, shown: Any) -> Any:
        """The number the text spells, else the text itself (for validation to refuse)."""
        text = str(shown).strip()
        try:
            return self.kind(text)
        except ValueError:
            return text


class BoolEditor(ScalarEditor):
    def _make_widget(self) -> widgets.ValueWidget:
        return widgets.Checkbox(value=bool(self._start()), indent=True)


class ChoiceEditor(ScalarEditor):
    """A closed set of choices (`Literal[...]`), with "not set" when the field is optional."""

    def _make_widget(self) -> widgets.ValueWidget:
        options = [(str(c), c) for c in typing.get_args(self.spec.annotation)]
        if self.spec.optional:
            options.insert(0, ("(not set)", None))
        start = self._start()
        value = start if start in [v for _, v in options] else options[0][1]
        return widgets.Dropdown(options=options, value=value)


def _yaml_text(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True)
    return text.strip().removesuffix("...").strip()


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


class ModelEditor(Editor):
    """A section: one editor per field of a pydantic model, plus any keys the model lacks."""

    def __init__(self, spec: Spec, original: Any, notify: Callable[[], None],
                 fresh: bool = False, sections: list[tuple[str, list[str]]] | None = None,
                 title: str | None = None, label: bool = False):
        super().__init__(spec, original, notify, fresh)
        self.label = label and bool(spec.name)
        self.model: type[BaseModel] = spec.annotation
        data = original
        for func in spec.before:  # e.g. a channel written as just its URI
            data = func(data)
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        self.fields: dict[str, Editor] = {}
        for name, info in self.model.model_fields.items():
            child_spec = Spec.of(name, spec.key + (name,), info.annotation, info)
            child_spec.required_with = spec.dotted if spec.optional else spec.required_with
            child_fresh = fresh and child_spec.default is UNSET
            self.fields[name] = build_editor(
                child_spec, self.data.get(name, UNSET), notify, fresh=child_fresh
            )
        self.unknown: dict[str, UnknownEditor] = {
            name: UnknownEditor(Spec(str(name), spec.key + (name,), None), value, notify,
                                on_remove=self._remove_unknown)
            for name, value in self.data.items() if name not in self.model.model_fields
        }
        self.removed_unknown = False
        self.box.add_class("sagebook-model")
        self.box.add_class(self.css_class)
        self.title = title
        self.sections = sections
        self.help = widgets.HTML(html.escape(_help(spec)))
        self.help.add_class("sagebook-help")
        self.fields_box = widgets.VBox()
        self._layout()

    def _layout(self) -> None:
        parts: list[widgets.Widget] = []
        if self.title is not None:
            heading = widgets.HTML(f"<div class='sagebook-section'>{html.escape(self.title)}"
                                   "</div>")
            parts.append(heading)
        if self.label:  # a nested section (training.data): its name and help, fields indented
            self.fields_box.add_class("sagebook-nested")
            self.box.children = [widgets.HTML(f"<b>{html.escape(self.spec.name)}</b>"),
                                 self.help, self.error, self.fields_box]
            self.fields_box.children = [e.box for e in self.children()]
            return
        parts.append(self.error)
        if self.sections:
            placed: set[str] = set()
            for title, names in self.sections + [("Other settings", list(self.fields))]:
                members = [n for n in names if n in self.fields and n not in placed]
                if not members:
                    continue
                placed.update(members)
                parts.append(widgets.HTML(f"<div class='sagebook-section'>"
                                          f"{html.escape(title)}</div>"))
                parts += [self.fields[n].box for n in members]
        else:
            parts += [editor.box for editor in self.fields.values()]
        parts += [editor.box for editor in self.unknown.values()]
        self.box.children = parts

    def _remove_unknown(self, editor: UnknownEditor) -> None:
        name = next(k for k, v in self.unknown.items() if v is editor)
        del self.unknown[name]
        self.removed_unknown = True
        self._layout()
        self.notify()

    def children(self) -> list[Editor]:
        return [*self.fields.values(), *self.unknown.values()]

    def changed(self) -> bool:
        return self.fresh or self.removed_unknown or any(c.changed() for c in self.children())

    def own_change(self) -> bool:
        return self.removed_unknown

    def settle(self, saved: Any) -> None:
        super().settle(saved)
        data = saved
        for func in self.spec.before:
            data = func(data)
        self.data = data if isinstance(data, dict) else {}
        for name, editor in [*self.fields.items(), *self.unknown.items()]:
            editor.settle(self.data.get(name, UNSET))
        self.removed_unknown = False

    def value(self) -> Any:
        if not self.changed():
            return self.original
        values: dict[str, Any] = {}
        editors = {**self.fields, **self.unknown}
        # The file's order first, then new keys in the schema's order.
        for name in [*[k for k in self.data if k in editors], *editors]:
            if name in values:
                continue
            editor = editors[name]
            value = editor.value()
            if value is None and editor.spec.optional and editor.spec.default is None or (
                value in ({}, []) and _same_or_unset(value, editor.spec.default)
            ):
                value = UNSET  # clearing an optional field or emptying a list removes its key
            if value is not UNSET:
                values[name] = value
        if self.original is UNSET and not values and not self.fresh:
            return UNSET
        return values

    def find(self, parts: list[str]) -> tuple[Editor, list[str]]:
        if parts and parts[0] in self.fields:
            return self.fields[parts[0]].find(parts[1:])
        if parts and parts[0] in self.unknown:
            return self.unknown[parts[0]].find(parts[1:])
        return self, parts

    def form_problems(self) -> list[tuple[Editor, str]]:
        return [p for c in self.children() for p in c.form_problems()]


class UnknownEditor(TextEditor):
    """A key the schema does not know (a typo, usually): editable as YAML, or removable."""

    def __init__(self, spec: Spec, original: Any, notify: Callable[[], None],
                 on_remove: Callable[[UnknownEditor], None]):
        super().__init__(spec, original, notify, kind="yaml")
        self.remove = widgets.Button(description="remove", icon="trash",
                                     layout=widgets.Layout(width="8em"))
        self.remove.on_click(lambda _b: on_remove(self))
        self.box.children = [widgets.HBox([self.widget, self.remove]), self.help, self.error]


@dataclass
class Row:
    """One entry of a list or map editor."""

    editor: Editor
    remove: widgets.Button
    box: widgets.Box
    key: widgets.Text | None = None
    original_key: Any = UNSET


class CollectionEditor(Editor):
    """A list (`list[X]`) or a key/value map (`dict[str, X]`) whose entries can be added and
    removed; each entry's value gets the editor of its type."""

    def __init__(self, spec: Spec, original: Any, notify: Callable[[], None],
                 fresh: bool = False):
        super().__init__(spec, original, notify, fresh)
        args = typing.get_args(spec.annotation)
        self.is_map = typing.get_origin(spec.annotation) is dict
        self.item_annotation = args[-1] if args else Any
        self.rows: list[Row] = []
        start = original if original is not UNSET else spec.default
        if self.is_map:
            for key, value in (start or {}).items():
                self._add_row(value, key=key, fresh=original is UNSET)
        else:
            for value in start or []:
                self._add_row(value, fresh=original is UNSET)
        self.add_button = widgets.Button(description="add", icon="plus",
                                         layout=widgets.Layout(width="8em"))
        self.add_button.on_click(lambda _b: self.add())
        title = widgets.HTML(f"<b>{html.escape(spec.name)}</b>")
        self._decorate(_help(spec))
        self.rows_box = widgets.VBox()
        self.rows_box.add_class("sagebook-nested")
        self.box.children = [title, self.help, self.error, self.rows_box]
        self._layout()

    def _add_row(self, value: Any, key: Any = UNSET, fresh: bool = False) -> Row:
        index = key if self.is_map else len(self.rows)
        spec = Spec.of("" if self.is_map else f"[{index}]", self.spec.key + (index,),
                       self.item_annotation)
        editor = build_editor(spec, UNSET if fresh else value, self.notify, fresh=fresh,
                              label=False)
        remove = widgets.Button(description="", icon="trash", tooltip="remove",
                                layout=widgets.Layout(width="3em"))
        row = Row(editor, remove, widgets.VBox())
        if self.is_map:
            row.key = widgets.Text(value="" if key is UNSET else str(key), placeholder="name",
                                   continuous_update=True, layout=widgets.Layout(width="14em"))
            row.key.observe(lambda _change: self.notify(), names="value")
            row.original_key = UNSET if fresh else key
        remove.on_click(lambda _b: self.remove(row))
        head: list[widgets.Widget] = [row.key] if row.key is not None else []
        if isinstance(editor, ScalarEditor):
            # The value sits inline with its name: the row is the editor's box.
            editor.widget.layout.width = "30em"
            row.box.children = [widgets.HBox([*head, editor.widget, remove]), editor.error]
            row.box._dom_classes = editor.box._dom_classes
            editor.box.children = ()
            editor.box = row.box
        else:
            row.box.children = [widgets.HBox([*head, remove]), editor.box]
        row.box.add_class("sagebook-row")
        self.rows.append(row)
        return row

    def _layout(self) -> None:
        self.rows_box.children = [*(row.box for row in self.rows), self.add_button]

    def add(self) -> Row:
        """A new, empty entry at the end (also what the add button does)."""
        row = self._add_row(UNSET, fresh=True)
        self._layout()
        self.notify()
        return row

    def remove(self, row: Row) -> None:
        self.rows.remove(row)
        self._layout()
        self.notify()

    def children(self) -> list[Editor]:
        return [row.editor for row in self.rows]

    def changed(self) -> bool:
        if self.fresh or self.original is UNSET and self.rows:
            return True
        if self.original is UNSET:
            return False
        return not _same_or_unset(self.value(), self.original)

    def own_change(self) -> bool:
        if self.original is UNSET:
            return bool(self.rows)
        if self.is_map:
            return [r.original_key for r in self.rows] != list(self.original) or any(
                r.key is not None and r.key.value != str(r.original_key) for r in self.rows)
        return [r.editor.fresh for r in self.rows] != [False] * len(self.original)

    def settle(self, saved: Any) -> None:
        keys = [self._key(row) for row in self.rows]
        super().settle(saved)
        for index, (row, key) in enumerate(zip(self.rows, keys, strict=True)):
            if self.is_map:
                row.original_key = key
                row.editor.settle(saved.get(key, UNSET) if isinstance(saved, dict) else UNSET)
            else:
                row.editor.settle(saved[index] if isinstance(saved, list)
                                  and index < len(saved) else UNSET)

    def _key(self, row: Row) -> Any:
        """A map entry's key as written: the file's own (an int stays an int) while the
        name field still shows it."""
        if row.key is None:
            return None
        return row.original_key if row.original_key is not UNSET and row.key.value == str(
            row.original_key) else row.key.value

    def value(self) -> Any:
        unchanged = self.original is not UNSET and not self.fresh and not any(
            r.editor.changed() for r in self.rows) and not self.own_change()
        if unchanged:
            return self.original
        if self.original is UNSET and not self.rows and not self.fresh:
            return UNSET
        if self.is_map:
            values = {}
            for row in self.rows:
                values[self._key(row)] = row.editor.value()
            return values
        return [row.editor.value() for row in self.rows]

    def find(self, parts: list[str]) -> tuple[Editor, list[str]]:
        for index, row in enumerate(self.rows):
            # a map key may itself hold dots (a channel named `v1.2`)
            name = (row.key.value if row.key is not None else str(index)).split(".")
            if parts[:len(name)] == name:
                return row.editor.find(parts[len(name):])
        return self, parts

    def form_problems(self) -> list[tuple[Editor, str]]:
        problems = [p for c in self.children() for p in c.form_problems()]
        if self.is_map:
            seen: set[str] = set()
            for row in self.rows:
                assert row.key is not None
                name = row.key.value
                if not name.strip():
                    problems.append((row.editor, f"{self.spec.dotted}: an entry has no name"))
                elif name in seen:
                    problems.append((row.editor, f"{self.spec.dotted}: '{name}' is used twice"))
                seen.add(name)
        return problems


def build_editor(spec: Spec, original: Any, notify: Callable[[], None], fresh: bool = False,
                 label: bool = True) -> Editor:
    """The editor for a value of `spec`'s type: the heart of "generated from the schema".

    A value in the file that the type's widget cannot show (text where a number belongs, say)
    gets a YAML text field instead, so that the problem is shown rather than hidden.
    """
    annotation = spec.annotation
    start = original if original is not UNSET else spec.default
    fits = start is UNSET or start is None and spec.optional

    def text(kind: str) -> Editor:
        return TextEditor(spec, original, notify, fresh, label, kind=kind)

    if _model(annotation):
        # A section missing from the file shows its fields' own defaults.
        data = original
        for func in spec.before:
            data = func(data)
        if original is UNSET or isinstance(data, dict):
            return ModelEditor(spec, original, notify, fresh, label=label)
        return text("yaml")
    origin = typing.get_origin(annotation)
    if origin in (list, dict):
        if fits or isinstance(start, origin):
            return CollectionEditor(spec, original, notify, fresh)
        return text("yaml")
    if origin is Literal:
        if fits or start in typing.get_args(annotation):
            return ChoiceEditor(spec, original, notify, fresh, label)
        return text("yaml")
    if spec.is_duration:
        return text("duration")
    if annotation is bool:
        return BoolEditor(spec, original, notify, fresh, label) if (
            fits or isinstance(start, bool)) else text("yaml")
    if annotation in (int, float) and not spec.optional:
        number = isinstance(start, int | float) and not isinstance(start, bool) and (
            annotation is float or isinstance(start, int))
        return NumberEditor(spec, original, notify, fresh, label, kind=annotation) if (
            fits or number) else text("yaml")
    if annotation is str:
        return text("str") if fits or isinstance(start, str) else text("yaml")
    return text("yaml")
