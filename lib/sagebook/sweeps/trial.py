"""One trial of a local sweep, in a process of its own: `python -m sagebook.sweeps.trial SPEC`.

A process per trial gives each trial its own CPU set and lets the sweep stop it the way
`sagebook launch` stops on Ctrl-C (SIGTERM here): the training process gets SIGTERM, then
SIGKILL after the grace period, and the record says Stopped. SPEC is a JSON file: the job
config, the overrides, what the manifest says about the sweep, and where to report the run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_with_the_sweep(parent: int) -> None:
    """A trial never outlives its sweep: when the sweep's process dies (a killed kernel, a
    SIGKILL), the trial stops as on Ctrl-C and its record says Stopped."""
    while os.getppid() == parent:
        time.sleep(1)
    # Our output went to the sweep through a pipe that nobody reads now: writing to it would
    # fail the stop half-way. The record keeps the log.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # first: the sweep may stop us at any moment
    signal.signal(signal.SIGINT, _interrupt)
    threading.Thread(target=_stop_with_the_sweep, args=(os.getppid(),), daemon=True).start()
    spec = json.loads(Path(argv[0]).read_text())
    if spec.get("cpus"):  # before the training process starts: it inherits the CPU set
        os.sched_setaffinity(0, spec["cpus"])
    result = Path(spec["result"])

    def report(**fields: Any) -> None:
        current = json.loads(result.read_text()) if result.exists() else {}
        tmp = result.with_suffix(".tmp")
        tmp.write_text(json.dumps({**current, **fields}))
        tmp.replace(result)

    # after the signal handlers: a stop during these imports (launch loads pydantic and the
    # backends, ~0.2 s) ends as a Stopped trial that reports, not as a silently dead one
    from ..errors import ConfigError, SagebookError
    from ..launch import launch

    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    try:
        run = launch(spec["config"], spec["overrides"], via=spec.get("via", "sweep"),
                     extra_manifest={"sweep": spec["sweep"]},
                     on_record=lambda r: report(run_id=r.run_id, record_uri=r.uri))
    except ConfigError as exc:
        report(status="Invalid", failure_reason=str(exc))
        print(f"sagebook: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except SagebookError as exc:
        report(status="Failed", failure_reason=str(exc))
        print(f"sagebook: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        report(status="Stopped")
        return 130
    report(status=run.outcome.status, final_metrics=run.outcome.final_metrics,
           failure_reason=run.outcome.failure_reason)
    return 0 if run.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
