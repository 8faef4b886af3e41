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
from ..inputs import parse_json
from ..record import now, status_fields, user
from ..secrets import redact
from ..stores import Store

ROOT = "_sweeps"
PREFIX = "sweep-"


class SweepNotFound(SagebookError):
    """No sweep, or more than one, matches what the user typed."""


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
        key = f"{ROOT}/{experiment}/{sweep_id}/sweep.json"
        return cls(store, experiment, sweep_id, parse_json(store.read_bytes(key), store.url(key)))

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


def all_sweeps(store: Store, experiment: str | None = None) -> list[SweepRecord]:
    """Every sweep in the store (or of one experiment), oldest first."""
    return [SweepRecord.open(store, *ids) for ids in _sweep_ids(store, experiment)]


def _sweep_ids(store: Store, experiment: str | None) -> list[tuple[str, str]]:
    """(experiment, sweep id) of every sweep, oldest first: from the listing, reading none."""
    prefix = f"{ROOT}/{experiment}" if experiment else ROOT
    found = []
    for key in store.list(prefix):
        parts = key.split("/")
        if len(parts) == 4 and parts[3] == "sweep.json":
            found.append((parts[1], parts[2]))
    return sorted(found, key=lambda ids: ids[1])


def find_sweep(store: Store, ref: str) -> SweepRecord:
    """The sweep a user means: its id, or a unique part of it (`experiment/id` also works)."""
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
    return SweepRecord.open(store, *matches[0])


def is_sweep_ref(ref: str) -> bool:
    return ref.rpartition("/")[2].startswith(PREFIX)
