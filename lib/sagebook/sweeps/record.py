"""The sweep's own record: `_sweeps/<experiment>/<sweep_id>/` in the record store.

    sweep.json    what was swept (configs, overrides, objective, strategy), status, and one
                  entry per trial: its parameters, its run (a full record of its own, whose
                  manifest names the sweep back), status and objective
    sweep.yaml    the sweep block as given
    request.json  the CreateHyperParameterTuningJob request (SageMaker sweeps)

Only the process that runs the sweep writes sweep.json (a cloud sweep's trials are written by
whoever refreshes them, one manifest write at a time), so it needs no lock; it is created with
a create-only write, so two sweeps never share an id.
"""

from __future__ import annotations

import datetime as _dt
import json
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from ..errors import SagebookError
from ..inputs import DamagedFile, checked_name, parse_json
from ..record import now, status_fields, user
from ..secrets import redact
from ..stores import Store

ROOT = "_sweeps"
PREFIX = "sweep-"
MAX_DEPTH = 32  # nesting of a sweep.json: sagebook writes 5 levels, parameter values a few more


class SweepNotFound(SagebookError):
    """No sweep, or more than one, matches what the user typed."""


class DamagedSweep(DamagedFile):
    """A sweep.json that cannot be read as one; it still says which sweep it was, from its
    folder, so that its trials can be listed and `--resume` can rebuild it."""

    def __init__(self, where: str, reason: str, experiment: str, sweep_id: str):
        super().__init__(where, reason)
        self.experiment, self.sweep_id = experiment, sweep_id


def new_sweep_id() -> str:
    """`sweep-20261126-031502-a3f9c1`: sortable, unique without coordination, and short enough
    (28 characters) to be a tuning job's name (at most 32)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{PREFIX}{stamp}-{secrets.token_hex(3)}"


@dataclass
class SweepRecord:
    store: Store
    experiment: str
    sweep_id: str
    manifest: dict[str, Any]

    @property
    def prefix(self) -> str:
        return f"{ROOT}/{self.experiment}/{self.sweep_id}"

    @property
    def uri(self) -> str:
        return self.store.url(self.prefix)

    @property
    def trials(self) -> list[dict[str, Any]]:
        return self.manifest.setdefault("trials", [])

    @property
    def status(self) -> str:
        return self.manifest["status"]

    @classmethod
    def create(cls, store: Store, experiment: str, sweep_id: str, manifest: dict[str, Any]
               ) -> SweepRecord:
        record = cls(store, experiment, sweep_id, {
            "schema": 1, "sweep_id": sweep_id, "experiment": experiment, "status": "Starting",
            "status_history": [{"status": "Starting", "time": now()}], "created": now(),
            "user": user(), "host": socket.gethostname(), **manifest})
        record.manifest["record_uri"] = record.uri
        record._write(create_only=True)
        return record

    @classmethod
    def open(cls, store: Store, experiment: str, sweep_id: str) -> SweepRecord:
        """The sweep's record; FileNotFoundError when there is none, DamagedSweep (naming the
        file and the field) when sweep.json cannot be read as one."""
        key = f"{ROOT}/{experiment}/{sweep_id}/sweep.json"
        where = store.url(key)
        try:
            manifest = check_manifest(parse_json(store.read_bytes(key), where), where,
                                      experiment, sweep_id)
        except DamagedFile as exc:
            raise DamagedSweep(exc.where, exc.reason, experiment, sweep_id) from None
        return cls(store, experiment, sweep_id, manifest)

    def put_text(self, name: str, text: str) -> str:
        self.store.write_text(f"{self.prefix}/{name}", redact(text))
        return self.store.url(f"{self.prefix}/{name}")

    def read_text(self, name: str) -> str:
        return self.store.read_text(f"{self.prefix}/{name}")

    def update(self, **fields: Any) -> None:
        self.manifest.update(fields)
        self.manifest["updated"] = now()
        self._write()

    def set_status(self, status: str, **fields: Any) -> None:
        self.update(**status_fields(self.manifest, status, fields))

    def trial(self, index: int) -> dict[str, Any]:
        return next(t for t in self.trials if t["trial"] == index)

    def status_counts(self) -> dict[str, int]:
        """How many trials have each status, in the order the statuses first appear."""
        counts: dict[str, int] = {}
        for entry in self.trials:
            counts[entry["status"]] = counts.get(entry["status"], 0) + 1
        return counts

    def best(self) -> dict[str, Any] | None:
        """The finished trial with the best objective."""
        goal = (self.manifest.get("objective") or {}).get("goal", "maximize")
        scored = [t for t in self.trials
                  if t.get("status") == "Completed" and isinstance(t.get("objective"), int | float)]
        if not scored:
            return None
        pick = max if goal == "maximize" else min
        return pick(scored, key=lambda t: t["objective"])

    def _write(self, create_only: bool = False) -> None:
        text = redact(json.dumps(self.manifest, indent=2, default=str) + "\n")
        self.store.write_text(f"{self.prefix}/sweep.json", text, create_only=create_only)


def check_manifest(data: Any, where: str, experiment: str, sweep_id: str) -> dict[str, Any]:
    """`data` when it is a sweep.json of the sweep in folder `experiment/sweep_id`: the fields
    sagebook reads, of their types (see shape.py), its names valid and its own. Else a
    DamagedFile naming `where` and the field."""
    from . import shape  # pydantic: only for a command that reads a sweep (not `list`)

    if depth(data) > MAX_DEPTH:
        raise DamagedFile(where, f"nested more than {MAX_DEPTH} levels deep: not a sweep record")
    wrong = shape.problem(data)
    if wrong is not None:
        raise DamagedFile(where, f"not a sweep record: {wrong}")
    names = [("sweep_id", "sweep id", data["sweep_id"]),
             ("experiment", "experiment", data["experiment"])]
    for number, trial in enumerate(data.get("trials") or []):
        names.append((f"trials[{number}].run_id", "run id", trial.get("run_id")))
        names += [(f"trials[{number}].earlier_runs[{i}]", "run id", run_id)
                  for i, run_id in enumerate(trial.get("earlier_runs") or [])]
    for key, kind, value in names:
        if value is not None:
            try:
                checked_name(kind, value, where)
            except DamagedFile as exc:
                raise DamagedFile(where, f"{key}: {exc.reason}") from None
    if (data["experiment"], data["sweep_id"]) != (experiment, sweep_id):
        raise DamagedFile(where, f"names sweep {data['experiment']}/{data['sweep_id']}, "
                                 f"but its folder is {experiment}/{sweep_id}")
    return data


def depth(value: Any) -> int:
    """How deeply `value` nests lists and dicts, counted without recursion (a deep document
    read within the JSON parser's limit could still exhaust the stack of what prints it)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                stack.extend((item, level + 1)
                             for item in (value.values() if isinstance(value, dict) else value))
    return deepest


def all_sweeps(store: Store, experiment: str | None = None,
               damaged: list[DamagedFile] | None = None) -> list[SweepRecord]:
    """Every sweep in the store (or of one experiment), oldest first. A sweep whose record
    cannot be read is skipped and added to `damaged` (one bad file must not hide the rest)."""
    damaged = [] if damaged is None else damaged
    found = []
    for ids in _sweep_ids(store, experiment, damaged):
        try:
            found.append(SweepRecord.open(store, *ids))
        except DamagedFile as exc:
            damaged.append(exc)
        except FileNotFoundError:
            continue  # removed since the listing
    return found


def _sweep_ids(store: Store, experiment: str | None,
               damaged: list[DamagedFile] | None = None) -> list[tuple[str, str]]:
    """(experiment, sweep id) of every sweep, oldest first: from the listing, reading none.
    A folder whose name is no experiment or sweep id is passed over (and added to
    `damaged`): its name never becomes a path."""
    prefix = f"{ROOT}/{experiment}" if experiment else ROOT
    found = []
    for key in store.list(prefix):
        parts = key.split("/")
        if len(parts) == 4 and parts[3] == "sweep.json":
            try:
                found.append((checked_name("experiment", parts[1], store.url(key)),
                              checked_name("sweep id", parts[2], store.url(key))))
            except DamagedFile as exc:
                if damaged is not None:
                    damaged.append(exc)
    return sorted(found, key=lambda ids: ids[1])


def find_sweep(store: Store, ref: str) -> SweepRecord:
    """The sweep a user means: its id, or a unique part of it (`experiment/id` also works).
    DamagedSweep when its record cannot be read."""
    experiment, sweep_id = locate_sweep(store, ref)
    try:
        return SweepRecord.open(store, experiment, sweep_id)
    except FileNotFoundError:
        raise SweepNotFound(f"no sweep {ref!r} in {store.uri}: its sweep.json is gone") from None

def locate_sweep(store: Store, ref: str) -> tuple[str, str]:
    """(experiment, sweep id) of the sweep a user means, from the listing alone."""
    experiment = None
    if ref.count("/") == 1:
        experiment, ref = ref.split("/")
    matches = [ids for ids in _sweep_ids(store, experiment) if ref in ids[1]]
    exact = [ids for ids in matches if ids[1] == ref]
    matches = exact or matches
    if not matches:
        raise SweepNotFound(f"no sweep {ref!r} in {store.uri}")
    if len(matches) > 1:
        names = ", ".join(sweep_id for _, sweep_id in matches[:5])
        raise SweepNotFound(f"{ref!r} matches {len(matches)} sweeps ({names}): give more of it")
    return matches[0]


def is_sweep_ref(ref: str) -> bool:
    return ref.rpartition("/")[2].startswith(PREFIX)
