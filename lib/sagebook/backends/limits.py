"""SageMaker's time limits, kept on this machine: MaxRuntimeInSeconds and MaxWaitTimeInSeconds.

SageMaker ends a job at its limit as it ends a stopped one: SIGTERM to the training, SIGKILL
after the grace period, status Stopped with the secondary status `MaxRuntimeExceeded` (or
`MaxWaitTimeExceeded` for a spot job). MaxRuntime counts the time the training runs, over all
its attempts together; MaxWait counts everything since the job began, waits included. A local
run keeps both clocks the same way: `TimeLimits` is made once per job and each attempt (a
start of the training processes) adds its time to the runtime.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .contract import STOP_GRACE_SECONDS

# Tests stop runs faster than SageMaker would: the seconds between SIGTERM and SIGKILL, at most
# SageMaker's own grace.
GRACE_VARIABLE = "SAGEBOOK_STOP_GRACE_SECONDS"
RUNTIME_EXCEEDED = "MaxRuntimeExceeded"
WAIT_EXCEEDED = "MaxWaitTimeExceeded"


def stop_grace() -> float:
    """Seconds between SIGTERM and SIGKILL when a local run is stopped: SageMaker's 120, or
    what `SAGEBOOK_STOP_GRACE_SECONDS` says (0 to 120); ConfigError naming it otherwise."""
    text = os.environ.get(GRACE_VARIABLE)
    if text is None:
        return STOP_GRACE_SECONDS
    try:
        grace = float(text)
    except ValueError:
        grace = math.nan
    if not 0 <= grace <= STOP_GRACE_SECONDS:  # NaN fails both comparisons
        raise ConfigError.one("environment", GRACE_VARIABLE,
                              f"a number of seconds from 0 to {STOP_GRACE_SECONDS} "
                              f"(SageMaker's grace), got {text!r}")
    return grace


@dataclass
class TimeLimits:
    """The job's limits in seconds (None: none) and its clocks, read with `time.monotonic`."""

    runtime: float | None
    wait: float | None
    began: float = field(default_factory=time.monotonic)  # the job's start: MaxWait's clock
    used: float = 0.0  # training time of the attempts that ended
    attempt: float | None = None  # when the running attempt started
    reached: str | None = None  # the secondary status of the limit that stopped the job

    @classmethod
    def of(cls, request: dict[str, Any]) -> TimeLimits:
        """The limits of a CreateTrainingJob request, its clocks starting now."""
        stopping = request.get("StoppingCondition") or {}
        wait = stopping.get("MaxWaitTimeInSeconds") \
            if request.get("EnableManagedSpotTraining") else None
        return cls(runtime=stopping.get("MaxRuntimeInSeconds"), wait=wait)

    def begin_attempt(self) -> None:
        self.attempt = time.monotonic()

    def end_attempt(self) -> None:
        if self.attempt is not None:
            self.used += time.monotonic() - self.attempt
            self.attempt = None

    def runtime_used(self) -> float:
        """Training time so far, the running attempt's included."""
        running = time.monotonic() - self.attempt if self.attempt is not None else 0.0
        return self.used + running

    def exceeded(self) -> str | None:
        """The secondary status of a limit that has passed (kept in `reached`), or None."""
        if self.reached is None:
            if self.wait is not None and time.monotonic() - self.began >= self.wait:
                self.reached = WAIT_EXCEEDED
            elif self.runtime is not None and self.runtime_used() >= self.runtime:
                self.reached = RUNTIME_EXCEEDED
        return self.reached

    def describe(self) -> str:
        """What was reached, in the config's words: `max_runtime (8 s)`."""
        if self.reached == WAIT_EXCEEDED:
            return f"max_wait ({self.wait:g} s)"
        return f"max_runtime ({self.runtime:g} s)"
