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
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LaunchError
from ..record import TERMINAL, Record
from . import Outcome, liveness

# what `launch` prints once the record exists (launch.py)
_RECORD_LINE = re.compile(r"^\[sagebook\] run (\S+): record at (\S+)$", re.MULTILINE)
POLL_SECONDS = 0.2


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
        proc = subprocess.Popen([sys.executable, "-m", "sagebook.cli", "launch", *arguments],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    output = Path(name)
    while True:
        ended = proc.poll()  # before reading: a launch that ended has written all it will
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
    alone writes the record. Ctrl-C leaves the run running."""
    entry = _entry(record)
    reason = liveness.lost(record.store, entry)
    if reason:
        raise LaunchError(f"run {record.run_id} cannot be followed again: {reason}, and "
                          f"its training stopped with it; {liveness.cleanup_hint(entry)}")
    if record.status in TERMINAL:
        return recorded(record.manifest)
    beat = liveness.read(record.store, record.experiment, record.run_id) or {}
    host = beat.get("host") or record.manifest.get("host")
    if host != socket.gethostname():
        raise LaunchError(f"run {record.run_id} runs on {host}: its output is there; run "
                          "`sagebook attach` there, or `sagebook show` for its status")
    if not wait:
        return Outcome(status=record.status, recorded=True)
    offsets: dict[Path, int] = {}
    try:
        while True:
            record.reload()
            ended = record.status in TERMINAL  # read before the log: its last lines are in
            _echo_new_lines(_spool(record), offsets, echo)
            if ended:
                return recorded(record.manifest)
            reason = liveness.lost(record.store, _entry(record))
            if reason:
                raise LaunchError(f"run {record.run_id} was lost while followed: {reason}; "
                                  f"{liveness.cleanup_hint(_entry(record))}")
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        ref = f"{record.experiment}/{record.run_id}"
        echo(f"[sagebook] detached from run {record.run_id}, which runs on: `sagebook attach "
             f"{ref}` follows it again, `sagebook stop {ref}` stops it")
        return Outcome(status=record.status, detached=True, recorded=True)


def recorded(manifest: dict[str, Any]) -> Outcome:
    """How a run ended, as its launcher wrote it into the record."""
    return Outcome(status=manifest["status"], failure_reason=manifest.get("failure_reason"),
                   exit_code=manifest.get("exit_code"),
                   model_artifact=manifest.get("model_artifact"),
                   output_artifact=manifest.get("output_artifact"),
                   final_metrics=manifest.get("final_metrics") or {}, recorded=True)


def _entry(record: Record) -> dict[str, Any]:
    from ..index import summarize

    return summarize(record.manifest)


def _spool(record: Record) -> Path | None:
    """Where the launcher writes the logs as they come: the record's folder, or (an S3 store)
    the run's local copy."""
    copy = record.manifest.get("local_copy")
    return record.local_path() or (Path(copy) if copy else None)


def _echo_new_lines(spool: Path | None, offsets: dict[Path, int],
                    echo: Callable[[str], None]) -> None:
    """Echo the complete lines added to each host's log since the last call."""
    if spool is None:
        return
    logs = sorted((spool / "logs").glob("*.log"))
    for path in logs:
        try:
            with path.open("rb") as log:
                log.seek(offsets.get(path, 0))
                data = log.read()
        except OSError:
            continue  # not there yet, or moved to the local copy: the next round reads it
        complete = data[: data.rfind(b"\n") + 1]
        offsets[path] = offsets.get(path, 0) + len(complete)
        prefix = f"[{path.stem}] " if len(logs) > 1 else ""
        for line in complete.decode("utf-8", errors="replace").splitlines():
            echo(prefix + line)
