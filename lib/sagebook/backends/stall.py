"""The stall watchdog: a run that prints nothing for `stall_timeout` is stalled.

A hung job (a deadlocked all-reduce, a data loader waiting for ever) is billed until its
max_runtime; only its silence tells it from a slow one. The watch that reads the run's log
lines (the local launcher, or `attach` for a SageMaker job) keeps the time of the last line
of any host; metrics come from log lines, so a run that reports a metric is not silent.

When a local run stalls, its training processes' Python stacks are saved to the record
(`stacks/<host>-<time>.txt`): by py-spy when it is installed and may read them, else by the
signal the example's training entry registers with `faulthandler` (STACKS_SIGNAL), whose
dump goes to the log and is copied from there. A process that has no handler for that
signal is not sent it: SIGUSR2's default action ends the process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ..notify import events
from ..record import Record, now
from . import contract

STALLED = "Stalled"  # the status timeline's secondary status for a stall
STACKS_SIGNAL = signal.SIGUSR2  # what the example's entry registers with faulthandler
PY_SPY_SECONDS = 10.0  # one py-spy dump; it stops the process while it reads it
DUMP_WAIT_SECONDS = 2.0  # for faulthandler's dump to reach the log


def span(seconds: float) -> str:
    """A stall timeout in the words of its failure reason: `15 min`, `2 h`, `45 s`."""
    whole = int(seconds)
    if whole and whole % 3600 == 0:
        return f"{whole // 3600} h"
    if whole and whole % 60 == 0:
        return f"{whole // 60} min"
    return f"{seconds:g} s"


def describe(job_config: Any) -> str:
    """The watch settings in a line, as `doctor` and `--dry-run` show them."""
    stalls = (f"stall_timeout {span(job_config.stall_timeout)} ({job_config.stall_action})"
              if job_config.stall_timeout else "no stall_timeout")
    urls = len(job_config.notify)
    on = ", ".join(events(job_config.notify_on))
    news = (f"notify {urls} URL{'s' if urls > 1 else ''} on {on}"
            if urls else "no notify URLs")
    return f"{stalls}; {news}"


@dataclass
class StallWatch:
    """The watchdog of one run: its timeout (None: off) and action, and when it fired."""

    timeout: float | None
    action: str = "stop"
    fired: float | None = None  # monotonic time of the stall, once there was one
    stopped: bool = False  # the run was stopped for it
    quiet_since: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, job_config: Any) -> StallWatch:
        return cls(job_config.stall_timeout, job_config.stall_action)

    def begin(self) -> None:
        """The clock starts again: a new attempt's processes, or a phase that prints nothing
        (SageMaker's Starting, Downloading) that has ended."""
        self.quiet_since = time.monotonic()

    @property
    def reason(self) -> str:
        """The failure reason of a run stopped as stalled."""
        return f"stalled: no output for {span(self.timeout or 0)}"

    def due(self, last_output: float | None) -> bool:
        """Whether the run has been silent for the timeout since `last_output` (a monotonic
        time, None: no line yet) or since the watch began; once per silence: output after a
        reported stall arms the watch again."""
        if self.timeout is None:
            return False
        quiet = max(self.quiet_since, last_output or 0.0)
        if self.fired is not None:
            if quiet <= self.fired:
                return False
            self.fired = None  # output came after the reported stall
        if time.monotonic() - quiet < self.timeout:
            return False
        self.fired = time.monotonic()
        return True

    def mark(self, record: Record) -> None:
        """The stall in the record: a timeline entry and when it was seen."""
        record.note_secondary_status(STALLED)
        record.update(stalled={"at": now(), "timeout_seconds": self.timeout,
                               "action": self.action, "reason": self.reason})


def training_processes(leader: int) -> list[psutil.Process]:
    """The Python processes below a host's process-group leader (the supervisor, itself
    Python, is not training): the training entry, and torchrun with its workers."""
    try:
        below = psutil.Process(leader).children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for process in below:
        try:
            if "python" in process.name().lower():
                found.append(process)
        except psutil.Error:
            continue
    return found


def save_stacks(record: Record, host: str, leader: int, log_path: Path) -> str:
    """Dump the Python stacks of one host's training processes into the record
    (`stacks/<host>-<time>.txt`) and return its name."""
    processes = training_processes(leader)
    text = _py_spy(processes)
    if text is None:
        text = _faulthandler(processes, log_path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"stacks/{host}-{stamp}.txt"
    record.put_text(name, text)
    return name


def _py_spy(processes: list[psutil.Process]) -> str | None:
    """Every process's stacks by py-spy, or None when it is not installed or read none."""
    py_spy = shutil.which("py-spy", path=contract.machine_environment(os.environ)["PATH"])
    if py_spy is None or not processes:
        return None
    parts, read = [], 0
    for process in processes:
        try:
            done = subprocess.run([py_spy, "dump", "--pid", str(process.pid)],
                                  capture_output=True, text=True, timeout=PY_SPY_SECONDS)
        except subprocess.TimeoutExpired:
            parts.append(f"# pid {process.pid}: py-spy took over {PY_SPY_SECONDS:g} s\n")
            continue
        if done.returncode == 0:
            read += 1
            parts.append(f"# py-spy dump --pid {process.pid}\n{done.stdout}")
        else:
            first = (done.stderr.strip().splitlines() or ["no output"])[0]
            parts.append(f"# pid {process.pid}: py-spy failed: {first}\n")
    return "\n".join(parts) if read else None


def _faulthandler(processes: list[psutil.Process], log_path: Path) -> str:
    """Ask each process that handles STACKS_SIGNAL for its stacks (faulthandler writes them
    to its stderr, which is the log) and copy what the log received meanwhile."""
    handling = [p for p in processes if _handles(p.pid, STACKS_SIGNAL)]
    if not handling:
        return ("# no stacks: py-spy is not installed (or may not read these processes) and "
                f"no training process handles {STACKS_SIGNAL.name} (the example's train.py "
                "registers it with faulthandler)\n")
    start = log_path.stat().st_size if log_path.is_file() else 0
    for process in handling:
        try:
            process.send_signal(STACKS_SIGNAL)
        except psutil.Error:
            continue
    time.sleep(DUMP_WAIT_SECONDS)
    with log_path.open("rb") as log:
        log.seek(start)
        dumped = log.read().decode("utf-8", errors="replace")
    pids = ", ".join(str(p.pid) for p in handling)
    return f"# faulthandler ({STACKS_SIGNAL.name}) of pid {pids}, as the log received it\n" \
        + dumped


def _handles(pid: int, signum: int) -> bool:
    """Whether `pid` has a handler for `signum` (SigCgt in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            caught = next(line for line in status if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(int(caught.split()[1], 16) >> (signum - 1) & 1)
