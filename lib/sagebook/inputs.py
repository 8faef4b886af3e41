"""The door for untrusted input: the files sagebook parses — configs, sweep files, records —
read within bounds, and the names read from them checked before they become paths.

A config comes from a teammate's branch or a shared repository and a record from a shared
store: a file of any size, a device, a symlink loop or a few hundred bytes of nested YAML
aliases ("billion laughs") must end in one clear line naming the file, in well under a second
and in bounded memory, never in a machine out of memory. A run id, an experiment, a sweep id or
a digest read from a record may be `../../victim`: `checked_name()` holds it to its pattern and
`safe_path()` keeps what it names inside its folder, before anything is opened, created or
removed. A metric regex read from a config runs on RE2 (`metric_pattern()`), in time linear in
the line it searches: on Python's `re`, `(a+)+$` takes exponential time and holds the GIL.
"""

from __future__ import annotations

import difflib
import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import ConfigError, SagebookError, StoreError

MAX_CONFIG_BYTES = 1 << 20  # a config or sweep file: 1 MiB is some 30,000 lines of YAML
MAX_RECORD_BYTES = 32 << 20  # one manifest, index event or index page read from a store
MAX_YAML_VALUES = 100_000  # values in one YAML document once its aliases are expanded

if TYPE_CHECKING:  # yaml is imported when a file is parsed: `sagebook list` never needs it
    import yaml

# What a name read from a store may look like before it becomes part of a path or a key: the
# shapes sagebook itself writes (record.new_run_id, sweeps' new_sweep_id, JobConfig.experiment,
# uploads' digests), with no separator, dot-dot or control character among them.
NAME_PATTERNS = {
    "experiment": re.compile(r"[a-zA-Z0-9](?:-?[a-zA-Z0-9]){0,39}"),
    "run id": re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"),
    "sweep id": re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"),
    "digest": re.compile(r"[0-9a-f]{32}"),
}

_ERRNO_REASONS = {
    errno.ENOENT: "file not found",
    errno.ELOOP: "a symlink loop (or too many symlinks in a row)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.ENAMETOOLONG: "the path is too long",
    errno.EISDIR: "is a folder, not a file",
}


class UnreadableFile(SagebookError):
    """A file that cannot be read as what it should be; the message names it and why."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


class DamagedFile(StoreError):
    """An object in the record store that cannot be read as what it should be (garbled,
    half-written, too large); the message names it and why."""

    def __init__(self, where: str, reason: str):
        self.where, self.reason = where, reason
        super().__init__(f"{where}: {reason}")


def checked_name(kind: str, value: object, where: str) -> str:
    """`value` when it is a valid `kind` (a key of NAME_PATTERNS); else a DamagedFile naming
    `where` (the file it was read from) and the field, never a path."""
    if isinstance(value, str) and NAME_PATTERNS[kind].fullmatch(value):
        return value
    _bad_field(kind, value, where)


def safe_path(root: Path, *names: str, where: str) -> Path:
    """`root/names…` resolved, when every name is one plain path component and the result
    stays inside `root` (symlinks included); else a DamagedFile naming `where`."""
    base = absolute(root)
    for name in names:
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            _bad_field("path component", name, where)
    path = absolute(base.joinpath(*names))
    if path != base and base not in path.parents:
        _bad_field("path", "/".join(names), where)
    return path


def _bad_field(kind: str, value: object, where: str) -> NoReturn:
    shown = ascii(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise DamagedFile(where, f"{shown} is not a valid {kind}")


def absolute(path: str | os.PathLike[str]) -> Path:
    """`path` made absolute, its symlinks resolved where they resolve. A symlink loop is left
    in place for the read (or the check) that follows to name, instead of a traceback."""
    given = Path(path).expanduser()
    try:
        return given.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(given))


def path_reason(exc: OSError | RuntimeError) -> str:
    """Why a path cannot be used, in words: a symlink loop, a missing folder, no permission.

    RuntimeError is what `Path.resolve()` raises for a symlink loop before Python 3.13.
    """
    if isinstance(exc, RuntimeError):
        return _ERRNO_REASONS[errno.ELOOP]
    return _ERRNO_REASONS.get(exc.errno or 0) or exc.strerror or str(exc)


def read_bytes(path: str | os.PathLike[str], limit: int = MAX_CONFIG_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; UnreadableFile otherwise.

    Opened without blocking and checked before reading, so a FIFO, /dev/zero or a folder is
    refused at once instead of hanging or filling memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableFile(str(path), path_reason(exc)) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UnreadableFile(str(path), _ERRNO_REASONS[errno.EISDIR])
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(str(path), f"not a regular file (a {_file_kind(info.st_mode)})")
        if info.st_size > limit:
            raise UnreadableFile(str(path), _too_large(info.st_size, limit))
        chunks, size = [], 0
        while size <= limit:  # the file may grow while it is read
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise UnreadableFile(str(path), _too_large(size, limit))
        return b"".join(chunks)
    except OSError as exc:
        raise UnreadableFile(str(path), path_reason(exc)) from None
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str], limit: int = MAX_CONFIG_BYTES) -> str:
    """A UTF-8 text file of at most `limit` bytes (see `read_bytes`)."""
    return decode(read_bytes(path, limit), str(path))


def decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(where, f"not UTF-8 text (byte {exc.start})") from None


def _too_large(size: int, limit: int) -> str:
    return f"too large ({_mib(size)}; the limit is {_mib(limit)})"


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB" if size >= 1 << 20 else f"{size:,} bytes"


def _file_kind(mode: int) -> str:
    for check, name in ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                        (stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket")):
        if check(mode):
            return name
    return "special file"


def parse_yaml(text: str, where: str) -> tuple[Any, yaml.Node | None]:
    """The document in `text` and its node tree (for line numbers), parsed once.

    Refused with a ConfigError naming `where`: invalid YAML, aliases that expand past
    MAX_YAML_VALUES values, an alias inside itself, nesting too deep for the parser.
    """
    import yaml

    # libyaml parses about four times faster than the pure-Python parser, where installed
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        expanded_size(node, where)
        return loader.construct_document(node), node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context
        raise ConfigError.one(f"{where}:{mark.line + 1}" if mark else where, None,
                              f"not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError.one(where, None, f"not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError.one(where, None, "not valid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def expanded_size(root: yaml.Node, where: str) -> int:
    """How many values the document holds with every alias expanded, counted without
    expanding them (each distinct node once); ConfigError past MAX_YAML_VALUES."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_YAML_VALUES:
                raise ConfigError.one(
                    f"{where}:{node.start_mark.line + 1}", None,
                    f"YAML aliases expand this to more than {MAX_YAML_VALUES:,} values; "
                    "write the values out, or use fewer nested aliases")
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise ConfigError.one(f"{where}:{node.start_mark.line + 1}", None,
                                  "a YAML alias refers to a value that contains it")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load_yaml_file(path: Path, limit: int = MAX_CONFIG_BYTES) -> tuple[Any, yaml.Node | None]:
    """`parse_yaml` of a file read with `read_text`; every refusal is a ConfigError."""
    try:
        text = read_text(path, limit)
    except UnreadableFile as exc:
        raise ConfigError.one(exc.path, None, exc.reason + nearest_hint(exc)) from None
    return parse_yaml(text, str(path))


MAX_NEAR_ENTRIES = 5000  # folder entries looked at for a missing config's nearest: bounded


def nearest_hint(exc: UnreadableFile) -> str:
    """For a config file that is missing, the existing config whose path is nearest to the
    one typed (`config/sagemaker_config.yaml`, `sagemaker_confg.yaml`), so the message leads
    to the file meant: `; did you mean configs/sagemaker_config.yaml?`, else nothing."""
    near = nearest_config(Path(exc.path)) if exc.reason == "file not found" else None
    return f"; did you mean {near}?" if near else ""


def nearest_config(path: Path) -> str | None:
    """The existing YAML file nearest to `path` in spelling, looked for in the deepest folder
    of `path` that exists and in its subfolders one level down (no hidden ones), among at most
    MAX_NEAR_ENTRIES folder entries (a typo under `/` or a huge folder costs no more); shown
    as typed: relative to the current folder when under it."""
    absolute = Path(os.path.abspath(path.expanduser()))
    base = absolute.parent
    while not base.is_dir() and base != base.parent:
        base = base.parent
    found: dict[str, Path] = {}  # compared without the suffix, which every candidate shares
    folders, budget = [base], MAX_NEAR_ENTRIES
    while folders and budget > 0:
        folder = folders.pop(0)
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    budget -= 1
                    if budget < 0:
                        break
                    if entry.name.startswith("."):
                        continue
                    if folder == base and entry.is_dir():
                        folders.append(Path(entry.path))
                    elif entry.name.endswith((".yaml", ".yml")) and entry.is_file():
                        name = Path(entry.path).relative_to(base)
                        found[str(name.with_suffix(""))] = Path(entry.path)
        except OSError:  # a folder that cannot be listed holds no suggestion
            continue
    typed = str(absolute.relative_to(base).with_suffix(""))
    close = difflib.get_close_matches(typed, sorted(found), n=1, cutoff=0.6)
    if not close:
        return None
    near = found[close[0]]
    cwd = Path.cwd()
    return str(near.relative_to(cwd)) if near.is_relative_to(cwd) else str(near)


def parse_yaml_text(text: str | None, where: str) -> Any:
    """A YAML document read from a record (configs as launched), with the same bounds."""
    if not text:
        return None
    if len(text) > MAX_CONFIG_BYTES:
        raise DamagedFile(where, _too_large(len(text), MAX_CONFIG_BYTES))
    try:
        return parse_yaml(text, where)[0]
    except ConfigError as exc:
        raise DamagedFile(where, exc.problems[0].split(": ", 1)[-1]) from None


def parse_json(data: bytes | str, where: str, limit: int = MAX_RECORD_BYTES) -> Any:
    """A JSON document read from a store (a manifest, an index entry); DamagedFile, naming
    `where`, when it is too large, not UTF-8 or not JSON (a half-written or garbled file)."""
    if len(data) > limit:
        raise DamagedFile(where, _too_large(len(data), limit))
    try:
        return json.loads(data)
    except UnicodeDecodeError as exc:
        raise DamagedFile(where, f"not UTF-8 text (byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:
        raise DamagedFile(where, f"not valid JSON ({exc})") from None


def metric_pattern(regex: str | bytes) -> Any:
    """`regex` compiled for RE2, which runs it in time linear in the line (the pattern has
    `re`'s `search` and `groups`, its matches `group`); ValueError with the reason when RE2
    cannot run it: a backreference, a lookahead or lookbehind, `\\Z` (RE2 has `\\z`)."""
    import re2  # 15-35 ms: a launch pays for it, `sagebook list` does not

    try:
        return re2.compile(regex, re2_options())
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(
            exc.args[0], bytes) else str(exc)
        raise ValueError(f"{reason} (metric regexes run on RE2, in linear time: it has no "
                         "backreferences, lookahead or lookbehind)") from None


def re2_options() -> Any:
    """RE2's options for a regex read from a config: its reason for refusing one is raised,
    never written to stderr."""
    import re2  # as in metric_pattern

    options = re2.Options()
    options.log_errors = False
    return options
