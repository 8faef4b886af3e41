"""Sweeps on this machine: trials in parallel, each a full run and record.

Each trial is a `sagebook.sweeps.trial` process (which runs `launch()`), at most `max_parallel`
at once, each pinned to its own share of the CPUs (the training process inherits the pinning,
so two trials never fight over one core) and given its own GPUs (CUDA_VISIBLE_DEVICES). Ctrl-C
(or SIGTERM) stops every running trial as `sagebook launch` stops a run — SIGTERM to the
training code, SIGKILL after the grace period — waits for their records to say Stopped, and
leaves trials that never started to a later `sagebook sweep --resume`.

Early stopping follows the median rule: a trial whose objective at a step is worse than the
median of the other trials' values at that step (once `min_trials` have reached it) is stopped.
A bayesian or hyperband sweep takes its trials from an `AdaptiveSearch` as slots free up, tells
it each trial's end, and (hyperband) stops the trials its pruner drops, read the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends import children
from ..backends.local import cpu_slots
from ..record import now
from .adaptive import AdaptiveSearch
from .record import SweepRecord
from .spec import Sweep

POLL_SECONDS = 0.2


@dataclass
class _Running:
    index: int
    proc: subprocess.Popen[bytes]
    slot: int
    result: Path
    reader: threading.Thread
    run_id: str | None = None
    early_stopped: bool = False
    stop_sent: bool = False


def gpu_slots(parallel: int) -> list[list[str]]:
    """GPUs for `parallel` trials, dealt out as the CPUs are: the devices CUDA_VISIBLE_DEVICES
    names, else those `nvidia-smi -L` lists, else none (each trial then sees what we see)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = [d.strip() for d in visible.split(",") if d.strip()]
    elif shutil.which("nvidia-smi"):
        try:
            listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                     timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            listing = ""
        devices = [str(i) for i, line in enumerate(listing.splitlines())
                   if line.startswith("GPU ")]
    else:
        devices = []
    if not devices:
        return [[] for _ in range(parallel)]
    if parallel <= len(devices):
        return [devices[slot::parallel] for slot in range(parallel)]
    return [[devices[slot % len(devices)]] for slot in range(parallel)]


def run_trials(record: SweepRecord, sweep: Sweep, job_path: Path, overrides: list[str],
               todo: list[dict[str, Any]], *, search: AdaptiveSearch | None = None,
               via: str = "sweep", echo: Callable[[str], None] = print) -> None:
    """Run the trials in `todo` (entries of the sweep record), then those `search` proposes
    while its budget lasts, updating the record as each starts and ends. Raises
    KeyboardInterrupt once every running trial has stopped."""
    slots = cpu_slots(sweep.max_parallel)
    gpus = gpu_slots(sweep.max_parallel)
    free = list(range(len(slots)))
    pending = list(todo)
    running: dict[int, _Running] = {}
    scratch = Path(tempfile.mkdtemp(prefix="sagebook-sweep-"))
    lock = threading.Lock()
    stop_launching = False
    try:
        while pending or running or (search and search.more() and not stop_launching):
            while free and not stop_launching and (pending or (search and search.more())):
                entry = pending.pop(0) if pending else None
                if search is not None:
                    if entry is None:
                        entry = search.propose()
                        record.update()
                    else:
                        search.adopt(entry)
                assert entry is not None
                slot = free.pop(0)
                running[entry["trial"]] = _start(record, entry, job_path, overrides, slots[slot],
                                                 gpus[slot], slot, scratch, via, echo, lock)
            time.sleep(POLL_SECONDS)
            for index, trial in list(running.items()):
                if children.running(trial.proc):
                    if sweep.early_stopping is not None and not trial.stop_sent:
                        _median_rule(record, sweep, trial, running)
                    if search is not None and search.prunes and not trial.stop_sent:
                        _pruner_rule(record, sweep, trial, search)
                    continue
                del running[index]
                free.append(trial.slot)
                trial.reader.join(timeout=5)
                _finish(record, sweep, trial, echo, search)
                if _done_early(record, sweep):
                    stop_launching = True
            if stop_launching and (pending or (search and search.more())):
                echo("[sweep] stop_when met: "
                     + (f"{len(pending)} trials not started" if pending else
                        "no more trials proposed"))
                pending.clear()
    except BaseException:
        _stop_all(running, echo)
        for trial in running.values():
            trial.reader.join(timeout=5)
            _finish(record, sweep, trial, echo, search)
        raise
    finally:
        for path in scratch.glob("*"):
            path.unlink()
        scratch.rmdir()


def _start(record: SweepRecord, entry: dict[str, Any], job_path: Path, overrides: list[str],
           cpus: list[int], gpus: list[str], slot: int, scratch: Path, via: str,
           echo: Callable[[str], None], lock: threading.Lock) -> _Running:
    index = entry["trial"]
    result = scratch / f"trial-{index}.json"
    spec = {
        "config": str(job_path),
        "overrides": [*overrides, *entry["overrides"]],
        "via": via,
        "result": str(result),
        "cpus": cpus,
        "sweep": {"id": record.sweep_id, "trial": index, "parameters": entry["parameters"],
                  "record": record.uri, "digests": entry.get("digests")},
    }
    spec_path = scratch / f"trial-{index}.spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": ",".join(gpus)} if gpus else {})}
    # Its own session: a terminal's Ctrl-C reaches the sweep, which stops each trial itself.
    proc = children.reaped(subprocess.Popen(
        [sys.executable, "-m", "sagebook.sweeps.trial", str(spec_path)], env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True))
    reader = threading.Thread(target=_pump, args=(proc, f"[trial {index}] ", echo, lock),
                              daemon=True)
    reader.start()
    entry.update(status="InProgress", cpus=cpus, **({"gpus": gpus} if gpus else {}))
    record.update()
    return _Running(index, proc, slot, result, reader)


def _pump(proc: subprocess.Popen[bytes], prefix: str, echo: Callable[[str], None],
          lock: threading.Lock) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        with lock:
            echo(prefix + raw.decode("utf-8", errors="replace").rstrip("\n"))


def _result(trial: _Running) -> dict[str, Any]:
    try:
        return json.loads(trial.result.read_text())
    except (OSError, ValueError):
        return {}


def _finish(record: SweepRecord, sweep: Sweep, trial: _Running, echo: Callable[[str], None],
            search: AdaptiveSearch | None = None) -> None:
    children.wait_all([trial.proc])
    result = _result(trial)
    entry = record.trial(trial.index)
    status = result.get("status") or ("Failed" if trial.proc.returncode else "Completed")
    metrics = result.get("final_metrics") or {}
    if result.get("run_id"):
        entry["run_id"] = result["run_id"]
        entry["record_uri"] = result.get("record_uri")
    entry.update(status=status, objective=metrics.get(sweep.objective.metric), ended=now())
    entry.pop("cpus", None)
    entry.pop("gpus", None)
    if result.get("failure_reason"):
        entry["failure_reason"] = str(result["failure_reason"])[:300]
    if trial.early_stopped:
        entry["early_stopped"] = True
    if search is not None:
        search.tell(entry)
    record.update(best=_best_summary(record))
    shown = entry.get("objective")
    echo(f"[sweep] trial {trial.index} {status.lower()}"
         + (f": {sweep.objective.metric}={shown:g}" if isinstance(shown, int | float) else "")
         + (" (early stop)" if trial.early_stopped else ""))


def _best_summary(record: SweepRecord) -> dict[str, Any] | None:
    best = record.best()
    if best is None:
        return None
    return {"trial": best["trial"], "run_id": best.get("run_id"), "objective": best["objective"],
            "parameters": best["parameters"]}


def _stop_all(running: dict[int, _Running], echo: Callable[[str], None]) -> None:
    """SIGTERM every trial (each stops its training process and records Stopped); a second
    Ctrl-C while waiting sends SIGTERM again, which kills the training processes now."""
    if not running:
        return
    echo(f"[sweep] stopping {len(running)} running trials")
    for trial in running.values():
        _signal(trial.proc, signal.SIGTERM)
    while True:
        try:
            children.wait_all([trial.proc for trial in running.values()])
            break
        except KeyboardInterrupt:
            for trial in running.values():
                _signal(trial.proc, signal.SIGTERM)


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------------------------
# Early stopping and completion criteria


def _median_rule(record: SweepRecord, sweep: Sweep, trial: _Running,
                 running: dict[int, _Running]) -> None:
    """Stop `trial` when its latest objective value is worse than the median of the other
    trials' values at the same step."""
    rule = sweep.early_stopping
    assert rule is not None
    if trial.run_id is None:
        trial.run_id = _result(trial).get("run_id")
    mine = _objective_series(record, trial.run_id, sweep.objective.metric)
    if len(mine) < rule.min_steps:
        return
    step = len(mine) - 1
    run_ids = [t.get("run_id") for t in record.trials if t["trial"] != trial.index]
    run_ids += [r.run_id for r in running.values() if r is not trial]
    others = [series[step] for series in
              (_objective_series(record, run_id, sweep.objective.metric) for run_id in run_ids)
              if len(series) > step]
    if len(others) < rule.min_trials:
        return
    median = statistics.median(others)
    worse = mine[step] < median if sweep.objective.goal == "maximize" else mine[step] > median
    if worse:
        _stop_early(trial)


def _pruner_rule(record: SweepRecord, sweep: Sweep, trial: _Running,
                 search: AdaptiveSearch) -> None:
    """Stop `trial` when the search's pruner drops it, given its objective so far by epoch."""
    if trial.run_id is None:
        trial.run_id = _result(trial).get("run_id")
    if search.observe(trial.index, _objective_series(record, trial.run_id,
                                                     sweep.objective.metric)):
        _stop_early(trial)


def _stop_early(trial: _Running) -> None:
    """Stop the trial as Ctrl-C stops a launch; its sweep entry will say early_stopped."""
    trial.early_stopped = trial.stop_sent = True
    _signal(trial.proc, signal.SIGTERM)


def _objective_series(record: SweepRecord, run_id: str | None, metric: str) -> list[float]:
    """The objective's values by step, from a run's metrics.jsonl (in a local store, the
    record's own file, written live)."""
    root = record.store.local_path()
    if not run_id or root is None:
        return []
    values = []
    try:
        text = (root / record.experiment / run_id / "metrics.jsonl").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        try:
            point = json.loads(line)
            if point.get("name") == metric:
                values.append(float(point["value"]))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line while the run writes
    return values


def _done_early(record: SweepRecord, sweep: Sweep) -> bool:
    stop = sweep.stop_when
    if stop is None:
        return False
    finished = [t for t in record.trials if t.get("status") == "Completed"
                and isinstance(t.get("objective"), int | float)]
    if not finished:
        return False
    maximize = sweep.objective.goal == "maximize"
    best = record.best()
    assert best is not None
    if stop.target is not None and (
            best["objective"] >= stop.target if maximize else best["objective"] <= stop.target):
        return True
    if stop.no_improvement:
        order = sorted(finished, key=lambda t: t.get("ended") or "")
        since_best = len(order) - 1 - order.index(best)
        return since_best >= stop.no_improvement
    return False
