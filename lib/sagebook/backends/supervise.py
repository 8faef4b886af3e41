"""Run a local training command so that it does not outlive the process that launched it.

    python supervise.py GRACE_SECONDS [--cpus 0,2] COMMAND...

The training runs in its own session (a terminal's Ctrl-C is the launcher's to handle), so
nothing would end it if the launcher died (SIGKILL, an OOM kill, a closed laptop): it would
train on unseen, its record saying InProgress for ever. This small process sits between the
two: the kernel sends it SIGTERM when the launcher dies (Linux `PR_SET_PDEATHSIG`), and it
then stops the training as StopTrainingJob does (SIGTERM, SIGKILL after the grace period).
It ends as its child ended (same exit code, or killed by the same signal), so the launcher
sees the training's own outcome. With `--cpus` it pins itself to those CPUs before starting the
training, which inherits the pinning (a host of a several-host job, on its share of the CPUs).
Run as a file, not a module: it imports nothing of sagebook.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading

PR_SET_PDEATHSIG = 1


def main(grace: float, command: list[str], cpus: list[int]) -> None:
    launcher = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the launcher's own stop still ends the process group
    if os.getppid() != launcher:  # it died before the request took effect
        sys.exit(143)
    if cpus:
        os.sched_setaffinity(0, cpus)
    child = subprocess.Popen(command)  # same process group: the launcher's stop reaches both

    def on_term(signum: int, frame: object) -> None:
        if os.getppid() == launcher:
            return  # the launcher signalled the whole group: the training has it already
        child.send_signal(signal.SIGTERM)  # the launcher is gone: stop it as SageMaker would
        threading.Timer(grace, _kill, (child,)).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            code = child.wait()
            break
        except InterruptedError:
            continue
    if code < 0:  # die of the same signal, so the launcher reads the training's own ending
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


def _kill(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.kill()


if __name__ == "__main__":
    grace, args = float(sys.argv[1]), sys.argv[2:]
    cpus = [int(cpu) for cpu in args[1].split(",")] if args[:1] == ["--cpus"] else []
    main(grace, args[2:] if cpus else args, cpus)
