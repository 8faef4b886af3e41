"""Starting, resuming and refreshing a sweep (orchestration): `plan()` validates everything
before anything is written; `start()` runs a plan; `resume()` runs what a sweep left
unfinished, and first rebuilds a damaged sweep.json from its sweep.yaml and its trials' own run
records (each names its sweep, trial and configs); `refresh()` brings a SageMaker sweep's new
trials in as records; `format_sweep()` is its terminal summary.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import config as config_mod
from .. import index
from ..backends.uploads import pack_code, plan_data, save_digest_cache
from ..errors import SagebookError
from ..inputs import DamagedFile, checked_name, parse_yaml_text
from ..printing import cell_text, terminal_text
from ..record import TERMINAL, now, read_manifest, user
from ..stores import Store, StoreExistsError, open_store
from . import spec as spec_mod
from . import tuning
from .adaptive import AdaptiveSearch
from .local import run_trials
from .planning import SweepPlan
from .record import (
    MAX_DEPTH,
    ROOT,
    DamagedSweep,
    SweepRecord,
    check_manifest,
    depth,
    find_sweep,
    new_sweep_id,
)

MAX_REBUILT_TRIALS = 100_000  # trials `--resume` rebuilds from a sweep.yaml read from a store



def plan(job_path: str | os.PathLike[str], sweep_path: str | os.PathLike[str] | None = None,
         overrides: Iterable[str] = (), *, text: str | None = None) -> SweepPlan:
    """Read and check the sweep and the configs it varies; nothing is written. Raises
    ConfigError with every problem. `text`: the sweep file's content, as a form holds it."""
    overrides = list(overrides)
    path = Path(job_path).expanduser().resolve()
    spec = spec_mod.read(path, sweep_path, text)
    base = config_mod.load(path, overrides)
    remote = base.job.is_cloud
    cfg = spec_mod.check(spec, path, overrides, remote=remote)
    if remote:  # checked when its request is built, with the image and uploads it names
        return SweepPlan(spec, cfg, path, overrides, remote)
    listed = [] if spec.sweep.strategy in spec_mod.ADAPTIVE else spec_mod.trials(spec.sweep)
    checked = SweepPlan(spec, cfg, path, overrides, remote, listed)
    tuning.rehearse(checked)  # a local sweep meets the limits the tuning job it rehearses would
    return checked


def start(plan: SweepPlan, *, via: str = "cli", echo: Callable[[str], None] = print,
          wait: bool | None = None) -> SweepRecord:
    """Run the sweep: locally, its trials; on SageMaker, one tuning job. Returns its record."""
    job = plan.config.job
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
        return tuning.start(plan, store, manifest, echo=echo, wait=wait)
    manifest["trials"] = [
        {"trial": t.index, "parameters": t.parameters, "overrides": t.overrides,
         "status": "Pending"} for t in plan.trials]
    manifest["pid"] = os.getpid()  # `--resume` must not run trials this process still runs
    record = _create(store, job.experiment, manifest, plan.spec.text)
    count = (f"up to {plan.sweep.max_trials} trials chosen by Optuna as results come in"
             if plan.sweep.strategy in spec_mod.ADAPTIVE else f"{len(plan.trials)} trials")
    echo(f"[sweep] {record.sweep_id}: {count}, {plan.sweep.max_parallel} at a time; record at "
         f"{record.uri}")
    with _ending(record, echo):
        _record_digests(plan.job_path, plan.overrides, record.trials)
    _run(record, plan.sweep, plan.job_path, plan.overrides, record.trials, via, echo)
    return record


def resume(store: Store, ref: str, *, via: str = "cli", echo: Callable[[str], None] = print
           ) -> SweepRecord:
    """Run the trials of a local sweep that failed, were stopped or never ran. A trial whose
    config, code and data digests equal those of a completed run is linked to it instead.
    A sweep.json that cannot be read is rebuilt first (see `_rebuild`)."""
    rebuilt: DamagedSweep | None = None
    try:
        record = find_sweep(store, ref)
    except DamagedSweep as damage:
        record, rebuilt = _rebuild(store, damage), damage
    if record.manifest.get("backend") == "sagemaker":
        raise SagebookError(f"{record.sweep_id} is a SageMaker tuning job: it runs in SageMaker "
                            f"(`sagebook show {record.sweep_id}` refreshes its trials)")
    _refuse_unless_started_here(record)
    _refuse_if_running(record)
    sweep = _sweep_block(store, record.experiment, record.sweep_id)
    config = record.manifest["config"]
    job_path, overrides = Path(config["job_file"]), list(config["overrides"])
    config_mod.load(job_path, overrides)  # the configs must still be valid
    if rebuilt is not None:
        record.update()
        echo(f"[sweep] {rebuilt.where} was damaged ({rebuilt.reason}): rebuilt from its "
             f"sweep.yaml and the run records of {sum(1 for t in record.trials if 'run_id' in t)}"
             f" of its {len(record.trials)} trials")
    todo = [t for t in record.trials
            if t.get("status") != "Completed" and not t.get("early_stopped")]
    unproposed = (sweep.max_trials or 0) - len(record.trials) \
        if sweep.strategy in spec_mod.ADAPTIVE else 0
    if not todo and unproposed <= 0:
        echo(f"[sweep] {record.sweep_id}: every trial has finished; nothing to resume")
        return record
    record.update(pid=os.getpid())
    with _ending(record, echo):
        _record_digests(job_path, overrides, todo)
        finished = _finished_runs(record.store, record.experiment)
    todo_now = []
    for entry in todo:
        match = finished.get(_digest_key(entry.get("digests")))
        if match is not None:
            entry.update(status="Completed", run_id=match["run_id"], linked=True,
                         objective=_objective(match, sweep.objective.metric))
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
    echo(f"[sweep] resuming {record.sweep_id}: {len(todo_now)} trials to run"
         + (f", then up to {unproposed} new ones" if unproposed > 0 else ""))
    _run(record, sweep, job_path, overrides, todo_now, via, echo)
    return record


def _sweep_block(store: Store, experiment: str, sweep_id: str) -> spec_mod.Sweep:
    """The sweep block a sweep ran, from its sweep.yaml; DamagedFile when it is not one."""
    key = f"{ROOT}/{experiment}/{sweep_id}/sweep.yaml"
    where = store.url(key)
    try:
        text = store.read_bytes(key).decode("utf-8")
    except FileNotFoundError:
        raise DamagedFile(where, "missing") from None
    except UnicodeDecodeError as exc:
        raise DamagedFile(where, f"not UTF-8 text (byte {exc.start})") from None
    try:
        return spec_mod.Sweep.model_validate(parse_yaml_text(text, where))
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        key_path = ".".join(str(part) for part in error["loc"])
        raise DamagedFile(where, f"not a sweep block: {key_path or 'sweep'}: {error['msg']}"
                          ) from None


def _rebuild(store: Store, damage: DamagedSweep) -> SweepRecord:
    """A local sweep's record made again from what else there is: its sweep.yaml (strategy,
    objective, the trials of a grid or seeded random search) and the run records of its trials
    (each names the sweep, its trial, parameters and configs); `resume` writes it over the
    damaged sweep.json. SagebookError, in one line, when there is not enough to rebuild from."""
    experiment, sweep_id = damage.experiment, damage.sweep_id
    refuse = f"cannot resume {sweep_id}: {damage.where} is damaged ({damage.reason})"
    try:
        sweep = _sweep_block(store, experiment, sweep_id)
    except DamagedFile as exc:
        raise SagebookError(f"{refuse}, and so is {exc.where} ({exc.reason}): start the sweep "
                            "again") from None
    if sweep.strategy in spec_mod.ADAPTIVE:
        raise SagebookError(f"{refuse}: a {sweep.strategy} sweep chooses its trials as results "
                            "come in, and only its sweep.json says which; restore it from a "
                            "backup (`sagebook list` still lists its trials)")
    planned = _planned_trials(sweep, refuse)
    runs = _trial_runs(store, experiment, sweep_id, sweep, len(planned))
    if not runs:
        raise SagebookError(f"{refuse}, and none of its trials has a run record that names the "
                            "configs it ran: start the sweep again")
    busy = [m for m in runs if m["status"] not in TERMINAL]
    if busy:
        raise SagebookError(f"{refuse}; trial {busy[0]['sweep']['trial']} (run "
                            f"{busy[0]['run_id']}) is still {busy[0]['status']}: wait for it, "
                            "or stop it with `sagebook stop`, then resume")
    latest = runs[-1]
    trials = []
    for trial in planned:
        ran = [m for m in runs if m["sweep"]["trial"] == trial.index]
        entry: dict[str, Any] = {"trial": trial.index, "parameters": trial.parameters,
                                 "overrides": trial.overrides, "status": "Pending"}
        if ran:
            last = ran[-1]
            # the parameters it ran with (an unseeded random search draws others each time)
            parameters = last["sweep"]["parameters"]
            entry.update(parameters=parameters, status=last["status"], run_id=last["run_id"],
                         overrides=[spec_mod.override(k, v) for k, v in parameters.items()],
                         objective=_objective(last, sweep.objective.metric))
            if len(ran) > 1:
                entry["earlier_runs"] = [m["run_id"] for m in ran[:-1]]
        trials.append(entry)
    own = len(trials[0]["overrides"]) if trials else 0
    manifest = {
        "schema": 1, "sweep_id": sweep_id, "experiment": experiment, "status": "Stopped",
        "status_history": [{"status": "Stopped", "time": now()}], "created": runs[0]["created"],
        # who ran its trials, where: only they may resume it (see _refuse_unless_started_here)
        "user": _text(latest.get("user")), "host": _text(latest.get("host")),
        "rebuilt": now(), "strategy": sweep.strategy,
        "objective": sweep.objective.model_dump(), "parameters": list(sweep.parameters),
        "instance_type": _text(latest.get("instance_type")), "backend": "local",
        "launched_via": "rebuilt", "max_parallel": sweep.max_parallel, "trials": trials,
        "config": {"job_file": latest["config"]["job_file"], "sweep_file": None,
                   "overrides": latest["config"]["overrides"][:-own or None]},
        "record_uri": store.url(f"{ROOT}/{experiment}/{sweep_id}"),
    }
    try:
        return SweepRecord(store, experiment, sweep_id,
                           check_manifest(manifest, damage.where, experiment, sweep_id))
    except DamagedFile as exc:
        raise SagebookError(f"{refuse}, and its trials' records do not rebuild it "
                            f"({exc.reason}): start the sweep again") from None


def _planned_trials(sweep: spec_mod.Sweep, refuse: str) -> list[spec_mod.Trial]:
    """The trials of a sweep block read from a store, when it lists a number of them a
    machine can hold; else SagebookError starting with `refuse`."""
    if sweep.strategy == "random":
        count = sweep.max_trials
    else:
        count = math.prod(len(p.values or ()) for p in sweep.parameters.values())
    if count is None or count > MAX_REBUILT_TRIALS:
        raise SagebookError(f"{refuse}, and its sweep.yaml lists {count or 'no number of'} "
                            f"trials (at most {MAX_REBUILT_TRIALS:,} are rebuilt): start the "
                            "sweep again")
    return spec_mod.trials(sweep)


def _trial_runs(store: Store, experiment: str, sweep_id: str, sweep: spec_mod.Sweep,
                count: int) -> list[dict[str, Any]]:
    """The manifests of the runs that name themselves trials of the sweep, oldest first: those
    whose sweep entry (trial, parameters the sweep searches, within its values or ranges) and
    configs (job file, overrides ending with the trial's own) can be read; any other is
    passed over, as it says nothing to rebuild from."""
    found = []
    for entry in index.entries(store, experiment):
        if entry.get("sweep") != sweep_id:
            continue
        try:
            run_id = checked_name("run id", entry.get("run_id"), store.url(experiment))
            manifest = read_manifest(store, experiment, run_id)
        except (DamagedFile, FileNotFoundError):
            continue
        mine, config = manifest.get("sweep"), manifest.get("config")
        if not (isinstance(mine, dict) and isinstance(config, dict)
                and mine.get("id") == sweep_id and type(mine.get("trial")) is int
                and 0 <= mine["trial"] < count and _searched(sweep, mine.get("parameters"))
                and isinstance(config.get("job_file"), str)
                and isinstance(config.get("overrides"), list)
                and all(isinstance(o, str) for o in config["overrides"])
                and isinstance(manifest.get("created"), str)):
            continue
        own = [spec_mod.override(k, v) for k, v in mine["parameters"].items()]
        if own and config["overrides"][-len(own):] != own:
            continue
        found.append({**manifest, "run_id": run_id})
    return sorted(found, key=lambda m: m["created"])


def _searched(sweep: spec_mod.Sweep, parameters: Any) -> bool:
    """Whether `parameters` (a run's record says it was a trial with them) is a point of the
    sweep: its keys, each value one of its values or within its range."""
    if not isinstance(parameters, dict) or set(parameters) != set(sweep.parameters) \
            or depth(parameters) > MAX_DEPTH:
        return False
    for key, value in parameters.items():
        searched = sweep.parameters[key]
        if searched.values is not None:
            if value not in searched.values:
                return False
        elif not (isinstance(value, int | float) and not isinstance(value, bool)
                  and (searched.min or 0) <= value <= (searched.max or 0)):
            return False
    return True


def _objective(run: dict[str, Any], metric: str) -> float | None:
    """The run's final value of `metric`, when its record (or index entry) holds a number."""
    metrics = run.get("final_metrics")
    value = metrics.get(metric) if isinstance(metrics, dict) else None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _refuse_unless_started_here(record: SweepRecord) -> None:
    """Resuming runs the sweep's job file (a path on the machine that started it) and its
    overrides, as recorded, with this reader's credentials: only the user who started it may,
    on that machine. Anyone else's sweep is not resumed; its trials rerun one by one, each
    saying what it runs."""
    started_by = record.manifest.get("user"), record.manifest.get("host")
    if started_by != (user(), socket.gethostname()):
        who, where = (terminal_text(part, one_line=True) for part in started_by)
        raise SagebookError(f"{record.sweep_id} was started by {who} on {where}: only they can "
                            "resume it, there (`sagebook rerun RUN` reruns one of its trials "
                            "as yours, after saying what it runs)")


def _refuse_if_running(record: SweepRecord) -> None:
    """A sweep whose process still runs on this machine is not resumed under its feet."""
    import psutil  # heavy to import, and only a resume asks it

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
        tuning.sync(record)
    return record


def format_sweep(record: SweepRecord) -> str:
    """What `sagebook show SWEEP` prints: the best trial, counts by status, every trial. What
    the record says passes `terminal_text`, one line each: a record is anyone's writing."""
    m = record.manifest
    objective = m["objective"]
    metric = _shown(objective["metric"])
    counts = record.status_counts()
    lines = [
        f"sweep:    {record.sweep_id}",
        f"experiment: {record.experiment}",
        f"status:   {_shown(m['status'])}",
        f"strategy: {_shown(m.get('strategy'))}, {objective['goal']} {metric}, "
        f"{m.get('max_parallel')} at a time on {_shown(m.get('instance_type'))}",
        "trials:   " + (", ".join(f"{n} {_shown(s.lower())}" for s, n in sorted(counts.items()))
                        or "none"),
    ]
    if m.get("spend_usd") is not None:
        priced = sum(1 for t in record.trials if t.get("cost") is not None)
        lines.append(f"spend:    ${m['spend_usd']:,.2f} ({priced} trials priced)")
    if m.get("tuning_job"):
        lines.append(f"tuning job: {_shown(m['tuning_job']['name'])} "
                     f"({_shown(m['tuning_job'].get('status') or '')})")
    best = record.best()
    if best is not None:
        lines.append(f"best:     trial {best['trial']} (run {best.get('run_id')}), "
                     f"{metric}={best['objective']:g}")
        lines.append("          " + ", ".join(f"{_shown(k)}={_shown(cell_text(v))}"
                                              for k, v in best["parameters"].items()))
    overrides = (m.get("config") or {}).get("overrides")
    if overrides:
        lines.append("overrides: " + ", ".join(_shown(o) for o in overrides))
    lines.append(f"record:   {record.uri}")
    keys = list(m.get("parameters") or [])
    rows = [["TRIAL", "RUN", "STATUS", metric.upper(), *map(_shown, keys)]]
    for entry in record.trials:
        value = entry.get("objective")
        rows.append([str(entry["trial"]), entry.get("run_id") or "", _shown(entry["status"])
                     + (" (early stop)" if entry.get("early_stopped") else "")
                     + (" (linked)" if entry.get("linked") else ""),
                     f"{value:.4g}" if isinstance(value, int | float) else "",
                     *(_shown(cell_text(entry["parameters"].get(k, ""))) for k in keys)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines.append("")
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return "\n".join(lines)


def _shown(value: Any) -> str:
    return terminal_text(value, one_line=True)


def _create(store: Store, experiment: str, manifest: dict[str, Any], text: str) -> SweepRecord:
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
def _ending(record: SweepRecord, echo: Callable[[str], None]) -> Iterator[None]:
    """Whatever stops the sweep in the block, its record says so (Stopped on Ctrl-C, with the
    command that runs the trials it left)."""
    try:
        yield
    except BaseException as exc:
        status = "Stopped" if isinstance(exc, KeyboardInterrupt) else "Failed"
        record.set_status(status, failure_reason=f"sagebook: {type(exc).__name__}: {exc}")
        if status == "Stopped":
            interrupted = SweepInterrupted(record)
            echo(f"[sweep] {interrupted}; next: {interrupted.next_step}")
            raise interrupted from exc
        raise


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a local sweep, its record written: what resumes it."""

    def __init__(self, record: SweepRecord):
        super().__init__(f"{record.sweep_id} interrupted")
        self.next_step = (f"sagebook sweep --resume {record.sweep_id} --store "
                          f"{shlex.quote(record.store.uri)}   runs its stopped and never-run "
                          "trials")


def _run(record: SweepRecord, sweep: spec_mod.Sweep, job_path: Path, overrides: list[str],
         todo: list[dict[str, Any]], via: str, echo: Callable[[str], None]) -> None:
    record.set_status("InProgress")
    with _ending(record, echo):
        search = AdaptiveSearch(sweep, record, config_mod.load(job_path, overrides).training) \
            if sweep.strategy in spec_mod.ADAPTIVE else None
        run_trials(record, sweep, job_path, overrides, todo, search=search, via=via, echo=echo)
    counts = record.status_counts()
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
    found: dict[str | None, dict[str, Any]] = {}
    for entry in index.entries(store, experiment):
        if entry.get("status") != "Completed" or not entry.get("sweep"):
            continue
        try:
            run_id = checked_name("run id", entry.get("run_id"), store.url(experiment))
            manifest = read_manifest(store, experiment, run_id)
        except (DamagedFile, FileNotFoundError):
            continue  # a run that cannot be read is not one to link a trial to
        sweep = manifest.get("sweep")
        key = _digest_key(sweep.get("digests") if isinstance(sweep, dict) else None)
        if key is not None:
            found.setdefault(key, entry)
    return found

