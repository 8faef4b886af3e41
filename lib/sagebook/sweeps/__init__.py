"""Sweeps: one YAML block runs a grid or random search here, or a SageMaker tuning job.

    spec.py    the sweep block: parsing, validation against the configs, grid/random trials
    local.py   trials in parallel on this machine, each a run with its own record
    tuning.py  the CreateHyperParameterTuningJob request, and its training jobs as records
    record.py  the sweep's own record in the store
    trial.py   the process that runs one local trial

`plan()` validates everything before anything is written; `start()` runs a plan; `resume()`
runs what a sweep left unfinished.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import config as config_mod
from ..config import LaunchConfig
from ..errors import SagebookError
from ..stores import Store, open_store
from . import spec as spec_mod
from .record import SweepNotFound, SweepRecord, find_sweep, is_sweep_ref, new_sweep_id

__all__ = ["Plan", "plan", "start", "resume", "refresh", "format_sweep", "SweepRecord",
           "SweepNotFound", "find_sweep", "is_sweep_ref"]


@dataclass
class Plan:
    """A validated sweep over validated configs: what `start` runs and `--dry-run` prints."""

    spec: spec_mod.SweepFile
    cfg: LaunchConfig
    job_path: Path
    overrides: list[str]
    remote: bool
    trials: list[spec_mod.Trial] = field(default_factory=list)

    @property
    def sweep(self) -> spec_mod.Sweep:
        return self.spec.sweep

    def describe(self) -> str:
        """The trial table (grid, random) or the search space and its limits (SageMaker)."""
        sweep = self.sweep
        head = (f"sweep of {self.cfg.job.experiment}: {sweep.strategy}, "
                f"{sweep.objective.goal} {sweep.objective.metric}")
        if not self.remote:
            keys = list(sweep.parameters)
            rows = [["trial", *keys]] + [[str(t.index), *(_cell(t.parameters[k]) for k in keys)]
                                         for t in self.trials]
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            table = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                              .rstrip() for r in rows)
            return (f"{head}; {len(self.trials)} trials, {sweep.max_parallel} at a time on "
                    f"{self.cfg.job.instance_type}\n{table}")
        lines = [head, "search space:"]
        for key, parameter in sweep.parameters.items():
            if parameter.values is not None:
                lines.append(f"  {key}: one of {', '.join(_cell(v) for v in parameter.values)}")
            else:
                lines.append(f"  {key}: {parameter.kind} in [{parameter.min:g}, "
                             f"{parameter.max:g}], {parameter.scale} scale")
        lines.append("limits: " + ", ".join(
            f"{name} {value}" for name, value in (
                ("max_trials", sweep.max_trials), ("max_parallel", sweep.max_parallel),
                ("max_runtime", sweep.max_runtime), ("seed", sweep.seed),
                ("early_stopping", "median rule" if sweep.early_stopping else None),
                ("target", sweep.stop_when and sweep.stop_when.target),
                ("no_improvement", sweep.stop_when and sweep.stop_when.no_improvement),
            ) if value is not None))
        return "\n".join(lines)


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def plan(job_path: str | os.PathLike[str], sweep_path: str | os.PathLike[str] | None = None,
         overrides: Iterable[str] = (), *, text: str | None = None) -> Plan:
    """Read and check the sweep and the configs it varies; nothing is written. Raises
    ConfigError with every problem. `text`: the sweep file's content, as a form holds it."""
    overrides = list(overrides)
    path = Path(job_path).expanduser().resolve()
    spec = spec_mod.read(path, sweep_path, text)
    base = config_mod.load(path, overrides)
    remote = base.job.is_cloud
    cfg = spec_mod.check(spec, path, overrides, remote=remote)
    trials = [] if remote else spec_mod.trials(spec.sweep)
    return Plan(spec, cfg, path, overrides, remote, trials)


def start(plan: Plan, *, via: str = "cli", echo: Callable[[str], None] = print,
          wait: bool | None = None) -> SweepRecord:
    """Run the sweep: locally, its trials; on SageMaker, one tuning job. Returns its record."""
    job = plan.cfg.job
    store = open_store(job.experiments_uri or "experiments", **job.store_options())
    manifest: dict[str, Any] = {
        "strategy": plan.sweep.strategy,
        "objective": plan.sweep.objective.model_dump(),
        "parameters": list(plan.sweep.parameters),
        "instance_type": job.instance_type,
        "backend": "sagemaker" if plan.remote else "local",
        "launched_via": via,
        "config": {"job_file": str(plan.job_path), "sweep_file": str(plan.spec.path),
                   "overrides": plan.overrides},
        "max_parallel": plan.sweep.max_parallel,
    }
    if plan.remote:
        from . import tuning

        return tuning.start(plan, store, manifest, echo=echo, wait=wait)
    manifest["trials"] = [
        {"trial": t.index, "parameters": t.parameters, "overrides": t.overrides,
         "status": "Pending"} for t in plan.trials]
    manifest["pid"] = os.getpid()  # `--resume` must not run trials this process still runs
    record = _create(store, job.experiment, manifest, plan.spec.text)
    echo(f"[sweep] {record.sweep_id}: {len(plan.trials)} trials, {plan.sweep.max_parallel} at a "
         f"time; record at {record.uri}")
    with _ending(record):
        _record_digests(plan.job_path, plan.overrides, record.trials)
    _run(record, plan.sweep, plan.job_path, plan.overrides, record.trials, via, echo)
    return record


def resume(store: Store, ref: str, *, via: str = "cli", echo: Callable[[str], None] = print
           ) -> SweepRecord:
    """Run the trials of a local sweep that failed, were stopped or never ran. A trial whose
    config, code and data digests equal those of a completed run is linked to it instead."""
    record = find_sweep(store, ref)
    if record.manifest.get("backend") == "sagemaker":
        raise SagebookError(f"{record.sweep_id} is a SageMaker tuning job: it runs in SageMaker "
                            f"(`sagebook show {record.sweep_id}` refreshes its trials)")
    _refuse_if_running(record)
    sweep = spec_mod.Sweep.model_validate(_yaml(record.read_text("sweep.yaml")))
    config = record.manifest["config"]
    job_path, overrides = Path(config["job_file"]), list(config["overrides"])
    config_mod.load(job_path, overrides)  # the configs must still be valid
    todo = [t for t in record.trials
            if t.get("status") != "Completed" and not t.get("early_stopped")]
    if not todo:
        echo(f"[sweep] {record.sweep_id}: every trial has finished; nothing to resume")
        return record
    record.update(pid=os.getpid())
    with _ending(record):
        _record_digests(job_path, overrides, todo)
        finished = _finished_runs(record.store, record.experiment)
    todo_now = []
    for entry in todo:
        match = finished.get(_digest_key(entry.get("digests")))
        if match is not None:
            entry.update(status="Completed", run_id=match["run_id"], linked=True,
                         objective=(match.get("final_metrics") or {}).get(sweep.objective.metric))
            echo(f"[sweep] trial {entry['trial']}: same config, code and data as run "
                 f"{match['run_id']}: linked, not run again")
        else:
            if entry.get("run_id"):  # its earlier attempt stays findable, the new one is its run
                entry["earlier_runs"] = [*entry.get("earlier_runs", []), entry["run_id"]]
            for stale in ("run_id", "record_uri", "objective", "failure_reason", "ended"):
                entry.pop(stale, None)
            entry.update(status="Pending")
            todo_now.append(entry)
    record.update()
    echo(f"[sweep] resuming {record.sweep_id}: {len(todo_now)} trials to run")
    _run(record, sweep, job_path, overrides, todo_now, via, echo)
    return record


def _refuse_if_running(record: SweepRecord) -> None:
    """A sweep whose process still runs on this machine is not resumed under its feet."""
    import socket

    import psutil

    pid = record.manifest.get("pid")
    if (record.status in ("Starting", "InProgress") and isinstance(pid, int)
            and record.manifest.get("host") == socket.gethostname() and pid != os.getpid()
            and psutil.pid_exists(pid)):
        raise SagebookError(f"{record.sweep_id} is still running (process {pid} on this "
                            "machine): stop it with Ctrl-C there, then resume it")


def refresh(record: SweepRecord) -> SweepRecord:
    """A SageMaker sweep's trials as SageMaker has them now (each written as a record); a
    local sweep's record is always current."""
    if record.manifest.get("backend") == "sagemaker":
        from . import tuning

        tuning.sync(record)
    return record


def format_sweep(record: SweepRecord) -> str:
    """What `sagebook show SWEEP` prints: the best trial, counts by status, every trial."""
    m = record.manifest
    objective = m.get("objective") or {}
    metric = objective.get("metric", "")
    counts: dict[str, int] = {}
    for entry in record.trials:
        counts[entry.get("status", "")] = counts.get(entry.get("status", ""), 0) + 1
    lines = [
        f"sweep:    {record.sweep_id}",
        f"experiment: {record.experiment}",
        f"status:   {m.get('status')}",
        f"strategy: {m.get('strategy')}, {objective.get('goal')} {metric}, "
        f"{m.get('max_parallel')} at a time on {m.get('instance_type')}",
        f"trials:   {', '.join(f'{n} {s.lower()}' for s, n in sorted(counts.items())) or 'none'}",
    ]
    if m.get("spend_usd") is not None:
        priced = sum(1 for t in record.trials if t.get("cost") is not None)
        lines.append(f"spend:    ${m['spend_usd']:,.2f} ({priced} trials priced)")
    if m.get("tuning_job"):
        lines.append(f"tuning job: {m['tuning_job'].get('name')} "
                     f"({m['tuning_job'].get('status', '')})")
    best = record.best()
    if best is not None:
        lines.append(f"best:     trial {best['trial']} (run {best.get('run_id')}), "
                     f"{metric}={best['objective']:g}")
        lines.append("          " + ", ".join(f"{k}={_cell(v)}"
                                              for k, v in best["parameters"].items()))
    lines.append(f"record:   {record.uri}")
    keys = list(m.get("parameters") or [])
    rows = [["TRIAL", "RUN", "STATUS", metric.upper(), *keys]]
    for entry in record.trials:
        value = entry.get("objective")
        rows.append([str(entry["trial"]), entry.get("run_id") or "", entry.get("status", "")
                     + (" (early stop)" if entry.get("early_stopped") else "")
                     + (" (linked)" if entry.get("linked") else ""),
                     f"{value:.4g}" if isinstance(value, int | float) else "",
                     *(_cell(entry["parameters"].get(k, "")) for k in keys)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines.append("")
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return "\n".join(lines)


def _create(store: Store, experiment: str, manifest: dict[str, Any], text: str) -> SweepRecord:
    from ..stores import StoreExistsError

    for _ in range(3):
        try:
            record = SweepRecord.create(store, experiment, new_sweep_id(), manifest)
            break
        except StoreExistsError:
            continue
    else:
        raise StoreExistsError(f"no free sweep id in {store.url(experiment)}")
    record.put_text("sweep.yaml", text)
    return record


@contextlib.contextmanager
def _ending(record: SweepRecord) -> Iterator[None]:
    """Whatever stops the sweep in the block, its record says so (Stopped on Ctrl-C)."""
    try:
        yield
    except BaseException as exc:
        status = "Stopped" if isinstance(exc, KeyboardInterrupt) else "Failed"
        record.set_status(status, failure_reason=f"sagebook: {type(exc).__name__}: {exc}")
        raise


def _run(record: SweepRecord, sweep: spec_mod.Sweep, job_path: Path, overrides: list[str],
         todo: list[dict[str, Any]], via: str, echo: Callable[[str], None]) -> None:
    from .local import run_trials

    record.set_status("InProgress")
    with _ending(record):
        run_trials(record, sweep, job_path, overrides, todo, via=via, echo=echo)
    counts: dict[str, int] = {}
    for entry in record.trials:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    record.set_status("Completed", counts=counts)
    best = record.best()
    echo(f"[sweep] {record.sweep_id} done: "
         + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())))
    if best is not None:
        echo(f"[sweep] best: trial {best['trial']} (run {best.get('run_id')}), "
             f"{sweep.objective.metric}={best['objective']:g}, {best['parameters']}")
    echo(f"sweep: {record.uri}")


# --------------------------------------------------------------------------------------------
# Digests: which trials would run exactly what a finished run ran


def _record_digests(job_path: Path, overrides: list[str], entries: list[dict[str, Any]]) -> None:
    """Config, code and data digests of each trial, kept in its sweep entry (and manifest)."""
    from ..backends.uploads import pack_code, plan_data, save_digest_cache

    code: dict[str, str] = {}
    data: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="sagebook-digest-") as scratch:
        for entry in entries:
            cfg = config_mod.load(job_path, [*overrides, *entry["overrides"]])
            source = cfg.job.source_dir
            if source not in code:
                code[source] = pack_code(Path(source), Path(scratch) / "code.tar.gz")[:32]
            channels = {}
            for name, channel in sorted(cfg.job.channels.items()):
                if channel.uri.startswith("s3://"):
                    channels[name] = channel.uri
                    continue
                if channel.uri not in data:
                    data[channel.uri] = plan_data(name, Path(channel.uri), "").digest
                channels[name] = data[channel.uri]
            entry["digests"] = {"config": cfg.digest(), "code": code[source], "data": channels}
    save_digest_cache()


def _digest_key(digests: dict[str, Any] | None) -> str | None:
    return json.dumps(digests, sort_keys=True) if digests else None


def _finished_runs(store: Store, experiment: str) -> dict[str | None, dict[str, Any]]:
    """Completed runs of the experiment by their digests (only runs that recorded them)."""
    from .. import index
    from ..record import Record

    found: dict[str | None, dict[str, Any]] = {}
    for entry in index.entries(store, experiment):
        if entry.get("status") != "Completed" or not entry.get("sweep"):
            continue
        manifest = Record.open(store, experiment, entry["run_id"]).manifest
        key = _digest_key((manifest.get("sweep") or {}).get("digests"))
        if key is not None:
            found.setdefault(key, entry)
    return found


def _yaml(text: str) -> Any:
    from ..inputs import parse_yaml_text

    return parse_yaml_text(text, "sweep.yaml")  # within bounds, as every file sagebook parses
