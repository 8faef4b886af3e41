"""Waiting for child processes from the thread where Ctrl-C and SIGTERM arrive.

The CLI turns SIGTERM into KeyboardInterrupt (cli.py), raised in the main thread wherever it
runs. Raised inside `Popen.poll()` just after Popen has taken its internal wait lock (while the
main thread waits for the GIL held by a busy log reader), it leaves that lock held: every later
`poll()` says "running" and every `wait()` blocks for ever, so a stopped launch sent SIGKILL
after the grace period and then hung. So each child is waited for by a thread of its own,
which sets `returncode` as the child ends, and the main thread only reads `returncode`.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Sequence

POLL_SECONDS = 0.05


def reaped(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """`proc`, waited for from now on by a thread of its own (interrupts never reach it)."""
    threading.Thread(target=proc.wait, daemon=True, name=f"reaper {proc.pid}").start()
    return proc


def running(proc: subprocess.Popen[bytes]) -> bool:
    return proc.returncode is None


def wait_all(procs: Sequence[subprocess.Popen[bytes]], timeout: float | None = None) -> bool:
    """Wait until every one of `procs` (each `reaped`) has ended, or for `timeout` seconds;
    True when all have. An interrupt ends the wait and leaves nothing held."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while any(running(proc) for proc in procs):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True
