"""The run index: one small summary per run, so listing 10,000 runs reads a few objects, not
10,000 manifests — in a store that many launches write at once, with no lock and no server.

Layout below the store root:

    _index/events/<experiment>/<run_id>.<revision>.json   one immutable summary per manifest write
    _index/pages/<experiment>/<sequence>.jsonl            a page's head: compacted summaries,
                                                          one run a line, the newest runs
    _index/pages/<experiment>/<sequence>-<token>-<n>.part a sealed part of a page: older runs
    _index/pages/<experiment>/<sequence>-<token>-<n|head>.cols  a part's or a head's columns

Writing. Every manifest write (`record.Record`) bumps the manifest's `revision` and creates the
event `<run_id>.<revision>.json` with a create-only write; then it deletes the run's previous
event, which the new one supersedes. Events are never replaced, so nothing a reader or a
compactor has seen changes under it, and a run in steady state has one event.

Merging. A run's summary is the one with the highest (revision, updated) among its events and
the latest page. That rule is order-free and idempotent, so applying a summary twice, late or
from two places never regresses a run — the whole design leans on it.

Compaction. A compactor reads the latest page N and every event of the experiment, writes page
N+1 with a create-only write, and only then deletes the events it read (and pages before N).
Because page N+1 can be created once, every page contains its predecessor; because events are
deleted only after a page holding them exists, a deleted event is always in the latest page.
Two compactors racing for N+1: one wins, the other deletes nothing but the parts it wrote.

Pages split, so no experiment has a cap on its runs (a read is capped at MAX_RECORD_BYTES,
once ~55,000 runs in one page). A page's head holds the runs from its `rest` run id on; its
header (line 1) names its sealed parts in run id order, each holding the runs from its `first`
on, each immutable. A compaction sorts each event to the part or head its run id falls in,
rewrites the head and only the parts that got events (new runs, whose ids begin with their
date, land in the head), seals the head's older runs into parts of PART_BYTES once it grows
past that, and refers to every other part as it is. After its head exists it deletes the parts
that neither it nor its predecessor names (and, as before, the pages before its predecessor):
a part is gone only after two newer pages exist. A reader of a page streams its parts in run id
order; one that finds a part gone (two compactions happened during its read) reads the newest
page from the run id it had reached, so it still sees every run once.

Columns. Beside each part it writes and each head, a compactor writes the chunk's columns
(columns.py: one JSON array per field), named in the header, create-only, before the head;
they are deleted with their parts, by the same rule. `sagebook list` (`scan`, `resolve`)
reads the columns of the fields it filters and sorts on, and the lines of the runs it shows
only: at 100,000 runs that is ~0.3 s where parsing every summary is ~3 s. A chunk whose runs
have pending events, or whose columns are missing or damaged, is read from its lines. Parts
sealed before columns existed get theirs BACKFILL at a time, from the compactions that follow.

Readers (`sagebook list`, `report`) compact an experiment once it has more than COMPACT_AT
events, and one terminal status write in COMPACT_ONE_IN compacts too, so a store nobody lists
still stays compact.

Annotations (`sagebook tag`, `note`, `rename`) are a second stream of events,
`<run_id>.note-<stamp>.json`, never superseded by manifest writes. Each sets fields (a tag, the
name, the latest note) stamped with its time and a random part; a run's annotation state keeps,
per field, the value with the highest stamp. That merge is order-free and idempotent too, so a
page line carries the state folded so far and an event applied again changes nothing.

Reading lists events first and pages second. An event deleted in between was deleted by a
compactor (then the page listed afterwards holds it) or by its run's next write (then the
reader lists that run's events again). A page deleted in between is listed again.

Measured (benchmarks/bench_list.py, `make bench`): see README, "Seeing the team's experiments".
"""

from __future__ import annotations

import json
import re
import secrets
import zlib
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from . import columns
from .errors import StoreError
from .inputs import NAME_PATTERNS, DamagedFile, checked_name, parse_json
from .shapes import MANIFEST, SUMMARY, checked
from .stores import Store, StoreExistsError

ROOT = "_index"
EVENTS = f"{ROOT}/events"
PAGES = f"{ROOT}/pages"
COMPACT_AT = 16
COMPACT_ONE_IN = 16
FETCH_THREADS = 16
READ_AHEAD = 4  # a page's parts being read at once: ~16 MB, and S3's round trips overlap
RETRIES = 5
PART_BYTES = 4 << 20  # a page's sealed part: ~7,000 runs, far below a read's MAX_RECORD_BYTES
BACKFILL = 2  # parts sealed before columns existed that one compaction gives columns to
_PART = re.compile(r"\d{8}-[0-9a-f]{8}-\d+\.part")
_COLS = re.compile(r"\d{8}-[0-9a-f]{8}-(\d+|head)\.cols")  # a part's or a head's columns
NOTE = "note-"  # annotation events: `<run_id>.note-<stamp>.json`
REMOVED = "removed"  # a summary with this set: the run's record folder is gone


# --------------------------------------------------------------------------------------------
# Summaries


def summarize(manifest: dict[str, Any]) -> dict[str, Any]:
    """What `list`, `report` and the dashboard need of a run: small, flat, without configs."""
    history = manifest.get("status_history") or []
    git = manifest.get("git") or {}
    config = manifest.get("config") or {}
    notebook = manifest.get("notebook") or {}
    parent = manifest.get("parent") or {}
    failure = manifest.get("failure_reason")
    sweep = manifest.get("sweep") or {}
    entry = {
        "run_id": manifest["run_id"],
        "experiment": manifest["experiment"],
        "revision": manifest.get("revision", 0),
        "updated": manifest.get("updated") or manifest.get("created"),
        "status": manifest.get("status"),
        "created": manifest.get("created"),
        "started": next((h["time"] for h in history if h.get("status") == "InProgress"), None),
        "ended": manifest.get("ended"),
        "user": manifest.get("user"),
        "host": manifest.get("host"),
        "job_name": manifest.get("job_name"),
        "job_arn": manifest.get("job_arn"),
        "aws_region": (manifest.get("aws") or {}).get("region"),
        "aws_profile": (manifest.get("aws") or {}).get("profile"),
        "instance_type": manifest.get("instance_type"),
        "backend": manifest.get("backend"),
        "launched_via": manifest.get("launched_via"),
        "image_uri": manifest.get("image_uri"),
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
        "git_branch": git.get("branch"),
        "overrides": config.get("overrides") or None,
        "digest": config.get("digest"),
        "final_metrics": manifest.get("final_metrics") or None,
        "failure_reason": failure.strip().splitlines()[0][:300] if failure else None,
        "parent": parent.get("run_id"),
        "tags": manifest.get("tags") or None,
        "params": manifest.get("params") or None,
        "cost": (manifest.get("cost") or {}).get("usd"),
        "notebook": notebook.get("status"),
        "sweep": sweep.get("id"),
        "parameters": sweep.get("parameters"),
    }
    return {k: v for k, v in entry.items() if v is not None}


def rank(entry: dict[str, Any]) -> tuple[int, str]:
    """Which of two summaries of one run is newer."""
    return entry.get("revision", 0), entry.get("updated") or ""


# --------------------------------------------------------------------------------------------
# Writing


def write(store: Store, manifest: dict[str, Any]) -> None:
    """Publish the run's summary as of this manifest (called on every manifest write)."""
    entry = summarize(manifest)
    experiment, run_id, revision = entry["experiment"], entry["run_id"], entry["revision"]
    text = json.dumps(entry, separators=(",", ":"), default=str)
    key = _event_key(experiment, run_id, revision)
    try:
        store.write_text(key, text, create_only=True)
    except StoreExistsError:
        # Two writers of one manifest at the same revision (a launch and a status refresh):
        # both summaries are kept and the merge picks the later.
        store.write_text(_event_key(experiment, run_id, revision, secrets.token_hex(4)), text,
                         create_only=True)
    if revision > 1:  # the first revision has no predecessor to remove
        try:
            store.delete([_event_key(experiment, run_id, revision - 1)])
        except StoreError:
            pass  # a leftover event costs a read, never correctness; compaction removes it
    if "ended" in entry and zlib.crc32(run_id.encode()) % COMPACT_ONE_IN == 0:
        try:
            compact(store, experiment)
        except StoreError:
            pass  # someone may list with a read-only role; the next compaction catches up


def annotate(store: Store, experiment: str, run_id: str, stamp: str,
             fields: dict[str, Any]) -> None:
    """Publish an annotation of a run: `fields` maps `tags.KEY` (None removes the tag),
    `name` and `note` to their new values, all stamped with `stamp`."""
    event = {"run_id": run_id, "experiment": experiment,
             "annotations": {k: [v, stamp] for k, v in fields.items()}}
    store.write_text(f"{EVENTS}/{experiment}/{run_id}.{NOTE}{stamp}.json",
                     json.dumps(event, separators=(",", ":")), create_only=True)


def merge_annotations(*states: dict[str, list[Any]] | None) -> dict[str, list[Any]]:
    """Per field, the [value, stamp] with the highest stamp."""
    merged: dict[str, list[Any]] = {}
    for state in states:
        for key, (value, stamp) in (state or {}).items():
            if key not in merged or stamp > merged[key][1]:
                merged[key] = [value, stamp]
    return merged


def annotated(entry: dict[str, Any]) -> dict[str, Any]:
    """The summary as readers see it: annotation tags over the job config's, name, note."""
    state = entry.get("annotations")
    if not state:
        return entry
    tags = dict(entry.get("tags") or {})
    for key, (value, _) in state.items():
        if key.startswith("tags."):
            if value is None:
                tags.pop(key[5:], None)
            else:
                tags[key[5:]] = value
        elif value is not None:
            entry[key] = value
    entry["tags"] = tags or None
    if not tags:
        del entry["tags"]
    return entry


def _event_key(experiment: str, run_id: str, revision: int, token: str | None = None) -> str:
    suffix = f"-{token}" if token else ""
    return f"{EVENTS}/{experiment}/{run_id}.{revision:06d}{suffix}.json"


def _page_key(experiment: str, sequence: int) -> str:
    return f"{PAGES}/{experiment}/{sequence:08d}.jsonl"


def _key_run_id(key: str) -> str:
    return key.rsplit("/", 1)[-1].split(".", 1)[0]


def _key_experiment(key: str) -> str:
    return key.split("/")[2]


def _page_sequence(key: str) -> int:
    """The sequence of a page's head (`<n>.jsonl`) or of the page that sealed a part."""
    return int(key.rsplit("/", 1)[-1].split(".", 1)[0].split("-", 1)[0])


# --------------------------------------------------------------------------------------------
# Reading


def entries(store: Store, experiment: str | None = None, *, compact_after: bool = True,
            damaged: list[DamagedFile] | None = None) -> Iterator[dict[str, Any]]:
    """Every run's newest summary (of one experiment, or all), experiment by experiment.

    Memory holds the un-compacted events and the pages' bytes (a few hundred bytes a run);
    summaries are parsed one at a time as the caller consumes them. An index file that cannot
    be read is skipped and added to `damaged` (one bad file must not hide the whole store);
    runs whose records were removed (see `rebuild`) are left out.
    """
    return scan(store, experiment, compact_after=compact_after, damaged=damaged)


def scan(store: Store, experiment: str | None = None, *, fields: Iterable[str] | None = None,
         seen: Callable[[dict[str, Any]], None] = lambda entry: None,
         compact_after: bool = True, damaged: list[DamagedFile] | None = None
         ) -> Iterator[dict[str, Any]]:
    """As `entries`, but where a chunk of a page has columns (columns.py) and `fields` is
    given, its runs come as views: dicts of those fields only (`section.key` gathered into
    the section's dict), `experiment`, and VIEW, which `resolve` turns into the whole
    summary. A query that reads a few fields of 100,000 runs so parses a few columns, not
    100,000 summaries. `seen` is called with each whole summary given out and, for a chunk of
    views, once per status with the names (metrics, parameters, tags) its runs have."""
    damaged = [] if damaged is None else damaged
    scope = f"/{experiment}" if experiment else ""
    event_keys = _named(store, store.list(EVENTS + scope), damaged)
    events, notes = _load_events(store, event_keys, damaged)
    latest_pages = _newest_heads(store, experiment, damaged)
    # All pages at once: on S3 each read is a round trip, and together they are only a few
    # hundred bytes a run.
    pages = fetch(store, latest_pages.values(), damaged)
    wanted = None if fields is None else {"run_id", REMOVED, *fields}
    crowded = []
    for exp in sorted(set(latest_pages) | set(events)):
        pending, noted = events.get(exp, {}), notes.get(exp, {})
        if latest_pages.get(exp) in pages:  # not when its head is too large to read
            for chunk in _page_chunks(store, exp, latest_pages[exp], pages.pop(
                    latest_pages[exp], None), damaged, wanted is not None):
                views = None if wanted is None else _views(chunk, exp, wanted, pending, noted,
                                                           seen, damaged)
                if views is not None:
                    yield from views
                    continue
                for entry in _chunk_lines(store, chunk, damaged):
                    newer = pending.pop(entry["run_id"], None)
                    chosen = newer if newer is not None and rank(newer) > rank(entry) else entry
                    if not chosen.get(REMOVED):
                        chosen = _with_notes(chosen, entry, noted.get(entry["run_id"]))
                        seen(chosen)
                        yield chosen
        for entry in pending.values():
            if not entry.get(REMOVED):
                entry = _with_notes(entry, None, noted.get(entry["run_id"]))
                seen(entry)
                yield entry
        if sum(_key_experiment(k) == exp for k in event_keys) > COMPACT_AT:
            crowded.append(exp)
    if compact_after:
        for exp in crowded:
            try:
                compact(store, exp)
            except StoreError:
                pass  # a reader without write access still reads correctly, only slower


VIEW = "_view"  # a view's (key of its chunk's lines, number of its summary among them)


def resolve(store: Store, views: list[dict[str, Any]],
            damaged: list[DamagedFile] | None = None) -> list[dict[str, Any]]:
    """The whole summaries of `views` (from `scan`; whole summaries pass as they are), in
    their order, read from their chunks' lines, which are immutable while their page is among
    the newest two. A run not where its view says (its page was compacted twice since, or its
    columns do not match its lines) is looked up in its experiment anew; one whose line is
    unreadable is left out, and its chunk's unreadable lines are added to `damaged`."""
    damaged = [] if damaged is None else damaged
    wanted: dict[str, set[int]] = {}
    for view in views:
        if VIEW in view:
            wanted.setdefault(view[VIEW][0], set()).add(view[VIEW][1])
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for key, data in fetch(store, wanted, damaged).items():
        if data is None:
            continue
        lines = [line for number, line in enumerate(data.splitlines(), 1)
                 if line.strip() and not (number == 1 and line.startswith(b'{"page"'))]
        try:
            chosen = [parse_entry(lines[number], store.url(key)) for number in wanted[key]]
        except (IndexError, DamagedFile):  # its lines say what is wrong, and which run is where
            chosen = list(_page_lines(data, store.url(key), damaged))
        for entry in chosen:
            found[entry["experiment"], entry["run_id"]] = _with_notes(entry, entry, None)
    missing = {(v["experiment"], v["run_id"]) for v in views
               if VIEW in v and (v["experiment"], v["run_id"]) not in found}
    for exp in sorted({exp for exp, _ in missing}):
        for entry in entries(store, exp, compact_after=False):
            if (exp, entry["run_id"]) in missing:
                found[exp, entry["run_id"]] = entry
    return [found[v["experiment"], v["run_id"]] if VIEW in v else v for v in views
            if VIEW not in v or (v["experiment"], v["run_id"]) in found]


def _views(chunk: _Chunk, experiment: str, fields: set[str],
           pending: dict[str, dict[str, Any]], noted: dict[str, dict[str, list[Any]]],
           seen: Callable[[dict[str, Any]], None], damaged: list[DamagedFile]
           ) -> list[dict[str, Any]] | None:
    """The views of a chunk's runs from its columns; None when it must be read from its
    lines: it has no columns, they are damaged, or a run of it has events still pending
    (its newest summary is then merged with the line's, as `scan` does)."""
    if chunk.columns is None:
        return None
    try:
        ids = chunk.columns.column("run_id")
        if not (set(map(type, ids)) <= {str}  # they become keys and paths
                and all(map(NAME_PATTERNS["run id"].fullmatch, ids))):
            for run_id in ids:
                checked_name("run id", run_id, chunk.columns.where)
        if not pending.keys().isdisjoint(ids) or not noted.keys().isdisjoint(ids):
            return None
        views = columns.rows(chunk.columns, fields, {"experiment": experiment})
        statuses = set(chunk.columns.column("status"))
    except DamagedFile as exc:
        damaged.append(exc)
        return None
    chunk.last = max(ids, default="")
    names = {section: dict.fromkeys(chunk.columns.keys(section))
             for section in columns.SECTIONS}
    for status in statuses:
        seen({**names, "status": status})
    for number, view in enumerate(views):
        view[VIEW] = (chunk.key, number)
    return [v for v in views if not v.get(REMOVED)
            and (chunk.skip is None or v["run_id"] > chunk.skip)]


def _newest_heads(store: Store, experiment: str | None, damaged: list[DamagedFile]
                  ) -> dict[str, str]:
    """Experiment → the key of its newest page's head (of one experiment, or all)."""
    heads: dict[str, str] = {}
    for key in _named(store, store.list(PAGES + (f"/{experiment}" if experiment else "")),
                      damaged):
        exp = _key_experiment(key)
        if key.endswith(".jsonl") and key > heads.get(exp, ""):
            heads[exp] = key
    return heads


def _named(store: Store, keys: Iterable[str], damaged: list[DamagedFile]) -> list[str]:
    """The index files among `keys` in a folder named like an experiment; the others are
    damaged: their folder name is what `compact` would list, write and delete below."""
    named = []
    for key in keys:
        try:
            checked_name("experiment", _key_experiment(key), store.url(key))
        except DamagedFile as exc:
            damaged.append(exc)
            continue
        named.append(key)
    return named


def _with_notes(chosen: dict[str, Any], paged: dict[str, Any] | None,
                notes: dict[str, list[Any]] | None) -> dict[str, Any]:
    """The chosen summary with the annotation state of its page line and pending events."""
    state = merge_annotations((paged or {}).get("annotations"), chosen.get("annotations"), notes)
    if state:
        chosen["annotations"] = state
    return annotated(chosen)


def parse_entry(data: bytes, where: str) -> dict[str, Any]:
    """One index summary or annotation; DamagedFile when it is not one (garbled, torn, a field
    of another type than its shape's), or when its run id or experiment is not one: they become
    keys and paths of the readers."""
    entry = parse_json(data, where)
    if not (isinstance(entry, dict) and isinstance(entry.get("run_id"), str)
            and isinstance(entry.get("experiment"), str)):
        raise DamagedFile(where, "not a run summary (no run_id and experiment)")
    checked_name("experiment", entry["experiment"], where)
    checked_name("run id", entry["run_id"], where)
    return checked(entry, SUMMARY, where)


def checked_manifest(data: bytes, where: str, experiment: str, run_id: str) -> dict[str, Any]:
    """The manifest read from `<experiment>/<run_id>/manifest.json` (at `where`); DamagedFile
    when it is garbled, not a sagebook manifest (or a field is of another type than its
    shape's), or names another run than its folder's: its run id and experiment become index
    keys and paths, so they must be the folder's own."""
    manifest = parse_json(data, where)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("status"), str):
        raise DamagedFile(where, "not a sagebook manifest (it has no status)")
    for kind, key, folder in (("experiment", "experiment", experiment),
                              ("run id", "run_id", run_id)):
        value = checked_name(kind, manifest.get(key), where)
        if value != folder:
            raise DamagedFile(where, f"its {key} {value!r} is not its folder's ({folder!r})")
    return checked(manifest, MANIFEST, where)


def _load_events(store: Store, keys: list[str], damaged: list[DamagedFile]
                 ) -> tuple[dict[str, dict[str, dict[str, Any]]],
                            dict[str, dict[str, dict[str, list[Any]]]]]:
    """experiment → run id → newest summary among these events (and their successors), and
    experiment → run id → the annotation state of its annotation events."""
    newest: dict[str, dict[str, dict[str, Any]]] = {}
    notes: dict[str, dict[str, dict[str, list[Any]]]] = {}
    tried: set[str] = set()
    for _ in range(RETRIES):
        todo = [k for k in keys if k not in tried and k.endswith(".json")]
        if not todo:
            break
        tried.update(todo)
        gone = set()
        for key, data in fetch(store, todo, damaged).items():
            if data is None:
                gone.add((_key_experiment(key), _key_run_id(key)))
                continue
            try:
                entry = parse_entry(data, store.url(key))
            except DamagedFile as exc:
                damaged.append(exc)
                continue
            if "revision" not in entry:  # an annotation
                noted = notes.setdefault(entry["experiment"], {})
                noted[entry["run_id"]] = merge_annotations(noted.get(entry["run_id"]),
                                                           entry.get("annotations"))
                continue
            runs = newest.setdefault(entry["experiment"], {})
            if entry["run_id"] not in runs or rank(entry) > rank(runs[entry["run_id"]]):
                runs[entry["run_id"]] = entry
        # An event deleted since the listing was superseded by its run's next event (list
        # again to find it) or compacted (the page, listed after this, holds it).
        keys = [k for exp in {e for e, _ in gone} for k in store.list(f"{EVENTS}/{exp}")
                if (exp, _key_run_id(k)) in gone]
    return newest, notes


@dataclass
class _Chunk:
    """A sealed part of a page, or its head's own lines: `body` holds its lines (None until
    read: a chunk read by its columns may never need them)."""

    key: str
    body: bytes | None
    columns: columns.Columns | None = None
    skip: str | None = None  # after a restart: the run ids up to this one were given out
    last: str = ""  # the highest run id its reader gave out


def _page_chunks(store: Store, experiment: str, key: str, data: bytes | None,
                 damaged: list[DamagedFile], with_columns: bool) -> Iterator[_Chunk]:
    """The chunks of the page at `key` (its head's `data`, None when it was gone): its sealed
    parts first, then its own lines, in run id order, as compaction writes them; with their
    columns where they have them and `with_columns` asks. A reader of a chunk sets its `last`.
    """
    yielded = None  # after a restart, the run ids up to here came from the page given up on
    for _ in range(RETRIES):
        if data is None:
            # A compactor removed it after writing a newer one: take the newest.
            key = max((k for k in store.list(f"{PAGES}/{experiment}") if k.endswith(".jsonl")),
                      default=key)
            newest = fetch(store, [key], damaged)
            if key not in newest:
                return  # too large to read
            data = newest[key]
            if data is None:
                continue
        skip = yielded
        parts, _, own = _header(data, store.url(key), damaged)
        folder = f"{PAGES}/{experiment}"
        wanted = [f"{folder}/{p['cols']}" if with_columns and p.get("cols")
                  else f"{folder}/{p['key']}" for p in parts]
        if with_columns and own:
            wanted.append(f"{folder}/{own}")
        sources = _stream(store, wanted)
        for part in [*parts, {"key": None, "runs": _own_runs(data, parts)}]:
            chunk = _Chunk(f"{folder}/{part['key']}" if part["key"] else key,
                           None if part["key"] else data, skip=skip)
            if part["key"] or (with_columns and own):
                got, body = next(sources)
                if isinstance(body, DamagedFile):
                    if not got.endswith(".cols"):
                        raise body
                    damaged.append(body)  # then its lines are read
                    body = None
                if got.endswith(".cols"):
                    chunk.columns = _columns(store, got, body, part["runs"], damaged)
                else:
                    chunk.body = body
                if chunk.columns is None and chunk.body is None:
                    chunk.body = _read(store, chunk.key)  # its columns were not to be had
            if chunk.body is None and chunk.columns is None:
                break  # a part of a page two compactions old: read the newest page
            yield chunk
            if chunk.last:
                yielded = max(yielded or "", chunk.last)
        else:
            return
        data, yielded = None, yielded or ""
    raise StoreError(f"the run index of {experiment} changed {RETRIES} times while "
                     "being read; try again")


def _own_runs(data: bytes, parts: list[dict[str, Any]]) -> int:
    """How many runs a page's head holds in its own lines, by its header."""
    first = data.split(b"\n", 1)[0]
    try:
        runs = json.loads(first).get("runs") if first.startswith(b'{"page"') else None
    except ValueError:
        runs = None
    return runs - sum(p["runs"] for p in parts) if isinstance(runs, int) else -1


def _columns(store: Store, key: str, data: bytes | None, runs: int,
             damaged: list[DamagedFile]) -> columns.Columns | None:
    """A chunk's columns; None when they are gone or damaged (then its lines are read)."""
    if data is None:
        return None
    try:
        return columns.Columns(data, store.url(key), runs)
    except DamagedFile as exc:
        damaged.append(exc)
        return None


def _chunk_lines(store: Store, chunk: _Chunk, damaged: list[DamagedFile]
                 ) -> Iterator[dict[str, Any]]:
    """The summaries of a chunk from its lines, past its `skip`, setting its `last`."""
    body = chunk.body if chunk.body is not None else _read(store, chunk.key)
    if body is None:  # its columns were read, then its page compacted twice: look anew
        raise StoreError(f"the run index at {store.url(chunk.key)} changed while being read; "
                         "try again")
    for entry in _page_lines(body, store.url(chunk.key), damaged):
        if chunk.skip is not None and entry["run_id"] <= chunk.skip:
            continue
        chunk.last = max(chunk.last, entry["run_id"])
        yield entry


def _header(data: bytes, where: str, damaged: list[DamagedFile]
            ) -> tuple[list[dict[str, Any]], str, str | None]:
    """A page head's sealed parts (`{"key", "first", "runs"}` and their `cols`, in run id
    order), the run id from which on it holds the runs itself, and the columns of its own
    lines; no parts for a page that is not split. A part's or columns' name becomes a key
    below the experiment's folder, so it must be such a name and nothing else."""
    first = data.split(b"\n", 1)[0]
    if not first.startswith(b'{"page"'):
        return [], "", None
    try:
        header = json.loads(first)
        parts, rest = header.get("parts", []), header.get("rest", "")
        own = header.get("cols")
        if not (isinstance(parts, list) and isinstance(rest, str) and _cols_name(own) and all(
                isinstance(p, dict) and isinstance(p.get("key"), str)
                and _PART.fullmatch(p["key"]) and isinstance(p.get("first"), str)
                and isinstance(p.get("runs"), int) and _cols_name(p.get("cols"))
                for p in parts)):
            raise ValueError("a part that is not one")
    except (ValueError, AttributeError):
        damaged.append(DamagedFile(where, "its header (line 1) is not a page's: the runs of "
                                          "its parts are not listed"))
        return [], "", None
    return parts, rest, own


def check_columns(store: Store, experiment: str | None = None) -> list[DamagedFile]:
    """The columns of the newest pages that are not what their chunks' lines say (`sagebook
    fsck`): a columns file that lies within its types would mislead `list`, which reads the
    lines of the runs it shows only. Reads every chunk that has columns."""
    damaged: list[DamagedFile] = []
    for exp, key in sorted(_newest_heads(store, experiment, []).items()):
        data = _read_or_damaged(store, key)
        if not isinstance(data, bytes):
            continue  # gone, or too large to read (`entries` names it)
        parts, _, own = _header(data, store.url(key), [])
        folder = f"{PAGES}/{exp}"
        chunks = [(f"{folder}/{p['key']}", f"{folder}/{p['cols']}", p["runs"])
                  for p in parts if p.get("cols")]
        if own:
            chunks.append((key, f"{folder}/{own}", _own_runs(data, parts)))
        for body_key, cols_key, runs in chunks:
            try:
                body = data if body_key == key else _read(store, body_key)
                cols = _read(store, cols_key)
                if body is None or cols is None:
                    continue  # compacted meanwhile, or named and gone: its lines are read
                found = columns.Columns(cols, store.url(cols_key), runs)
                problem = columns.difference(found, [annotated(e) for e in _page_lines(
                    body, store.url(body_key), [])])
            except DamagedFile as exc:
                damaged.append(exc)
                continue
            if problem:
                damaged.append(DamagedFile(store.url(cols_key), f"not its chunk's columns: "
                                                                f"{problem}"))
    return damaged


def _cols_name(name: Any) -> bool:
    """No columns, or a columns object's name (and nothing else)."""
    return name is None or isinstance(name, str) and bool(_COLS.fullmatch(name))


def _stream(store: Store, keys: list[str]
            ) -> Iterator[tuple[str, bytes | DamagedFile | None]]:
    """(key, bytes, or None when gone, or the DamagedFile of one too large to read) in the
    order of `keys`, reading ahead in parallel on a remote store but holding at most
    READ_AHEAD objects: a page's parts stream through."""
    if store.local_path() is not None or len(keys) < 2:
        for key in keys:
            yield key, _read_or_damaged(store, key)
        return
    with ThreadPoolExecutor(READ_AHEAD) as pool:
        ahead: deque[tuple[str, Future[bytes | DamagedFile | None]]] = deque()
        for key in keys:
            ahead.append((key, pool.submit(_read_or_damaged, store, key)))
            if len(ahead) >= READ_AHEAD:
                done, future = ahead.popleft()
                yield done, future.result()
        while ahead:
            done, future = ahead.popleft()
            yield done, future.result()


def _page_lines(data: bytes, where: str, damaged: list[DamagedFile]
                ) -> Iterator[dict[str, Any]]:
    """The summaries of a page; a line that is not one is reported once per page (a garbled
    page otherwise drops runs without a word)."""
    bad = []
    for number, line in enumerate(data.splitlines(), 1):
        if number == 1 and line.startswith(b'{"page"') or not line.strip():
            continue
        try:
            yield parse_entry(line, where)
        except DamagedFile:
            bad.append(number)
    if bad:
        damaged.append(DamagedFile(where, f"{len(bad)} unreadable lines (first: line {bad[0]})"))


def _read_or_damaged(store: Store, key: str) -> bytes | DamagedFile | None:
    """`_read`, with an object too large to read given, not raised: the stream goes on."""
    try:
        return _read(store, key)
    except DamagedFile as exc:
        return exc


def _read(store: Store, key: str) -> bytes | None:
    try:
        return store.read_bytes(key)
    except FileNotFoundError:
        return None


def fetch(store: Store, keys: Iterable[str], damaged: list[DamagedFile] | None = None
          ) -> dict[str, bytes | None]:
    """Read many small objects; None for those that are gone. One too large to read (anyone
    may plant one) is left out, and added to `damaged`: the others are still read. Remote
    stores read in parallel, as each read there is a round trip."""
    keys = list(keys)
    if store.local_path() is not None or len(keys) < 4:
        read = {key: _read_or_damaged(store, key) for key in keys}
    else:
        # the first read creates the client, before threads share it
        read = {keys[0]: _read_or_damaged(store, keys[0])}
        with ThreadPoolExecutor(FETCH_THREADS) as pool:
            read.update(zip(keys[1:], pool.map(lambda k: _read_or_damaged(store, k), keys[1:]),
                            strict=True))
    too_large = [data for data in read.values() if isinstance(data, DamagedFile)]
    if damaged is not None:
        damaged += too_large
    return {k: v for k, v in read.items() if not isinstance(v, DamagedFile)}


# --------------------------------------------------------------------------------------------
# Compaction


def compact(store: Store, experiment: str) -> bool:
    """Fold the experiment's events into a new page; False when there was nothing to do or
    another compactor got there first. Only the page's head and the sealed parts that hold
    runs of the events are rewritten: new runs (their ids begin with their date) land in the
    head, so a compaction of a 100,000-run experiment writes a few MB, not all of it."""
    listed = list(store.list(f"{PAGES}/{experiment}"))
    pages = sorted(k for k in listed if k.endswith(".jsonl"))
    event_keys = [k for k in store.list(f"{EVENTS}/{experiment}") if k.endswith(".json")]
    if not event_keys:
        return False
    head = b""
    if pages:
        try:
            head = store.read_bytes(pages[-1])
        except FileNotFoundError:
            return False  # a newer page exists: that compactor did this work
    parts, rest, previous = _header(head, store.url(pages[-1]) if pages else "", [])
    # chunk i holds the run ids from bounds[i - 1] on; the last chunk is the head's own lines
    bounds = [p["first"] for p in parts[1:]] + ([rest] if parts else [])
    read = {k: v for k, v in fetch(store, event_keys).items() if v is not None}
    touched: dict[int, list[tuple[str, bytes]]] = {}
    for key, data in read.items():
        touched.setdefault(bisect_right(bounds, _key_run_id(key)), []).append((key, data))
    touched.setdefault(len(parts), [])  # the head is always written again
    sequence = _page_sequence(pages[-1]) + 1 if pages else 0
    token, written, chunks, sealed = secrets.token_hex(4), [], [], 0
    backfill = BACKFILL
    for i in range(len(parts) + 1):
        if i not in touched:
            if backfill and f"{PAGES}/{experiment}/{parts[i].get('cols')}" not in listed:
                # a part sealed before columns, or whose columns were removed (fsck --repair)
                data = _read(store, f"{PAGES}/{experiment}/{parts[i]['key']}")
                if data is None:
                    store.delete(written)
                    return False  # a newer page exists: that compactor did this work
                backfill -= 1
                cols = _write_columns(store, experiment, f"{sequence:08d}-{token}-{sealed:04d}"
                                      ".cols", list(_page_lines(data, "", [])), written)
                sealed += 1
                chunks.append({**parts[i], "cols": cols})
                continue
            chunks.append(parts[i])
            continue
        data = head
        if i < len(parts):
            data = _read(store, f"{PAGES}/{experiment}/{parts[i]['key']}")
            if data is None:
                store.delete(written)
                return False  # a newer page exists: that compactor did this work
        lines, kept = _fold(data, touched[i])
        read = {k: v for k, v in read.items() if k not in kept}
        lower = (parts[i]["first"] if i < len(parts) else rest) if i else None
        pieces = _split(lines, 2 * PART_BYTES if i < len(parts) else PART_BYTES)
        for n, piece in enumerate(pieces):
            if i == len(parts) and n == len(pieces) - 1:
                rest, own = (piece[0][0] if piece and chunks else rest), piece
                break
            name = f"{sequence:08d}-{token}-{sealed:04d}.part"
            sealed += 1
            key = f"{PAGES}/{experiment}/{name}"
            store.write_bytes(key, b"\n".join(line for _, line in piece) + b"\n",
                              create_only=True)
            written.append(key)
            cols = _write_columns(store, experiment, f"{name[:-5]}.cols",
                                  [json.loads(line) for _, line in piece], written)
            chunks.append({"key": name, "first": (lower if n == 0 and lower is not None
                                                  else piece[0][0]), "runs": len(piece),
                           "cols": cols})
    header = {"page": sequence, "experiment": experiment,
              "runs": sum(c["runs"] for c in chunks) + len(own)}
    if chunks:
        header.update(parts=chunks, rest=rest)
    header["cols"] = _write_columns(store, experiment, f"{sequence:08d}-{token}-head.cols",
                                    [json.loads(line) for _, line in own], written)
    body = b"\n".join([json.dumps(header, separators=(",", ":")).encode(),
                       *(line for _, line in own)]) + b"\n"
    try:
        store.write_bytes(_page_key(experiment, sequence), body, create_only=True)
    except StoreExistsError:
        store.delete(written)
        return False
    store.delete(read)
    referenced = {header["cols"], previous, *(p.get(name) for p in [*chunks, *parts]
                                              for name in ("key", "cols"))}
    store.delete([*pages[:-1],  # keep the previous page for readers that listed it just now
                  *(k for k in listed if (_PART.fullmatch(name := k.rsplit("/", 1)[-1])
                                          or _COLS.fullmatch(name))
                    and _page_sequence(k) <= sequence and name not in referenced)])
    return True


def _write_columns(store: Store, experiment: str, name: str,
                   summaries: list[dict[str, Any]], written: list[str]) -> str:
    """Write the columns of a chunk's summaries (checked: the compactor folded them), in its
    lines' order, as `name`, adding its key to `written`; `name`."""
    key = f"{PAGES}/{experiment}/{name}"
    store.write_bytes(key, columns.encode([annotated(entry) for entry in summaries]),
                      create_only=True)
    written.append(key)
    return name


def _fold(data: bytes, events: list[tuple[str, bytes]]
          ) -> tuple[list[tuple[str, bytes]], set[str]]:
    """A page chunk's lines (`data`) with these events folded in: (run id, line) in run id
    order, and the events that must stay: damaged ones (for `sagebook fsck` to name) and the
    annotations of a run with no summary yet to carry them."""
    lines: dict[str, tuple[tuple[int, str], bytes]] = {}
    for entry in _page_lines(data, "", []):
        lines[entry["run_id"]] = (rank(entry), json.dumps(
            entry, separators=(",", ":"), default=str).encode())
    notes: dict[str, dict[str, list[Any]]] = {}
    for key, data in events:
        try:
            entry = parse_entry(data, key)
        except DamagedFile:
            continue  # left for `sagebook fsck` to name; it carries nothing to keep
        if "revision" not in entry:  # an annotation
            notes[entry["run_id"]] = merge_annotations(notes.get(entry["run_id"]),
                                                       entry.get("annotations"))
        elif entry["run_id"] not in lines or rank(entry) > lines[entry["run_id"]][0]:
            old = lines.get(entry["run_id"])
            if old is not None and b'"annotations"' in old[1]:  # the page's state carries over
                notes[entry["run_id"]] = merge_annotations(
                    json.loads(old[1]).get("annotations"), notes.get(entry["run_id"]))
            lines[entry["run_id"]] = (rank(entry), data.strip())
    kept = {key for key, data in events if not _parses(data)}
    for run_id, state in notes.items():
        if run_id not in lines:  # no summary to carry them yet: leave its events in place
            kept.update(key for key, _ in events if _key_run_id(key) == run_id)
            continue
        entry = json.loads(lines[run_id][1])
        entry["annotations"] = merge_annotations(entry.get("annotations"), state)
        lines[run_id] = (lines[run_id][0], json.dumps(entry, separators=(",", ":")).encode())
    return [(run_id, lines[run_id][1]) for run_id in sorted(lines)], kept


def _split(lines: list[tuple[str, bytes]], most: int) -> list[list[tuple[str, bytes]]]:
    """`lines` whole while they fit in `most` bytes, else in pieces of about PART_BYTES."""
    if sum(len(line) + 1 for _, line in lines) <= most:
        return [lines]
    pieces: list[list[tuple[str, bytes]]] = [[]]
    size = 0
    for line in lines:
        if size + len(line[1]) + 1 > PART_BYTES and pieces[-1]:
            pieces.append([])
            size = 0
        pieces[-1].append(line)
        size += len(line[1]) + 1
    return pieces


@dataclass
class Rebuilt:
    """What `rebuild` did: runs indexed, runs dropped (their records are gone), and the
    manifests it could not read."""

    added: int = 0
    removed: int = 0
    damaged: list[DamagedFile] = field(default_factory=list)


REBUILD_BATCH = 1000  # manifests a rebuild holds at once: its memory does not grow with the store


def rebuild(store: Store, experiment: str | None = None,
            progress: Callable[[int, int], None] = lambda done, total: None) -> Rebuilt:
    """Bring the index in line with the records: index what it does not know (or knows older):
    records written before the index existed, copied in by hand, or dropped by a damaged index
    file; and drop runs whose record folder was removed. Reads every manifest: a one-off, in
    batches of REBUILD_BATCH, calling `progress(done, total)` after each; of the index it keeps
    each run's rank only."""
    result = Rebuilt()
    known = {(e["experiment"], e["run_id"]): (e.get("revision", 0), e.get("updated"))
             for e in entries(store, experiment)}
    manifests = [k for k in store.list(experiment or "")
                 if k.endswith("/manifest.json") and k.count("/") == 2
                 and not k.startswith(("_", "."))]
    present = set()
    for start in range(0, len(manifests), REBUILD_BATCH):
        batch = manifests[start:start + REBUILD_BATCH]
        present.update(tuple(key.split("/")[:2]) for key in batch)
        for key, data in fetch(store, batch, result.damaged).items():
            if data is None:
                continue
            try:
                manifest = checked_manifest(data, store.url(key), *key.split("/")[:2])
                entry = summarize(manifest)
            except DamagedFile as exc:
                result.damaged.append(exc)
                continue
            except (KeyError, TypeError, AttributeError):
                result.damaged.append(DamagedFile(store.url(key), "not a sagebook manifest"))
                continue
            old = known.get((entry["experiment"], entry["run_id"]))
            if old is None or (old[0], old[1] or "") < rank(entry):
                write(store, manifest)
                result.added += 1
        progress(min(start + REBUILD_BATCH, len(manifests)), len(manifests))
    for (exp, run_id), (revision, updated) in known.items():
        if (exp, run_id) not in present:
            _remove(store, {"experiment": exp, "run_id": run_id, "revision": revision,
                            "updated": updated})
            result.removed += 1
    return result


def _remove(store: Store, entry: dict[str, Any]) -> None:
    """Publish that a run's record is gone: a summary one revision newer that says so, which
    wins every merge (a removed folder has no manifest left to bump)."""
    gone = {"run_id": entry["run_id"], "experiment": entry["experiment"],
            "revision": entry.get("revision", 0) + 1, "updated": entry.get("updated"),
            REMOVED: True}
    store.write_text(_event_key(entry["experiment"], entry["run_id"], gone["revision"],
                                secrets.token_hex(4)),
                     json.dumps(gone, separators=(",", ":")), create_only=True)


def _parses(data: bytes) -> bool:
    try:
        parse_entry(data, "")
    except DamagedFile:
        return False
    return True
