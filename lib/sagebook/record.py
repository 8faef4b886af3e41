"""The experiment record: one folder per run in the store, written as the run goes.

Layout of `<experiments_uri>/<experiment>/<run_id>/`:

    manifest.json            who, when, where, status history, git, config hashes, outcome
    sagemaker_config.yaml    the job config as launched (overrides applied, paths absolute)
    config/training_config.yaml   the training config as launched; also the `config` channel
    request.json             the exact CreateTrainingJob request
    git.diff                 uncommitted changes of the training code, when the tree was dirty
    logs/<host>.log          the job's log lines
    metrics.jsonl            every metric value with its time and step
    failure.txt              the training code's output/failure, when it wrote one
    heartbeat.json           a local run's launcher: host, pid, time (see backends/liveness.py)
    notebook.ipynb           the executed launch notebook, when launched from one
    annotations/<stamp>.json tags, notes and names added after launch, one immutable event each
    output/<job>/output/     model.tar.gz and output.tar.gz of local runs without output_uri

The manifest is created with a create-only write, so two launches can never claim one folder,
and its status only says Completed once the backend said so.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
import secrets
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import index
from .errors import StoreError
from .inputs import DamagedFile, checked_name, parse_json, safe_path
from .paths import work_base
from .secrets import redact
from .shapes import ANNOTATION_EVENT, checked
from .stores import Store, open_store

TERMINAL = ("Completed", "Failed", "Stopped", "Interrupted")
STATUSES = ("Starting", "InProgress", "Stopping", *TERMINAL)
ANNOTATIONS = "annotations"  # the run's tag, note and rename events, one object each
PENDING_MANIFEST = "pending-manifest.json"
MAX_DIFF_BYTES = 2_000_000


def status_fields(manifest: dict[str, Any], status: str, fields: dict[str, Any]
                  ) -> dict[str, Any]:
    """The fields that move a manifest to `status`: the status, its entry in the history (once
    per change, with the `secondary_status` that came with it, as SageMaker's
    `MaxRuntimeExceeded` comes with Stopping), and the end time of a terminal status. Run and
    sweep records share it, so both keep the same history."""
    history = manifest.setdefault("status_history", [])
    if not history or history[-1]["status"] != status:
        entry = {"status": status, "time": now()}
        if isinstance(fields.get("secondary_status"), str):
            entry["secondary_status"] = fields["secondary_status"]
        history.append(entry)
    if status in TERMINAL:
        fields = {"ended": now(), **fields}
    return {"status": status, **fields}


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    """Sortable by time, unique without coordination: `20261126-031502-a3f9c1`."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def job_name(experiment: str, run_id: str) -> str:
    """A SageMaker job name (<= 63 chars of [a-zA-Z0-9-]) that still names the run."""
    name = f"{experiment[: 62 - len(run_id)]}-{run_id}"
    return name.strip("-")


def git_state(folder: Path) -> dict[str, Any]:
    """Commit of the training code, and whether (and how) the tree differs from it.

    One `git status` answers commit, branch and changes (a second call fetches the diff only
    when there is one): this runs on every launch.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True,
            timeout=30,
        ).stdout

    try:
        status = git("status", "--porcelain=v2", "--branch", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "note": f"{folder} is not in a git repository"}
    header = dict(line[2:].split(" ", 1) for line in status.splitlines()
                  if line.startswith("# ") and " " in line[2:])
    commit = header.get("branch.oid")
    if commit in (None, "(initial)"):
        return {"commit": None, "dirty": None, "note": f"{folder}'s repository has no commit"}
    changed = [_changed_path(line) for line in status.splitlines() if not line.startswith("#")]
    state: dict[str, Any] = {"commit": commit, "branch": header.get("branch.head"),
                             "dirty": bool(changed)}
    if changed:
        state["changed"] = changed[:200]
        diff = git("diff", "HEAD", "--", ".")
        state["diff"] = diff[:MAX_DIFF_BYTES]
        state["diff_truncated"] = len(diff) > MAX_DIFF_BYTES
    return state


def _changed_path(line: str) -> str:
    """`XY path` from a `git status --porcelain=v2` entry (`?? path` for untracked files)."""
    kind = line[:1]
    if kind in ("?", "!"):
        return f"{kind * 2} {line[2:]}"
    fields = {"1": 8, "2": 9, "u": 10}.get(kind)
    if fields is None:
        return line
    parts = line.split(" ", fields)
    return f"{parts[1]} {parts[-1]}"


@dataclass
class Record:
    """A run's folder in the store, and its manifest as last written."""

    store: Store
    experiment: str
    run_id: str
    manifest: dict[str, Any]
    # A local folder for what the store could not take (a full disk, S3 out of reach): the
    # manifest as it should be, beside the run's logs and metrics; `sync` uploads them.
    local_copy: Path | None = None
    # the manifest revision whose summary is in the index (see publish)
    published: int = field(default=0, compare=False, repr=False)

    @property
    def prefix(self) -> str:
        return f"{self.experiment}/{self.run_id}"

    @property
    def uri(self) -> str:
        return self.store.url(self.prefix)

    def url(self, name: str) -> str:
        return self.store.url(f"{self.prefix}/{name}")

    def local_path(self, name: str = "") -> Path | None:
        root = self.store.local_path()
        return root / self.prefix / name if root else None

    @classmethod
    def create(cls, store: Store, experiment: str, run_id: str, manifest: dict[str, Any],
               *, publish: bool = True) -> Record:
        """Claim the run's folder: fails if another launch already owns this run id. With
        `publish=False` the caller publishes it in the index (`publish()`), alongside its
        first files."""
        base = {
            "schema": 1,
            "run_id": run_id,
            "experiment": experiment,
            "status": "Starting",
            "status_history": [{"status": "Starting", "time": now()}],
            "created": now(),
            "user": user(),
            "host": socket.gethostname(),
        }
        record = cls(store, experiment, run_id, {**base, **manifest})
        record.manifest["record_uri"] = record.uri
        record._write_manifest(create_only=True, publish=publish)
        return record

    @classmethod
    def open(cls, store: Store, experiment: str, run_id: str) -> Record:
        return cls(store, experiment, run_id, read_manifest(store, experiment, run_id))

    @classmethod
    def open_uri(cls, uri: str, **store_options: Any) -> Record:
        """The record at `<store>/<experiment>/<run_id>` (store options: profile, region,
        kms_key, expected_owner, as the job config gives them)."""
        root, experiment, run_id = uri.rstrip("/").rsplit("/", 2)
        return cls.open(open_store(root, **store_options), experiment, run_id)

    def reload(self) -> None:
        self.manifest = read_manifest(self.store, self.experiment, self.run_id)

    def put_text(self, name: str, text: str) -> str:
        """Write a text file of the record; credentials in it are masked (see secrets.py)."""
        self.store.write_text(f"{self.prefix}/{name}", redact(text))
        return self.url(name)

    def put_file(self, name: str, path: Path) -> str:
        self.store.put_file(f"{self.prefix}/{name}", path)
        return self.url(name)

    def update(self, **fields: Any) -> None:
        """Merge fields into the manifest and write it (atomically replacing the old one)."""
        self.manifest.update(fields)
        self.manifest["updated"] = now()
        self._write_manifest()

    def set_status(self, status: str, **fields: Any) -> None:
        self.update(**status_fields(self.manifest, status, fields))

    def note_secondary_status(self, secondary: str) -> None:
        """A step within the status, kept in the timeline as SageMaker keeps its
        SecondaryStatusTransitions: an interrupted spot job stays InProgress, `Interrupted`
        and then `Restarting`."""
        self.manifest.setdefault("status_history", []).append(
            {"status": self.status, "time": now(), "secondary_status": secondary})
        self.update()

    @property
    def status(self) -> str:
        return self.manifest["status"]

    def annotate(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Add an annotation (`tags.KEY`: value or None to remove, `name`, `note`) as a new
        immutable event in `annotations/`, and publish it to the index. Never touches the
        manifest, so it is safe while the run's launcher, or other annotators, write."""
        moment = _dt.datetime.now(_dt.timezone.utc)
        stamp = f"{moment.strftime('%Y%m%dT%H%M%S.%f')}Z-{secrets.token_hex(4)}"
        fields = {k: (redact(v) if isinstance(v, str) else v) for k, v in fields.items()}
        event = {"time": moment.isoformat(timespec="milliseconds"), "user": user(),
                 "host": socket.gethostname(), "set": fields}
        self.store.write_text(f"{self.prefix}/{ANNOTATIONS}/{stamp}.json",
                              json.dumps(event, indent=1) + "\n", create_only=True)
        index.annotate(self.store, self.experiment, self.run_id, stamp, fields)
        return event

    def annotations(self) -> list[dict[str, Any]]:
        """Every annotation of the run, oldest first; one that is not an annotation (garbled,
        or a field of another type) is skipped, as the index skips its event."""
        keys = sorted(k for k in self.store.list(f"{self.prefix}/{ANNOTATIONS}")
                      if k.endswith(".json"))
        events = []
        for key, data in index.fetch(self.store, keys).items():
            try:
                if data is not None:
                    events.append(checked(parse_json(data, self.store.url(key)),
                                          ANNOTATION_EVENT, self.store.url(key)))
            except DamagedFile:
                continue
        return events

    def publish(self) -> None:
        """Write the manifest's summary in the run index (see index.py), so `list` reads one
        small object per run instead of every manifest. Once per revision: a later manifest
        write publishes its own."""
        if self.published != self.manifest.get("revision"):
            self._publish(self._manifest_text())

    def _publish(self, text: str) -> None:
        summary = json.loads(text)  # as written: credentials masked
        index.write(self.store, summary)
        self.published = summary["revision"]

    def _write_manifest(self, create_only: bool = False, publish: bool = True) -> None:
        """Write the manifest and its summary in the index. A new record's manifest goes
        first: its create-only write claims the run id. A later one goes out together with its
        summary, saving a round trip on every status change: the index merges a run's
        summaries by revision, whichever lands first."""
        self.manifest["revision"] = self.manifest.get("revision", 0) + 1
        text = self._manifest_text()
        if create_only:
            self.store.write_text(f"{self.prefix}/manifest.json", text, create_only=True)
            if publish:
                self._publish(text)
        else:
            with ThreadPoolExecutor(max_workers=1) as pool:
                summary = pool.submit(self._publish, text)
                try:
                    self.store.write_text(f"{self.prefix}/manifest.json", text)
                except StoreError:
                    if self.local_copy is not None:
                        _keep(self.local_copy / PENDING_MANIFEST, text)
                    raise
                summary.result()
        if self.local_copy is not None:
            (self.local_copy / PENDING_MANIFEST).unlink(missing_ok=True)

    def _manifest_text(self) -> str:
        return redact(json.dumps(self.manifest, indent=2, sort_keys=False, default=str) + "\n")


def read_manifest(store: Store, experiment: str, run_id: str) -> dict[str, Any]:
    """A run's manifest; FileNotFoundError when there is none, DamagedFile (naming it) when it
    cannot be read as one: half-written, garbled, not a sagebook manifest, or another run's.
    The experiment and run id are checked before they become a key: callers pass what an
    index or a listing of the store said."""
    key = f"{experiment}/{run_id}/manifest.json"
    checked_name("experiment", experiment, store.url(key))
    checked_name("run id", run_id, store.url(key))
    return index.checked_manifest(store.read_bytes(key), store.url(key), experiment, run_id)


def sync(record: Record) -> list[str]:
    """Write into the store what a run could not (its local copy: logs, metrics and the
    manifest as it should be); return the names written. Nothing to do is not an error."""
    folder = record.local_copy or _local_copy_of(record)
    if folder is None or not folder.is_dir():
        return []
    written = []
    pending = folder / PENDING_MANIFEST
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p != pending):
        name = path.relative_to(folder).as_posix()
        if record.local_path(name) != path and (
                pending.is_file() or not record.store.exists(f"{record.prefix}/{name}")):
            record.put_file(name, path)
            written.append(name)
    if pending.is_file():
        manifest = json.loads(pending.read_text())
        if manifest.get("revision", 0) > record.manifest.get("revision", 0):
            record.manifest = manifest
            record.local_copy = folder
            record.manifest["synced"] = now()
            record._write_manifest()
            written.append("manifest.json")
        pending.unlink(missing_ok=True)
    return written


def _local_copy_of(record: Record) -> Path | None:
    """Where the run's launcher kept what the store could not take, if on this machine: the
    `record` folder of the run's work folder, as the local backend names it. The manifest's
    `local_copy` only says that there is one: a record may name any folder (`~/.ssh`), and
    `sync` uploads what it finds there."""
    if not record.manifest.get("local_copy") or \
            record.manifest.get("host") != socket.gethostname():
        return None
    name = job_name(checked_name("experiment", record.experiment, record.url("manifest.json")),
                    checked_name("run id", record.run_id, record.url("manifest.json")))
    return safe_path(work_base(), name, "record", where=record.url("manifest.json"))


def _keep(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError:
        pass  # the store's error is the one to report; this was the last resort


def user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")

