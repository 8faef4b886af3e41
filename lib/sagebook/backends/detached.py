"""Local runs that outlive the terminal that launched them: `launch --detach` and `attach`.

A local run's launcher does more than start the training: it drains the training output into
the record's log (a pipe nobody drains blocks the training on its next print), scrapes the
metrics, writes the heartbeat, stops the training when asked, and at the end packs the model
and output archives and writes the final status. A run that outlives its terminal needs all of
that done still, or its record never ends with the truth. So `--detach` does not split those
duties off into a second, reduced launcher: it starts the ordinary one (the same `sagebook
launch`) as a process of its own session — no terminal, so no Ctrl-C and no hang-up when the
terminal closes — with its output in a file, and returns once the run's record exists. Nothing
else has to change: the heartbeat names that process, so `list` shows the run InProgress while
it lives and Lost if it is killed (its supervisor still takes the training along);
`sagebook stop` asks it to stop as it asks any live launcher; and `sagebook attach` follows the
record's live log, which is where the launcher writes the training output anyway.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LaunchError
from ..inputs import DamagedFile
from ..printing import terminal_text
from ..record import TERMINAL, Record
from . import Outcome, children, liveness

# what `launch` prints once the record exists (launch.py)
_RECORD_LINE = re.compile(r"^\[sagebook\] run (\S+): record at (\S+)$", re.MULTILINE)
POLL_SECONDS = 0.2
READ_BYTES = 1 << 20  # of one log, per round of `attach`


@dataclass
class Started:
    """A detached launch: its launcher's pid and output file, and the run's id and record (or,
    when the launch ended before its record existed, its exit code and output)."""

    pid: int
    output: Path
    run_id: str | None = None
    record_uri: str | None = None
    exit_code: int | None = None
    text: str = ""


def start(arguments: list[str], work: Path) -> Started:
    """`sagebook launch ARGUMENTS` in a session of its own, its output in a file under `work`;
    returns once the run's record exists, or once the launch has ended without one (bad input:
    its output says why)."""
    work.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="launch-", suffix=".log", dir=work)
    with os.fdopen(fd, "wb") as out:
        proc = children.reaped(subprocess.Popen(
            [sys.executable, "-m", "sagebook.cli", "launch", *arguments],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True))
    output = Path(name)
    while True:
        ended = proc.returncode  # before reading: a launch that ended has written all it will
        text = output.read_text(errors="replace")
        found = _RECORD_LINE.search(text)
        if found:
            return Started(proc.pid, output, run_id=found[1], record_uri=found[2])
        if ended is not None:
            output.unlink(missing_ok=True)
            return Started(proc.pid, output, exit_code=ended, text=text)
        time.sleep(0.1)


def attach(record: Record, *, wait: bool, echo: Callable[[str], None]) -> Outcome:
    """Follow a local run from any process on the host where it runs: its log from the start,
    then live, until its launcher writes the end into the record. Reads only: the launcher
    alone writes the record, and nothing is signalled. Ctrl-C leaves the run running."""
    entry = _entry(record)
    reason = liveness.lost(record.store, entry)
    if reason:
        raise LaunchError(f"run {record.run_id} cannot be followed again: {reason}, and "
                          f"its training stopped with it; {liveness.cleanup_hint(entry)}")
    if record.status in TERMINAL:
        return outcome_from_record(record.manifest)
    beat = liveness.read(record.store, record.experiment, record.run_id) or {}
    host = beat.get("host") or record.manifest.get("host")
    if host != socket.gethostname():
        raise LaunchError(f"run {record.run_id} runs on {terminal_text(host, one_line=True)}: "
                          "its output is there; run `sagebook attach` there, or `sagebook "
                          "show` for its status")
    if not wait:
        return Outcome(status=record.status, from_record=True)
    offsets: dict[Path, int] = {}
    spool = _spool(record)
    try:
        while True:
            record.reload()
            ended = record.status in TERMINAL  # read before the log: its last lines are in
            _echo_new_lines(spool, offsets, echo)
            if ended:
                return outcome_from_record(record.manifest)
            reason = liveness.lost(record.store, entry)
            if reason:
                raise LaunchError(f"run {record.run_id} was lost while followed: {reason}; "
                                  f"{liveness.cleanup_hint(entry)}")
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        ref = f"{record.experiment}/{record.run_id}"
        echo(f"[sagebook] detached from run {record.run_id}, which runs on: `sagebook attach "
             f"{ref}` follows it again, `sagebook stop {ref}` stops it")
        return Outcome(status=record.status, detached=True, from_record=True)


def outcome_from_record(manifest: dict[str, Any]) -> Outcome:
    """How a run ended, as its launcher wrote it into the record."""
    return Outcome(status=manifest["status"], failure_reason=manifest.get("failure_reason"),
                   exit_code=manifest.get("exit_code"),
                   model_artifact=manifest.get("model_artifact"),
                   output_artifact=manifest.get("output_artifact"),
                   final_metrics=manifest.get("final_metrics") or {}, from_record=True)


def _entry(record: Record) -> dict[str, Any]:
    """The run as liveness reads it: named by where the record is, not by what it says."""
    return {"experiment": record.experiment, "run_id": record.run_id,
            "status": record.status}


def _spool(record: Record) -> Path | None:
    """Where the launcher writes the logs as they come: the record's folder, or (an S3 store)
    the run's local copy in its work folder on this machine, found as the launch names it
    (the `local_copy` a record states may be any path)."""
    local = record.local_path()
    if local is not None:
        return local
    try:
        return liveness.run_folder(record.experiment, record.run_id, record.uri) / "record"
    except DamagedFile:
        return None


def _echo_new_lines(spool: Path | None, offsets: dict[Path, int],
                    echo: Callable[[str], None]) -> None:
    """Echo the complete lines added to each host's log since the last call, as text that
    cannot drive the terminal; at most READ_BYTES of each log a call (a line longer than that
    comes in pieces), from regular files only (a FIFO planted among the logs would block)."""
    if spool is None:
        return
    logs = sorted((spool / "logs").glob("*.log"))
    for path in logs:
        data = _read_from(path, offsets.get(path, 0))
        if data is None:
            continue  # not there yet, or moved to the local copy: the next round reads it
        cut = data.rfind(b"\n") + 1 or (len(data) if len(data) >= READ_BYTES else 0)
        complete = data[:cut]
        offsets[path] = offsets.get(path, 0) + len(complete)
        prefix = f"[{path.stem}] " if len(logs) > 1 else ""
        for line in complete.decode("utf-8", errors="replace").splitlines():
            echo(terminal_text(prefix + line))


def _read_from(path: Path, offset: int) -> bytes | None:
    """Up to READ_BYTES of the regular file `path` from `offset`; None when it is not one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, READ_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
