"""Query layer (L4): which record store a command reads, which run a user means, and a
record's files read within bounds.

A store comes from `--store`, $SAGEBOOK_EXPERIMENTS_URI, a job config or the project around
the current folder; a run from any form a user types (a run id or part of one, a job name,
`experiment/run_id`, a record's URI). Files are read streamed and bounded, so a planted file
of any size costs a reader nothing but the bound. Nothing here formats for a terminal.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

from .. import index, inputs, project
from ..aws import store_options
from ..errors import SagebookError, StoreError
from ..inputs import DamagedFile
from ..printing import terminal_lines
from ..record import Record
from ..stores import Store, open_store


class RunNotFound(SagebookError):
    """No run, or more than one, matches what the user typed."""


class NotInProject(SagebookError):
    """A command that reads a store was given none, and no project is around this folder."""


def store_from_args(store: str | None = None, config: str | os.PathLike[str] | None = None
                    ) -> Store:
    """The record store a command reads: `--store URI`, else $SAGEBOOK_EXPERIMENTS_URI, else the
    `experiments_uri` of the job config `-c`, else the project's (see `default_store`);
    outside a project, NotInProject: an empty ./experiments would only say "no runs"."""
    options: dict[str, Any] = {}
    uri = store or os.environ.get("SAGEBOOK_EXPERIMENTS_URI")
    if config is not None:
        settings = read_job_settings(Path(config))
        options = store_options(settings)
        if not uri and settings.get("experiments_uri"):
            uri = str(settings["experiments_uri"])
            if "://" not in uri:
                uri = str((Path(config).parent / Path(uri).expanduser()).resolve())
    if not uri and project.root() is None:
        raise NotInProject(f"not in a project (no configs/ with a job config, nor experiments/, "
                           f"in {Path.cwd()} or above): give --store URI or -c JOBCONFIG, or "
                           "run this in your project's folder")
    return open_store(uri or default_store(), **options)


def config_store_options(config: str | os.PathLike[str]) -> dict[str, Any]:
    """The store options of the job config file at `config`, read without validating it."""
    return store_options(read_job_settings(Path(config)))


def default_store(start: Path | None = None) -> str:
    """The record store of the project around the current folder, so that `sagebook list` means
    the same in its `notebooks/` as at its top: the local store its job configs name (when they
    name one), else its `experiments/` folder; outside a project, ./experiments."""
    folder = project.root(start)
    if folder is None:
        return str((start or Path.cwd()) / "experiments")
    local = [uri for uri in project.record_stores(folder) if "://" not in uri]
    return local[0] if len(local) == 1 else str(folder / "experiments")


def no_runs_message(store: Store) -> str:
    """Why `list` shows nothing, pointing where the runs may be instead."""
    return terminal_lines([f"no runs in {store.uri}", *_elsewhere(store)])


def _elsewhere(store: Store) -> list[str]:
    """Where else a run may be when `store` does not show it: records its index lacks (only
    when it holds any), and the other stores the project's job configs name."""
    hints = []
    if any(key.endswith("/manifest.json") for key in islice(store.list(), 1000)):
        hints.append("records made before sagebook kept an index: sagebook list --reindex")
    folder = project.root()
    for uri, path in (project.record_stores(folder) if folder else {}).items():
        if uri.rstrip("/") != store.uri.rstrip("/"):
            config = os.path.relpath(path)
            hints.append(f"this project's {config} keeps records in {uri}: add -c {config}")
    return hints


def read_job_settings(path: Path) -> dict[str, Any]:
    """Only the keys that locate the store: reading the whole config would validate the
    training config too, which listing runs has no business failing on."""
    data, _ = inputs.load_yaml_file(path)
    return data if isinstance(data, dict) else {}


def find_run(store: Store, ref: str) -> Record:
    """The run a user means by `ref`: a run id (or a unique part of one), a job name,
    `experiment/run_id`, or a record's full URI."""
    if ref.startswith(("s3://", "/", "file://")) and ref.rstrip("/").count("/") >= 2:
        _typed(ref, *ref.rstrip("/").rsplit("/", 2)[1:])
        return _open(lambda: Record.open_uri(ref.removeprefix("file://"), **store.options()),
                     ref)
    if ref.count("/") == 1:
        experiment, run_id = _typed(ref, *ref.split("/"))
        return _open(lambda: Record.open(store, experiment, run_id), ref)
    exact, partial = [], []
    for entry in index.scan(store, fields=["job_name"]):  # ids and job names: their columns
        if ref in (entry["run_id"], entry.get("job_name")):
            exact.append(entry)
        elif ref in entry["run_id"]:
            partial.append(entry)
    matches = exact or partial
    if not matches:
        raise RunNotFound("\n".join([f"no run {ref!r} in {store.uri} (`sagebook list` shows "
                                     "its runs)", *_elsewhere(store)]))
    if len(matches) > 1:
        names = ", ".join(f"{e['experiment']}/{e['run_id']}" for e in matches[:5])
        raise RunNotFound(f"{ref!r} matches {len(matches)} runs ({names}"
                          f"{', …' if len(matches) > 5 else ''}): give more of the run id")
    return _open(lambda: Record.open(store, matches[0]["experiment"], matches[0]["run_id"]), ref)


def _typed(ref: str, experiment: str, run_id: str) -> tuple[str, str]:
    """The experiment and run id a user typed, when they can name a record at all: a name that
    is not one (`..`, a space) is no run, not a path to follow."""
    try:
        return (inputs.checked_name("experiment", experiment, ref),
                inputs.checked_name("run id", run_id, ref))
    except DamagedFile as exc:
        raise RunNotFound(f"no run {ref!r}: {exc.reason}") from None


def _open(opener: Callable[[], Record], ref: str) -> Record:
    try:
        return opener()
    except FileNotFoundError:
        raise RunNotFound(f"no record at {ref!r}: its manifest.json is missing") from None
    except DamagedFile as exc:
        raise DamagedFile(exc.where, f"{exc.reason} (`sagebook fsck` says what to do)"
                          ) from None
    except ValueError as exc:
        raise RunNotFound(f"the record {ref!r} has an unreadable manifest: {exc}") from None


def read_optional(record: Record, name: str, unreadable: list[str] | None = None,
                  limit: int = inputs.MAX_RECORD_BYTES) -> str | None:
    """A text file of the record, None when it has none; one that cannot be read, or holds
    more than `limit` bytes (read no further), is named in `unreadable` (when given) instead
    of failing the whole command."""
    data = bytearray()
    try:
        for chunk in record.store.read_chunks(f"{record.prefix}/{name}"):
            data += chunk
            if len(data) > limit:
                raise DamagedFile(record.url(name), f"too large (more than {limit:,} bytes)")
        return inputs.decode(bytes(data), record.url(name))
    except FileNotFoundError:
        return None
    except inputs.UnreadableFile as exc:  # not UTF-8: damaged, as a garbled manifest is
        if unreadable is None:
            raise DamagedFile(exc.path, exc.reason) from None
        unreadable.append(f"{name}: {exc.reason}")
        return None
    except StoreError as exc:
        return _unreadable(name, exc, unreadable)


def _unreadable(name: str, exc: StoreError, unreadable: list[str] | None) -> None:
    """A file the store could not give: named in `unreadable` when the caller keeps a list
    (one unreadable file does not fail the whole command), raised otherwise."""
    if unreadable is None:
        raise exc
    unreadable.append(f"{name}: {exc}")


CUT_HEAD, CUT_TAIL = 16 << 10, 48 << 10  # of a long text: its start, and its end (a traceback)


def read_cut(record: Record, name: str, head: int = CUT_HEAD, tail: int = CUT_TAIL,
             unreadable: list[str] | None = None) -> str | None:
    """A text file of the record as `read_optional` reads it, but only its first `head` and
    last `tail` bytes, with a line between them saying how much was left out and where the
    whole file is: what a reader holds and shows follows the cut, never the file."""
    first, last, size = bytearray(), bytearray(), 0
    try:
        for chunk in record.store.read_chunks(f"{record.prefix}/{name}"):
            size += len(chunk)
            taken = max(head - len(first), 0)
            first += chunk[:taken]
            last += chunk[taken:]
            del last[:max(len(last) - tail, 0)]
    except FileNotFoundError:
        return None
    except StoreError as exc:
        return _unreadable(name, exc, unreadable)
    left_out = size - len(first) - len(last)
    if not left_out:
        return (first + last).decode(errors="replace")
    # whole characters on each side of the cut: no half of a UTF-8 sequence shown as U+FFFD
    start = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(bytes(first))
    end = bytes(last).lstrip(_UTF8_CONTINUATION).decode(errors="replace")
    return (f"{start}\n[… {left_out:,} bytes left out here: the whole text is "
            f"{record.url(name)} …]\n{end}")


_UTF8_CONTINUATION = bytes(range(0x80, 0xC0))
