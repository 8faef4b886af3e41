"""Whether a local run's launcher still lives, and what to do when it does not.

A local run lives only as long as the process that launched it (`sagebook launch`, a notebook
kernel): that process reads the training output, writes the record and stops the training
when it is stopped. A launcher killed with SIGKILL, by the out-of-memory killer or by a closed
laptop writes nothing more, and its record would say InProgress for ever. So:

- while it runs, the launcher writes `heartbeat.json` into the record every
  `SAGEBOOK_HEARTBEAT_SECONDS` (30): its host, its pid (with the pid's start time, so a reused
  pid is not taken for it), the training processes and the time;
- readers (`list`, `show`) mark an unfinished run Lost when its launcher is gone: on the same
  host, when its pid no longer lives; elsewhere, when the heartbeat is older than
  LOST_AFTER_BEATS beats;
- the training process is started under `supervise.py`, which stops it when its launcher dies
  (`launch --detach` makes the launcher itself outlive the terminal, see detached.py);
- `sagebook stop RUN` stops a local run: through its launcher while that lives (it stops the
  training and closes the record as Ctrl-C does), or directly, closing the record as Stopped,
  once it is Lost.
"""

from __future__ import annotations

import datetime as _dt
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import LaunchError, StoreError
from ..inputs import DamagedFile, parse_json
from ..record import TERMINAL, Record, now
from ..stores import Store
from . import Outcome

HEARTBEAT = "heartbeat.json"
LOST_AFTER_BEATS = 4
SUPERVISOR = Path(__file__).with_name("supervise.py")


def beat_seconds() -> float:
    return float(os.environ.get("SAGEBOOK_HEARTBEAT_SECONDS") or 30)


def supervised(command: list[str], grace: float, cpus: Sequence[int] = ()) -> list[str]:
    """`command` run so that it stops when the process that starts it dies, pinned to `cpus`
    (with its children) when some are given."""
    pinned = ["--cpus", ",".join(map(str, cpus))] if cpus else []
    return [sys.executable, str(SUPERVISOR), str(grace), *pinned, *command]


class Heartbeat:
    """Writes the run's heartbeat until the run ends or `stop()`; `processes` are the process
    groups of its training, noted as they start."""

    def __init__(self, record: Record):
        self.record = record
        self.processes: list[int] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"heartbeat {record.run_id}")

    def start(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def note(self, process_group: int) -> None:
        """A training process started: beat now, so the heartbeat names it at once."""
        self.processes.append(process_group)
        self.beat()

    def beat(self) -> None:
        data = {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": _started(),
                "processes": list(self.processes), "time": now(), "every": beat_seconds()}
        try:
            self.record.store.write_text(f"{self.record.prefix}/{HEARTBEAT}", _json(data))
        except StoreError:
            pass  # a store out of reach: the next beat tries again; readers allow for a few

    def _run(self) -> None:
        while not self._stopped.wait(beat_seconds()):
            if self.record.manifest.get("status") in TERMINAL:
                return
            self.beat()


def read(store: Store, experiment: str, run_id: str) -> dict[str, Any] | None:
    key = f"{experiment}/{run_id}/{HEARTBEAT}"
    try:
        data = parse_json(store.read_bytes(key), store.url(key))
    except (FileNotFoundError, DamagedFile, StoreError):
        return None
    return data if isinstance(data, dict) else None


def lost(store: Store, entry: dict[str, Any]) -> str | None:
    """Why an unfinished local run has lost its launcher, or None while it lives (or when
    nothing can tell: a run older than heartbeats, which readers leave as it is)."""
    if entry.get("status") in TERMINAL:
        return None
    beat = read(store, entry["experiment"], entry["run_id"])
    if beat is None:
        return None
    host, pid = beat.get("host"), beat.get("pid")
    if host == socket.gethostname() and isinstance(pid, int):
        if _alive(pid, beat.get("pid_started")):
            return None
        return f"its launcher (pid {pid} on {host}) is gone"
    age = _age(beat.get("time"))
    if age is not None and age > LOST_AFTER_BEATS * float(beat.get("every") or 30):
        return f"no heartbeat from its launcher on {host} for {int(age)} s"
    return None


def cleanup_hint(entry: dict[str, Any]) -> str:
    ref = f"{entry['experiment']}/{entry['run_id']}"
    return f"`sagebook stop {ref}` stops what is left of it and closes its record"


def refresh(store: Store, entries: list[dict[str, Any]]) -> int:
    """Mark the runs whose launcher is gone as Lost (in `entries`, for this reader: a slow
    launcher that comes back must find its record as it left it)."""
    changed = 0
    for entry in entries:
        reason = lost(store, entry)
        if reason:
            entry["status"], entry["lost"] = "Lost", reason
            changed += 1
    return changed


def stop(record: Record, echo: Callable[[str], None], grace: float) -> Outcome:
    """Stop a local run from another process: ask its launcher while it lives, else end its
    training processes here and close the record."""
    if record.status in TERMINAL:
        return Outcome(status=record.status)
    beat = read(record.store, record.experiment, record.run_id) or {}
    host = beat.get("host") or record.manifest.get("host")
    if host != socket.gethostname():
        raise LaunchError(f"run {record.run_id} runs on {host}: run `sagebook stop` there")
    pid = beat.get("pid")
    if isinstance(pid, int) and _alive(pid, beat.get("pid_started")):
        os.kill(pid, signal.SIGTERM)  # the launcher stops it as Ctrl-C does, and says so
        echo(f"[sagebook] asked its launcher (pid {pid}) to stop run {record.run_id}")
        # The launcher writes the record: wait for it, then report what it wrote (writing
        # from here too would race it).
        deadline = time.monotonic() + grace + 30
        while _alive(pid, beat.get("pid_started")) and time.monotonic() < deadline:
            time.sleep(0.1)
        record.reload()
        return Outcome(status=record.status if record.status in TERMINAL else "Stopping",
                       failure_reason=record.manifest.get("failure_reason"), recorded=True)
    groups = [g for g in beat.get("processes") or [] if isinstance(g, int) and _group_alive(g)]
    for group in groups:
        _signal(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_group_alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.1)
    for group in groups:
        _signal(group, signal.SIGKILL)
    echo(f"[sagebook] its launcher was gone; stopped {len(groups)} training processes")
    return Outcome(status="Stopped", failure_reason="its launcher was lost; stopped by "
                                                    "`sagebook stop`")


def _alive(pid: int, started: float | None) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        same = started is None or abs(process.create_time() - started) < 1
        return same and process.status() != psutil.STATUS_ZOMBIE  # ended, not yet reaped
    except psutil.Error:
        return False


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _started() -> float:
    import psutil

    return psutil.Process().create_time()


def _age(stamp: Any) -> float | None:
    try:
        then = _dt.datetime.fromisoformat(str(stamp))
    except ValueError:
        return None
    return (_dt.datetime.now(_dt.timezone.utc) - then).total_seconds()


def _json(data: dict[str, Any]) -> str:
    import json

    return json.dumps(data) + "\n"
