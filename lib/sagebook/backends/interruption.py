"""A managed-spot interruption, rehearsed on this machine (`sagebook launch --interrupt-after`).

SageMaker interrupts a spot job the way it stops one: SIGTERM to the training, SIGKILL after the
grace period (120 s). Then, unlike a stop, the job goes on: new instances, a fresh container,
the checkpoint prefix copied back into the checkpoint folder, and the training started again
(`Interrupted`, then `Restarting`, in the secondary statuses). Whether the run lost its work
depends only on the training code: that it saved a checkpoint and reads it back. The local
backends do all of it once, at the time asked; the record keeps each attempt's log and says
whether the second attempt resumed (at which epoch) or started over, as its log shows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import parse_duration
from ..errors import ArgumentError, ConfigError
from .logs import STEP

if TYPE_CHECKING:
    from . import Backend, Job

INTERRUPTED = "Interrupted"  # SageMaker's secondary statuses of an interrupted spot job
RESTARTING = "Restarting"
TRAINING = "Training"
STARTED_OVER = "started over from the beginning"
# How much of a log is read for its resume message and first epoch: its start says it, and a
# log can be gigabytes long.
LINE_CHARACTERS = 1000
LINES = 10_000
# "resuming from checkpoint at epoch 3", "Resumed training at step 200"
_RESUME = re.compile(r"\bresum\w*\b.*?\b(?:epoch|step|iteration|iter)\b\s*(?:[=:]\s*)?(\d+)",
                     re.IGNORECASE)


def parse_after(text: str | None) -> float | None:
    """Seconds from `--interrupt-after` as durations are written in job configs (`30s`, `2m`,
    `90`); ArgumentError naming the flag otherwise."""
    if text is None:
        return None
    try:
        return float(parse_duration(text))
    except ValueError as exc:
        raise ArgumentError.one("--interrupt-after", None, str(exc)) from None


def check(job: Job, backend: Backend) -> None:
    """Refused before anything is written (part of `launch.plan`, so a dry run refuses it too):
    a backend that cannot interrupt its job, and a time the job's own limit comes before
    (nothing would be interrupted)."""
    after = job.interrupt_after
    if after is None:
        return
    cfg = job.config.job
    if not backend.rehearses_interruptions:
        raise ConfigError.one("--interrupt-after", "job.instance_type",
                              f"{cfg.instance_type} runs on SageMaker, which interrupts spot "
                              "jobs itself: rehearse with instance_type local or local-docker")
    runtime = (job.request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    if runtime is not None and after >= runtime:
        raise ConfigError.one("--interrupt-after", "job.max_runtime",
                              f"{after:g} s is not before max_runtime ({runtime} s): the job "
                              "would stop at its limit first, with nothing interrupted")


@dataclass
class Attempt:
    """One start of the training processes: its logs and what it started from."""

    number: int
    logs: dict[str, str]  # host: the record's name of its log
    restored_files: int | None  # checkpoint files restored at its start; None: no prefix
    exit_code: int | None = None
    interrupted: bool = False
    local_logs: dict[str, Path] = field(default_factory=dict)  # host: where its log was written

    def describe(self) -> dict[str, Any]:
        return {"attempt": self.number, "logs": self.logs, "restored_files": self.restored_files,
                "exit_code": self.exit_code, "interrupted": self.interrupted}


@dataclass
class Rehearsal:
    """The interruption of one job: when (seconds of training), and the attempts so far."""

    after: float
    attempts: list[Attempt] = field(default_factory=list)

    def log_name(self, host: str) -> str:
        """The record's name of a host's log in the next attempt: `logs/algo-1.log`, then
        `logs/algo-1.attempt-2.log`, as SageMaker starts a new log stream per attempt."""
        number = len(self.attempts) + 1
        return f"logs/{host}.log" if number == 1 else f"logs/{host}.attempt-{number}.log"

    def begin(self, logs: dict[str, str], restored_files: int | None) -> Attempt:
        """The next attempt, its hosts' logs named by `log_name`, starting now."""
        attempt = Attempt(len(self.attempts) + 1, logs, restored_files)
        self.attempts.append(attempt)
        return attempt

    def due(self, training_seconds: float) -> bool:
        """Time to interrupt: once, in the first attempt."""
        return len(self.attempts) == 1 and training_seconds >= self.after

    def describe(self) -> dict[str, Any]:
        """What the record keeps: the attempts, and whether the second one resumed (read from
        the first host's logs)."""
        entry: dict[str, Any] = {"after_seconds": self.after,
                                 "attempts": [a.describe() for a in self.attempts]}
        if len(self.attempts) < 2:
            entry["summary"] = (f"--interrupt-after {self.after:g} s: the run ended before "
                                "that time, nothing was interrupted")
            return entry
        first, second = self.attempts[0], self.attempts[1]
        host = next(iter(first.logs))
        entry.update(judge(_lines(first.local_logs.get(host)),
                           _lines(second.local_logs.get(host)), second.restored_files))
        entry["summary"] = (f"interrupted after {self.after:g} s (rehearsal); attempt 2 "
                            f"{entry['verdict']}")
        return entry


def judge(first: list[str], second: list[str], restored_files: int | None) -> dict[str, Any]:
    """Whether the second attempt resumed, from its log: a line saying it resumes at an epoch
    (or step), else its first epoch against the first attempt's; `resumed_from` is the last
    epoch done before it went on. Without either, the checkpoints restored tell what they can
    (`restored_files` None: the job has no checkpoint prefix)."""
    nothing = ("the job has no checkpoint_uri: nothing was restored" if restored_files is None
               else "no checkpoint had been saved to restore")
    for line in second:
        match = _RESUME.search(line)
        if match:
            epoch = int(match.group(1))
            return {"resumed": True, "resumed_from": epoch,
                    "verdict": f"resumed from epoch {epoch}",
                    "evidence": f"its log: {line[:200].strip()!r}"}
    began, again = _first_position(first), _first_position(second)
    if again is not None and began is not None:
        if again > began:
            return {"resumed": True, "resumed_from": again - 1,
                    "verdict": f"resumed from epoch {again - 1}",
                    "evidence": f"its log begins at epoch {again}, attempt 1's at {began}"}
        return {"resumed": False, "verdict": STARTED_OVER,
                "evidence": f"its log begins again at epoch {again}"
                            + ("" if restored_files else f"; {nothing}")}
    if not restored_files:
        return {"resumed": False, "verdict": STARTED_OVER, "evidence": nothing}
    return {"resumed": None, "verdict": "may have resumed: its log names no epoch or step",
            "evidence": f"{restored_files} checkpoint files were restored"}


def _first_position(lines: list[str]) -> int | None:
    for line in lines:
        match = STEP.search(line)
        if match:
            return int(match.group(1))
    return None


def _lines(path: Path | None) -> list[str]:
    """The first LINES lines of a log, a longer line in pieces of LINE_CHARACTERS; none when
    it is gone."""
    lines: list[str] = []
    if path is None:
        return lines
    try:
        with path.open(encoding="utf-8", errors="replace") as log:
            for line in iter(lambda: log.readline(LINE_CHARACTERS), ""):
                lines.append(line)
                if len(lines) == LINES:
                    break
    except OSError:
        pass
    return lines
