"""A child process's wall time and its own peak memory, or a refusal to give a figure.

Why not `getrusage`: on Linux a process's `ru_maxrss` (and what `wait4` reports for it) is at
least the resident size of the memory it had *before* its `exec` — a copy of its parent's. A
13.5 MB child of a 600 MB benchmark runner reports 628 MB. Two figures can be trusted:

- `VmHWM` from `/proc/self/status`, read by the process itself: the peak of its own address
  space, reset at `exec` (`Peak.vmhwm`);
- what `wait4` reports for a child started from a *small* launcher (`measure`): the child's
  figure is the larger of its own peak and the launcher's size at the fork, so it is the
  child's own exactly when it exceeds the launcher's own peak (`VmHWM`), which the launcher
  reads and reports too. A figure at or below it could be the launcher's: `Peak.trusted` is
  then false and `run.py` prints a refusal instead of the number.

A process that starts children of its own reports the largest peak of its tree, not the sum.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Runs as `python -S -I -c LAUNCHER RESULT_FILE COMMAND…`: no site, no user paths, only built-in
# modules, so the launcher stays a few MB and the child's own figure exceeds it.
LAUNCHER = """
import os, sys, time
result, command = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(command[0], command)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open("/proc/self/status") as lines:
    own = next(int(line.split()[1]) for line in lines if line.startswith("VmHWM:"))
code = os.waitstatus_to_exitcode(status)
with open(result, "w") as out:
    out.write(f"{usage.ru_maxrss} {own} {seconds!r} {code}")
sys.exit(0 if code == 0 else 1)
"""


@dataclass(frozen=True)
class Peak:
    """A peak resident size in KB, with what it is known to be above.

    `floor_kb` is what the figure could be contaminated by (the launcher's own peak); the figure
    is the process's own only when it is strictly above it. `source` says how it was read.
    """

    kb: int
    floor_kb: int
    source: str

    @classmethod
    def vmhwm(cls, kb: int) -> Peak:
        """A figure the process read from its own `/proc/self/status` `VmHWM`."""
        return cls(kb, 0, "VmHWM")

    @property
    def mb(self) -> float:
        return self.kb / 1024

    @property
    def trusted(self) -> bool:
        return self.kb > self.floor_kb

    @property
    def doubt(self) -> str:
        """Why the figure cannot be trusted ('' when it can)."""
        if self.trusted:
            return ""
        return (f"{self.mb:.1f} MB ({self.source}) is not above {self.floor_kb / 1024:.1f} MB, "
                "the peak of the process that started it: it may be that one's")


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak: Peak
    returncode: int
    stdout: str
    stderr: str


def measure(command: list[str], env: dict[str, str] | None = None, *, check: bool = True,
            timeout: float | None = None, cwd: str | Path | None = None) -> Measured:
    """Run `command` from a small launcher; its wall time (from fork to exit, the launcher's
    own start excluded), its own peak memory and its output.

    With `check`, a failure raises with the end of its error output. On `timeout` the whole
    process group is killed (no orphan left on a shared machine) and TimeoutExpired raised.
    """
    with tempfile.NamedTemporaryFile("r", prefix="sagebook-peak-", suffix=".txt") as result:
        process = subprocess.Popen(
            [sys.executable, "-S", "-I", "-c", LAUNCHER, result.name, *command], env=env,
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        fields = result.read().split()
    if len(fields) != 4:
        raise RuntimeError(f"{' '.join(command)}: the launcher reported nothing:\n{stderr[-2000:]}")
    child_kb, launcher_kb, seconds, code = int(fields[0]), int(fields[1]), float(fields[2]), \
        int(fields[3])
    if check and code != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({code}):\n{stderr[-2000:]}")
    return Measured(seconds, Peak(child_kb, launcher_kb, "wait4 from a small launcher"), code,
                    stdout, stderr)
