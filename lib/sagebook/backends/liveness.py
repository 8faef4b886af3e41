"""Whether a local run's launcher still lives, and what to do when it does not.

A local run lives only as long as the process that launched it (`sagebook launch`, a notebook
kernel): that process reads the training output, writes the record and stops the training
when it is stopped. A launcher killed with SIGKILL, by the out-of-memory killer or by a closed
laptop writes nothing more, and its record would say InProgress for ever. So:

- while it runs, the launcher writes `heartbeat.json` into the record every
  `SAGEBOOK_HEARTBEAT_SECONDS` (30): its host, its pid (with the pid's start time, so a reused
  pid is not taken for it), the training's process groups (each leader's pid and start time)
  and the time;
- readers (`list`, `show`) mark an unfinished run Lost when its launcher is gone: on the same
  host, when its pid no longer lives; elsewhere, when the heartbeat is older than
  LOST_AFTER_BEATS beats;
- the training process is started under `supervise.py`, which stops it when its launcher dies
  (`launch --detach` makes the launcher itself outlive the terminal, see detached.py);
- `sagebook stop RUN` stops a local run: through its launcher while that lives (it stops the
  training and closes the record as Ctrl-C does), or directly, closing the record as Stopped,
  once it is Lost.

The heartbeat is in the shared store, so anyone who can write there can make it name any
process of this machine. It proves nothing: a process is signalled only when this machine
shows it is the run's own. The launcher writes its claim (`launcher.json`: the record, its pid
and start time) into the run's work folder, a file of this user's that no store writer can
reach; each training process group's leader carries the run's id and record in its environment
(`SAGEBOOK_RUN_ID`, `SAGEBOOK_RECORD_URI`, set by the request for every training process); and
both must run as this user, with the start time recorded for them. A heartbeat that names
anything else (another process, a pid without its start time, a value that is no pid at all)
is refused whole: nothing is signalled.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LaunchError, StoreError
from ..inputs import DamagedFile, checked_name, parse_json, safe_path
from ..paths import work_base
from ..printing import terminal_text
from ..record import TERMINAL, Record, job_name, now
from ..stores import Store
from . import Outcome

if TYPE_CHECKING:  # psutil is imported when a process is looked at: `sagebook list` rarely does
    import psutil

HEARTBEAT = "heartbeat.json"
CLAIM = "launcher.json"  # in the run's work folder: the launcher's own word, out of the store
LOST_AFTER_BEATS = 4
SUPERVISOR = Path(__file__).with_name("supervise.py")
# What a heartbeat may name: a pid above 1 (never init, the caller's group 0 or "all" -1) and
# below Linux's largest, with a start time; at most this many process groups.
PID_LIMIT = 1 << 22
MAX_GROUPS = 1000
# psutil computes a start time from the boot time and the start's clock tick (10 ms): the same
# process reads the same to well within this; a pid reused later reads differently.
SAME_START = 0.05
NOT_OWN = "this record names processes that are not its own: not signalled"


def beat_seconds() -> float:
    return float(os.environ.get("SAGEBOOK_HEARTBEAT_SECONDS") or 30)


def work_dir(name: str) -> Path:
    """The folder of job `name` that plays /opt/ml; kept after the run so it can be
    inspected. It holds the launcher's claim on its run too (see `Heartbeat.start`)."""
    return work_base() / name


def run_folder(experiment: Any, run_id: Any, where: str) -> Path:
    """A run's work folder on this machine, named as its launch names it (`work_dir` of its
    job name) from a valid experiment and run id, never from a path a record states;
    DamagedFile (naming `where`) for any other value."""
    name = job_name(checked_name("experiment", experiment, where),
                    checked_name("run id", run_id, where))
    return safe_path(work_base(), name, where=where)


def supervised(command: list[str], grace: float, cpus: Sequence[int] = ()) -> list[str]:
    """`command` run so that it stops when the process that starts it dies, pinned to `cpus`
    (with its children) when some are given."""
    pinned = ["--cpus", ",".join(map(str, cpus))] if cpus else []
    return [sys.executable, str(SUPERVISOR), str(grace), *pinned, *command]


class Heartbeat:
    """Writes the run's heartbeat until the run ends or `stop()`; `processes` are the process
    groups of its training (leader pid, start time), noted as they start."""

    def __init__(self, record: Record):
        self.record = record
        self.processes: list[list[float]] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"heartbeat {record.run_id}")

    def start(self) -> Heartbeat:
        """Claim the run in its work folder (what `stop` believes of the launcher), then beat.
        The claim stays with the folder after the run: a pid with its start time never names
        another process."""
        path = run_folder(self.record.experiment, self.record.run_id, self.record.uri) / CLAIM
        path.parent.mkdir(parents=True, exist_ok=True)
        claim = {"record": self.record.uri, "pid": os.getpid(), "pid_started": _started()}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(claim) + "\n")
        self.beat()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def note(self, process_group: int) -> None:
        """A training process started: beat now, so the heartbeat names it at once."""
        started = _started(process_group)
        if started is not None:  # ended already: nothing left to name
            self.processes.append([process_group, started])
        self.beat()

    def beat(self) -> None:
        data = {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": _started(),
                "processes": list(self.processes), "time": now(), "every": beat_seconds()}
        try:
            self.record.store.write_text(f"{self.record.prefix}/{HEARTBEAT}",
                                         json.dumps(data) + "\n")
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
    nothing can tell: a run older than heartbeats, another user's launch on this machine,
    which readers leave as it is)."""
    if entry.get("status") in TERMINAL:
        return None
    experiment, run_id = entry.get("experiment"), entry.get("run_id")
    try:
        checked_name("experiment", experiment, store.uri)
        checked_name("run id", run_id, store.uri)
    except DamagedFile:
        return None  # no record of sagebook's: nothing to tell of it here
    beat = read(store, experiment, run_id)
    if beat is None:
        return None
    host = beat.get("host")
    if host == socket.gethostname():
        claimed = _claimed(experiment, run_id, store.url(f"{experiment}/{run_id}"))
        if claimed is not None:  # the launcher's own word: the heartbeat adds nothing
            pid, started = claimed
            if _own(_process(pid, started)):
                return None
            return f"its launcher (pid {pid} on {host}) is gone"
        pid = beat.get("pid")
        if not _is_pid(pid):  # no process of a launch, of this user's or another's
            return f"its heartbeat names no launcher (pid {_shown(pid)})"
        process = _process(pid, beat.get("pid_started"))
        if process is None:
            return f"its launcher (pid {pid} on {host}) is gone"
        if not _own(process):
            return None  # another user's: their launcher, or not, is theirs to tell
        return (f"its heartbeat names pid {pid}, which is not its launcher (no launch "
                "of this user claims the run)")
    age = _age(beat.get("time"))
    every = _number(beat.get("every")) or 30
    if age is not None and age > LOST_AFTER_BEATS * every:
        return (f"no heartbeat from its launcher on {terminal_text(host, one_line=True)} "
                f"for {int(age)} s")
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
    training processes here and close the record. Only processes this machine shows are the
    run's own are signalled; a heartbeat that names any other is refused whole."""
    import psutil

    if record.status in TERMINAL:
        return Outcome(status=record.status)
    beat = read(record.store, record.experiment, record.run_id) or {}
    host = beat.get("host") or record.manifest.get("host")
    if host != socket.gethostname():
        raise LaunchError(f"run {record.run_id} runs on {terminal_text(host, one_line=True)}: "
                          "run `sagebook stop` there")
    own = _own_processes(record, beat)
    if own.strangers:
        raise LaunchError(f"{record.url(HEARTBEAT)}: {NOT_OWN} "
                          f"({', '.join(own.strangers)})")
    if own.launcher is not None:
        pid = own.launcher.pid
        try:  # psutil refuses a pid reused since it was proven
            own.launcher.send_signal(signal.SIGTERM)  # it stops the run as Ctrl-C does
        except psutil.NoSuchProcess:
            pass  # it ended on its own meanwhile: the record says how
        echo(f"[sagebook] asked its launcher (pid {pid}) to stop run {record.run_id}")
        # The launcher writes the record: wait for it, then report what it wrote (writing
        # from here too would race it).
        deadline = time.monotonic() + grace + 30
        while _running(own.launcher) and time.monotonic() < deadline:
            time.sleep(0.1)
        record.reload()
        return Outcome(status=record.status if record.status in TERMINAL else "Stopping",
                       failure_reason=record.manifest.get("failure_reason"), from_record=True)
    groups = own.groups
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


def training_groups(record: Record) -> list[int]:
    """The live process groups of a local run's training that this machine proves are the
    run's own (see `_own_group`): what `sagebook shell` may enter. Empty when none runs here."""
    beat = read(record.store, record.experiment, record.run_id) or {}
    return _own_processes(record, beat).groups


@dataclass
class OwnProcesses:
    """What a heartbeat names, sorted: the run's live launcher, its live training process
    groups, and what it names that is not the run's (each as the field that names it)."""

    launcher: psutil.Process | None
    groups: list[int]
    strangers: list[str]


def _own_processes(record: Record, beat: dict[str, Any]) -> OwnProcesses:
    """The launcher as its claim names it, and the heartbeat's process groups proven the
    run's. A stranger is a named process that lives and is not proven (a live pid named
    without its start time among them) or a value that is no pid (a string, 0, -1, 1). What
    has ended is neither: nothing is left to signal."""
    claimed = _claimed(record.experiment, record.run_id, record.uri)
    launcher = _process(*claimed) if claimed else None
    launcher = launcher if _own(launcher) else None
    strangers = []
    pid = beat.get("pid")
    if pid is not None and not (launcher is not None and pid == launcher.pid) and (
            not _is_pid(pid) or _lives(pid, beat.get("pid_started"))):
        strangers.append(f"pid {_shown(pid)}")
    named = beat.get("processes")
    if named is None:
        named = []
    if not isinstance(named, list) or len(named) > MAX_GROUPS:
        return OwnProcesses(launcher, [], [*strangers, "processes"])
    groups = []
    for item in named:
        leader, started = item if isinstance(item, list) and len(item) == 2 else (item, None)
        if _is_pid(leader) and _own_group(_process(leader, started), record):
            groups.append(leader)
        elif not _is_pid(leader) or _lives(leader, started):
            strangers.append(f"process group {_shown(leader)}")
    return OwnProcesses(launcher, groups, strangers)


def _claimed(experiment: Any, run_id: Any, record_uri: str) -> tuple[int, float] | None:
    """The launcher's pid and start time as the launcher of this record wrote them in its
    work folder: a regular file of this user's, writable by no one else, naming this record;
    None when there is none."""
    try:
        path = run_folder(experiment, run_id, record_uri) / CLAIM
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
    except (DamagedFile, OSError):
        return None
    try:
        info = os.fstat(fd)
        if (not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_nlink != 1
                or info.st_mode & 0o022 or info.st_size > 4096):
            return None
        data = json.loads(os.read(fd, 4096))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    if not isinstance(data, dict) or data.get("record") != record_uri:
        return None
    pid, started = data.get("pid"), data.get("pid_started")
    return (pid, started) if _is_pid(pid) and _number(started) else None


def _is_pid(value: Any) -> bool:
    """A value that may name some other process: an int (not a bool) in (1, PID_LIMIT)."""
    return type(value) is int and 1 < value < PID_LIMIT


def _number(value: Any) -> float | None:
    """A positive finite number, or None: heartbeat values are anything a store writer typed."""
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        return None
    return float(value)


def _process(pid: int, started: Any) -> psutil.Process | None:
    """The live process `pid` when it started at `started`; None when there is none (ended,
    a zombie, its pid reused) or no start time was given."""
    import psutil

    when = _number(started)
    if when is None:
        return None
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - when) > SAME_START:
            return None
        return process if process.status() != psutil.STATUS_ZOMBIE else None
    except psutil.Error:
        return None


def _lives(pid: int, started: Any) -> bool:
    """Whether `pid` names a live process: the one started then, or, without a start time,
    any (a pid alone cannot tell one from another)."""
    import psutil

    if _number(started) is not None:
        return _process(pid, started) is not None
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _own(process: psutil.Process | None) -> bool:
    """A live process of this user's (real and effective uid)."""
    import psutil

    if process is None:
        return False
    try:
        uids = process.uids()
    except psutil.Error:
        return False
    return uids.real == uids.effective == os.getuid()


def _own_group(leader: psutil.Process | None, record: Record) -> bool:
    """`leader` is a live process of this user's that leads its process group and carries
    this run's id and record in its environment, as every training process does."""
    import psutil

    if leader is None or not _own(leader):
        return False
    try:
        environment = leader.environ()
        leads = os.getpgid(leader.pid) == leader.pid
    except (psutil.Error, OSError):
        return False
    return (leads and environment.get("SAGEBOOK_RUN_ID") == record.run_id
            and environment.get("SAGEBOOK_RECORD_URI") == record.uri)


def _running(process: psutil.Process) -> bool:
    import psutil

    try:  # is_running() is False once the pid is reused
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
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


def _started(pid: int | None = None) -> float | None:
    """When process `pid` (this one by default) started, as psutil reads it; None once gone."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _shown(value: Any) -> str:
    """A heartbeat value in a one-line message: short, and unable to drive the terminal."""
    text = terminal_text(json.dumps(value) if not isinstance(value, str) else value,
                         one_line=True)
    return text if len(text) <= 40 else text[:37] + "..."


def _age(stamp: Any) -> float | None:
    try:
        then = _dt.datetime.fromisoformat(str(stamp))
        return (_dt.datetime.now(_dt.timezone.utc) - then).total_seconds()
    except (ValueError, TypeError):  # not a time, or one without its zone
        return None


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
