"""`instance_type: local`: the training code as local processes under the container contract.

No Docker, no image: seconds from launch to the first log line, and a debugger that works
(`--pdb` hands the terminal to the training process, so `breakpoint()` stops there). On Linux
each host's process gets a private /opt/ml (see `namespace`), and in any case only the
environment a container would have, plus what a process needs to run on this machine; the
hosts of a several-host job each run on their own share of the CPUs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from ..config import LaunchConfig
from ..errors import ConfigError, StoreError
from ..notify import send as notify
from ..record import Record
from ..stores import Store, open_store
from . import (
    Backend,
    Job,
    Outcome,
    Staged,
    checkpoints,
    children,
    contract,
    detached,
    interruption,
    liveness,
    namespace,
    stall,
    uploads,
)
from .interruption import Rehearsal
from .limits import TimeLimits, stop_grace
from .liveness import work_dir
from .logs import LogSink

T = TypeVar("T")


TENSORBOARD_PATH = "/opt/ml/output/tensorboard"  # SageMaker's default LocalPath


def cpu_slots(count: int) -> list[list[int]]:
    """CPU sets for `count` processes sharing this machine (sweep trials, a job's hosts): the
    CPUs we may use, dealt out round-robin; they share CPUs only when there are more processes
    than CPUs. Empty sets where there is no pinning (not Linux)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return [[] for _ in range(count)]
    if count <= len(cpus):
        return [cpus[slot::count] for slot in range(count)]
    return [[cpus[slot % len(cpus)]] for slot in range(count)]


@dataclass
class Host:
    """One host of a local job: its /opt/ml tree, how its process starts, and the process."""

    name: str
    root: Path
    cpus: list[int] = field(default_factory=list)  # pinned to these; none: every CPU
    restored: dict[str, tuple[int, int]] = field(default_factory=dict)  # checkpoints at start
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = field(default_factory=Path.cwd)
    proc: subprocess.Popen[bytes] | None = None
    sink: LogSink | None = None

    def exit_code(self) -> int:
        assert self.proc is not None and self.proc.returncode is not None
        return _exit_code(self.proc.returncode)


class ProcessRun:
    """Shared by the local backends: trees, channels, checkpoints, logs, artifacts, outcome.

    A job of N hosts runs N processes, `algo-1`…`algo-N`, each with a tree of its own; one
    failing host fails the job and stops the others, as on SageMaker. Subclasses `start` a
    job: lay out its hosts (`prepare`), say how each host's process starts (`command`, `env`)
    and `execute` them; `run` keeps the launcher's heartbeat around it.
    """

    link_channels = True
    rehearses_interruptions = True

    def run(self, job: Job) -> Outcome:
        """`start` the job, the launcher beating all along (see liveness): one that dies while
        it uploads, lays out the trees or restores checkpoints is seen to be gone, like one that
        dies while the training runs. The job's time limits start here (see limits)."""
        self.limits = TimeLimits.of(job.request)
        self.stall = stall.StallWatch.of(job.config.job)
        self.rehearsal = Rehearsal(job.interrupt_after) \
            if job.interrupt_after is not None else None
        self.heartbeat = liveness.Heartbeat(job.record).start()
        try:
            return self.start(job)
        finally:
            self.heartbeat.stop()

    def start(self, job: Job) -> Outcome:
        """Lay out the hosts (`prepare`) and run them (`execute`): the backend's own part."""
        raise NotImplementedError

    def check(self, job: Job) -> None:
        """A stop's grace period that cannot be had is refused before the record exists."""
        stop_grace()

    def prepare(self, job: Job) -> list[Host]:
        """Lay out every host's /opt/ml: channels (downloaded from S3 when remote) and the
        checkpoints to resume from. Interruptible however long a download waits."""
        return interruptible(self._prepare, job)

    def _prepare(self, job: Job) -> list[Host]:
        names = contract.host_names(job.config.job.instance_count)
        work = work_dir(job.request["TrainingJobName"])
        # one host keeps the plain layout; several get a folder each
        roots = [work / "opt_ml"] if len(names) == 1 else [work / n / "opt_ml" for n in names]
        hosts = [Host(name, root) for name, root in zip(names, roots, strict=True)]
        own = (job.request.get("CheckpointConfig") or {}).get("S3Uri")
        if own and job.resume_from:
            checkpoints.resume(job.resume_from, own, _store_options(job), job.echo)
        self._lay_out(job, hosts)
        self.root = hosts[0].root
        return hosts

    def _lay_out(self, job: Job, hosts: list[Host]) -> None:
        """Each host's /opt/ml as a container starts with it: its channels, and the run's
        checkpoint prefix restored into checkpoints/ (again after an interruption)."""
        names = [h.name for h in hosts]
        for index, host in enumerate(hosts):
            contract.build_tree(host.root, job.request, job.config.job.instance_type,
                                host.name, names)
            self.sources = contract.populate_channels(
                host.root, job.request, link=self.link_channels,
                store_options=_store_options(job), echo=job.echo, shard=(index, len(hosts)))
        own = (job.request.get("CheckpointConfig") or {}).get("S3Uri")
        if own:
            store = checkpoints.store_at(own, _store_options(job))
            for host in hosts:  # each host restores the one checkpoint prefix, as on SageMaker
                restored = store.download_tree("", host.root / "checkpoints")
                host.restored = _file_states(host.root / "checkpoints")
            if restored:
                job.echo(f"[sagebook] restored {restored} bytes of checkpoints from {own}")

    def save_checkpoints(self, job: Job, hosts: list[Host]) -> None:
        """Every host syncs to the one prefix what it wrote, as SageMaker uploads a host's new
        and changed checkpoint files: a restored copy left as it was must not overwrite the
        newer file another host wrote."""
        own = (job.request.get("CheckpointConfig") or {}).get("S3Uri")
        if own:
            store = checkpoints.store_at(own, _store_options(job))
            for host in hosts:
                for name, (size, mtime) in _file_states(host.root / "checkpoints").items():
                    if host.restored.get(name) != (size, mtime):
                        store.put_file(name, host.root / "checkpoints" / name)

    def finish(self, job: Job, hosts: list[Host], exit_code: int, stopped: bool,
               failed: Host | None) -> Outcome:
        record = job.record
        self.save_checkpoints(job, hosts)
        tensorboard = job.request.get("TensorBoardOutputConfig")
        if tensorboard:  # what SageMaker copies while the job runs, copied once at its end
            local = PurePosixPath(tensorboard.get("LocalPath") or TENSORBOARD_PATH)
            if local.is_relative_to(contract.CONTAINER_BASE):
                store = checkpoints.store_at(tensorboard["S3OutputPath"], _store_options(job))
                for host in hosts:
                    folder = host.root / local.relative_to(contract.CONTAINER_BASE)
                    if folder.is_dir():
                        store.upload_tree(folder, "")
        failing = failed or next((h for h in hosts if (h.root / "output/failure").is_file()),
                                 hosts[0])
        failure = contract.failure_reason(failing.root)
        if (failing.root / "output/failure").is_file():
            record.put_text("failure.txt",
                            (failing.root / "output/failure").read_text(errors="replace"))
        if stopped:
            status = "Stopped"
        else:
            status = "Completed" if exit_code == 0 else "Failed"
        metrics: dict[str, float] = {}
        for host in reversed(hosts):  # algo-1's values win, as the host that usually reports
            metrics.update(host.sink.last if host.sink else {})
        outcome = Outcome(status=status, exit_code=exit_code, final_metrics=metrics)
        if stopped and self.limits.reached:
            outcome.details["secondary_status"] = self.limits.reached
        elif stopped and self.stall.stopped:
            outcome.details["secondary_status"] = stall.STALLED
            outcome.failure_reason = self.stall.reason
        else:  # a run stops at its limit, or because this process was interrupted
            outcome.interrupted = stopped
        errors = [h.sink.error + (f"; {h.sink.lost_lines} lines lost" if h.sink.lost_lines
                                  else "") for h in hosts if h.sink and h.sink.error]
        if errors:
            outcome.details["log_error"] = "; ".join(errors)
        if status == "Failed":
            meaning = contract.explain_exit(exit_code)
            where = f" on {failing.name}" if len(hosts) > 1 else ""
            outcome.failure_reason = failure or f"AlgorithmError: {meaning}{where}"
            outcome.details["exit_meaning"] = meaning
            if len(hosts) > 1:
                outcome.details["failed_host"] = failing.name
        output = job.request["OutputDataConfig"]["S3OutputPath"]
        path = contract.local_path(output)
        store = open_store(str(path) if path else output, **_store_options(job))
        name = job.request["TrainingJobName"]
        archives = work_dir(name) / "archives"
        try:
            archives.mkdir(exist_ok=True)
            # SageMaker packs /opt/ml/model and /opt/ml/output/data of all hosts into one,
            # after a stop too: what the code saved in its grace period is the model
            models = [h.root / "model" for h in hosts]
            if status in ("Completed", "Stopped") and contract.pack(
                    models, archives / "model.tar.gz"):
                store.put_file(f"{name}/output/model.tar.gz", archives / "model.tar.gz")
                outcome.model_artifact = store.url(f"{name}/output/model.tar.gz")
            if contract.pack([h.root / "output/data" for h in hosts],
                             archives / "output.tar.gz"):
                store.put_file(f"{name}/output/output.tar.gz", archives / "output.tar.gz")
                outcome.output_artifact = store.url(f"{name}/output/output.tar.gz")
        except (StoreError, OSError) as exc:
            # An artifact that could not be kept fails the run; its metrics stay true.
            outcome.status = "Failed"
            outcome.failure_reason = f"sagebook: {type(exc).__name__}: {exc}"
        return outcome

    def execute(self, job: Job, hosts: list[Host]) -> Outcome:
        record = job.record
        local_record = record.local_path()
        # What the store cannot take (a full disk, S3 out of reach) is kept here for
        # `sagebook sync`; for an S3 store, logs and metrics are written here first anyway.
        record.local_copy = work_dir(job.request["TrainingJobName"]) / "record"
        spool = local_record or record.local_copy
        definitions = job.request["AlgorithmSpecification"]["MetricDefinitions"]
        work = hosts[0].root if len(hosts) == 1 else hosts[0].root.parent.parent
        record.set_status("InProgress", work_dir=str(work), local_copy=str(record.local_copy))
        while True:  # one attempt, or two when an interruption is rehearsed
            logs = {h.name: self.rehearsal.log_name(h.name) if self.rehearsal
                    else f"logs/{h.name}.log" for h in hosts}
            own = (job.request.get("CheckpointConfig") or {}).get("S3Uri")
            attempt = self.rehearsal.begin(logs, len(hosts[0].restored) if own else None) \
                if self.rehearsal else None
            for host in hosts:
                echo = job.echo if len(hosts) == 1 else _prefixed(job.echo, host.name)
                host.sink = LogSink(spool / logs[host.name], spool / "metrics.jsonl",
                                    definitions, echo, host=host.name,
                                    fallback=record.local_copy)
            failed = None
            try:
                if job.pdb:
                    exit_code, stopped = self._interactive(job, hosts[0])
                else:
                    exit_code, stopped, failed = self._streamed(job, hosts)
            finally:
                sinks = [host.sink for host in hosts if host.sink is not None]
                for sink in sinks:
                    sink.close()
                moved = [sink for sink in sinks if sink.moved]
                try:
                    for sink in sinks:
                        if local_record is None or sink.moved:
                            record.put_file(logs[sink.host], sink.log_path)
                    if local_record is None or moved:
                        record.put_file("metrics.jsonl", (moved or sinks)[0].metrics_path)
                except StoreError as exc:  # kept in the local copy, for `sagebook sync`
                    sinks[0].error = sinks[0].error or str(exc)
            if attempt is None:
                break
            attempt.exit_code = exit_code
            attempt.local_logs = {s.host: s.log_path for s in sinks}
            if not attempt.interrupted:
                record.update(interruption=self.rehearsal.describe())
                break
            interruptible(self._restart, job, hosts)
        return interruptible(self.finish, job, hosts, exit_code, stopped, failed)

    def _restart(self, job: Job, hosts: list[Host]) -> None:
        """After an interruption, what SageMaker does on new instances: the checkpoints the
        code saved are in the prefix, each host gets a fresh /opt/ml (the old one is kept
        beside it, `attempt-1/`, to look into) with that prefix restored into checkpoints/."""
        assert self.rehearsal is not None
        number = len(self.rehearsal.attempts)
        job.record.note_secondary_status(interruption.RESTARTING)
        self.save_checkpoints(job, hosts)
        work = work_dir(job.request["TrainingJobName"])
        for host in hosts:
            kept = work / f"attempt-{number}" / host.root.relative_to(work)
            kept.parent.mkdir(parents=True, exist_ok=True)
            host.root.rename(kept)
        self._lay_out(job, hosts)
        job.echo(f"[sagebook] attempt {number + 1}: a fresh /opt/ml, "
                 f"{len(hosts[0].restored)} checkpoint files restored; the training starts "
                 f"again (attempt {number}'s tree is in {work / f'attempt-{number}'})")
        job.record.note_secondary_status(interruption.TRAINING)

    def _streamed(self, job: Job, hosts: list[Host]) -> tuple[int, bool, Host | None]:
        """Run every host's process to its end; the first to fail stops the others, and a
        time limit that passes stops them all (see limits)."""
        readers = []
        stopped = False
        failed: Host | None = None
        self.limits.begin_attempt()
        self.stall.begin()  # an attempt after an interruption has new logs, and new silence
        try:
            for host in hosts:
                # A new session keeps a terminal's Ctrl-C away from the training process: we
                # decide how it stops (SIGTERM, then SIGKILL), as SageMaker does.
                host.proc = children.reaped(subprocess.Popen(
                    liveness.supervised(host.command, stop_grace(), host.cpus),
                    cwd=host.cwd,
                    env=host.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, start_new_session=True))
                self.heartbeat.note(host.proc.pid)
                reader = threading.Thread(target=_pump, args=(host.proc, host.sink),
                                          daemon=True)
                reader.start()
                readers.append(reader)
            procs = [h.proc for h in hosts if h.proc is not None]
            while failed is None and any(map(children.running, procs)):
                failed = next((h for h in hosts if h.proc and h.proc.returncode), None)
                if self.limits.exceeded():
                    stopped = True
                    self._stop_at_limit(job, hosts)
                    break
                if self.rehearsal and self.rehearsal.due(self.limits.runtime_used()):
                    stopped = True
                    self._interrupt(job, hosts)
                    break
                if self.stall.due(max((h.sink.last_output or 0.0 for h in hosts if h.sink),
                                      default=None)):
                    self._stalled(job, hosts)
                    if self.stall.stopped:
                        stopped = True
                        break
                time.sleep(children.POLL_SECONDS)
            failed = None if stopped else (
                failed or next((h for h in hosts if h.proc and h.proc.returncode), None))
            if failed is not None and any(map(children.running, procs)):
                job.echo(f"[sagebook] {failed.name} failed "
                         f"({contract.explain_exit(failed.exit_code())}): stopping the others")
                self.stop_hosts(job, hosts)
        except BaseException as exc:
            # Ctrl-C stops the run; anything else (SystemExit, a bug) must not leave the
            # training processes running on their own either.
            stopped = True
            self.stop_hosts(job, [h for h in hosts if h.proc is not None])
            if not isinstance(exc, KeyboardInterrupt):
                raise
        finally:
            self.limits.end_attempt()
        for reader in readers:
            reader.join(timeout=10)
        if stopped:
            # stopped before any host started: Ctrl-C's own exit status
            return max((h.exit_code() for h in hosts if h.proc is not None), default=130), \
                True, None
        return (failed.exit_code() if failed else 0), False, failed

    def _stop_at_limit(self, job: Job, hosts: list[Host]) -> None:
        """Stop the job as SageMaker does at its limit: the record says Stopping, with the
        limit as its secondary status, while the training has its grace period."""
        reached = self.limits.reached
        job.echo(f"[sagebook] {self.limits.describe()} reached: the job stops ({reached})")
        job.record.set_status("Stopping", secondary_status=reached)
        self.stop_hosts(job, hosts)

    def _stalled(self, job: Job, hosts: list[Host]) -> None:
        """A run silent for its stall_timeout: its stacks into the record, the stall in its
        timeline, the notify URLs told; then, with stall_action stop, it stops as at a
        limit, its failure reason saying it stalled."""
        config = job.config.job
        job.echo(f"[sagebook] {self.stall.reason}: saving the training's Python stacks")
        self.stall.mark(job.record)
        for host in hosts:
            if host.proc is not None and host.sink is not None:
                name = stall.save_stacks(job.record, host.name, host.proc.pid,
                                         host.sink.log_path)
                job.echo(f"[sagebook] {host.name}'s stacks: {job.record.url(name)}")
        notify(job.record, "stall", config.notify, config.notify_on)
        if config.stall_action == "stop":
            self.stall.stopped = True
            job.record.set_status("Stopping", secondary_status=stall.STALLED)
            self.stop_hosts(job, hosts)

    def _interrupt(self, job: Job, hosts: list[Host]) -> None:
        """Interrupt the job as SageMaker interrupts a spot job: the record says Interrupted
        while the training has its grace period, then the job goes on (`_restart`)."""
        assert self.rehearsal is not None
        self.rehearsal.attempts[-1].interrupted = True
        job.echo(f"[sagebook] --interrupt-after {self.rehearsal.after:g}s: the job is "
                 "interrupted as SageMaker interrupts a spot job")
        job.record.note_secondary_status(interruption.INTERRUPTED)
        self.stop_hosts(job, hosts)

    def stop(self, record: Record, echo: Callable[[str], None]) -> Outcome:
        """`sagebook stop RUN` from another process (see liveness.py)."""
        return liveness.stop(record, echo, stop_grace())

    def attach(self, record: Record, *, wait: bool, echo: Callable[[str], None]) -> Outcome:
        """Follow a run's live log on the host where it runs (see detached.py)."""
        return detached.attach(record, wait=wait, echo=echo)

    @classmethod
    def refresh(cls, store: Store, entries: list[dict[str, Any]], *,
                profile: str | None = None) -> int:
        """Unfinished local runs whose launcher is gone are Lost (see liveness.py)."""
        return liveness.refresh(store, entries)

    def stop_hosts(self, job: Job, hosts: list[Host]) -> None:
        grace = stop_grace()
        job.echo(f"[sagebook] stopping: SIGTERM sent, SIGKILL in {grace:g}s "
                 "(Ctrl-C to kill now)")
        running = [h.proc for h in hosts if h.proc is not None and children.running(h.proc)]
        for proc in running:
            self.signal(proc, signal.SIGTERM)
        try:
            ended = children.wait_all(running, grace)
        except KeyboardInterrupt:
            ended = False
        if not ended:
            for proc in running:
                self.signal(proc, signal.SIGKILL)
            children.wait_all(running)

    def signal(self, proc: subprocess.Popen[bytes], sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def _interactive(self, job: Job, host: Host) -> tuple[int, bool]:
        """The process gets this terminal, so pdb can read commands; its output is not saved."""
        job.echo("[sagebook] --pdb: the training process has this terminal; breakpoint() "
                 "stops there. Logs and metrics are not captured in this mode.")
        assert host.sink is not None
        host.sink.line("[sagebook] run with --pdb: output went to the terminal, not to this log")
        proc = host.proc = subprocess.Popen(host.command, cwd=host.cwd, env=host.env)
        stopped = False
        while True:
            try:
                proc.wait()
                break
            except KeyboardInterrupt:
                stopped = True  # pdb handles Ctrl-C itself; the loop waits for it to end
        return _exit_code(proc.returncode), stopped and proc.returncode != 0


class LocalBackend(ProcessRun, Backend):
    def stage(self, config: LaunchConfig, echo: Callable[[str], None],
              reuse: Mapping[str, dict[str, Any]] | None = None) -> Staged:
        """The code folder, packed and named by its digest as for a cloud job, kept beside the
        records: the record names the code that ran, and a rerun runs that very code."""
        root = uploads.root_for(config.job, remote=False)
        if root is None:
            return Staged()
        plan = uploads.plan_code(Path(config.job.source_dir), root, work_dir("_code"))
        return Staged(uploads=[plan])

    def check(self, job: Job) -> None:
        """What would fail mid-run, refused now: --pdb on several hosts, mpi (it needs the
        image's SSH), torchrun without torch here, and, without namespaces, code that
        hard-codes /opt/ml."""
        super().check(job)
        if job.pdb and job.config.job.instance_count > 1:
            raise ConfigError.one("--pdb", "job.instance_count",
                                  "--pdb gives one process the terminal: run one host")
        distribution = job.config.job.distribution
        if distribution == "mpi":
            raise ConfigError.one(
                "job.distribution", None, "distribution: mpi runs in the image, where mpirun "
                "reaches the other hosts over SSH: use instance_type local-docker, or "
                "torchrun (or the training code's own transport) under local")
        if distribution == "torchrun" and _torchrun() is None:
            raise ConfigError.one(
                "job.distribution", None, "distribution: torchrun needs torch where sagebook "
                "runs (torchrun is not on PATH): pip install torch, or use local-docker with "
                "an image that has it")
        mode = namespace.support()
        if mode.available:
            return
        source_dir = job.config.job.source_dir
        problem = namespace.fallback_problem(Path(source_dir), mode.detail)
        if problem:
            raise ConfigError.one(source_dir, "job.source_dir", problem)

    def start(self, job: Job) -> Outcome:
        if job.staged and job.staged.uploads:
            interruptible(uploads.upload, job.staged.uploads, _store_options(job),
                          lambda line: None)
        hosts = self.prepare(job)
        entry = Path(job.config.job.source_dir) / job.config.job.entry_point
        if not entry.is_file():
            raise FileNotFoundError(f"entry point {entry} does not exist")
        private = namespace.support().available
        names = [h.name for h in hosts]
        # All hosts share this machine's loopback: a free port, not SageMaker's fixed one, so
        # concurrent runs do not collide. Host names resolve only inside the namespaces.
        port = _free_port()
        # On SageMaker each host has an instance's CPUs to itself; here the hosts share this
        # machine's, so each gets its own share, as sweep trials do (its threads, BLAS's
        # among them, size themselves to it instead of all fighting for every core).
        slots = cpu_slots(len(hosts)) if len(hosts) > 1 else [[]]
        for host, cpus in zip(hosts, slots, strict=True):
            host.cpus = cpus
            base = contract.CONTAINER_BASE if private else str(host.root)
            host.env = self.environment(job, base, host.name, names,
                                        names[0] if private else "127.0.0.1", port)
            host.command = self.command(job, entry, names.index(host.name), len(names),
                                        names[0] if private else "127.0.0.1", port)
            host.cwd = Path(job.config.job.source_dir)
            if private:
                host.command = namespace.wrap(host.command, host.root,
                                              host.root.parent / "namespace", names)
        pinned = {h.name: h.cpus for h in hosts if h.cpus}
        job.record.update(opt_ml="private namespace" if private else "host folder",
                          **({"aws_credentials_passed": True}
                             if job.config.job.pass_aws_credentials else {}),
                          **({"host_cpus": pinned} if pinned else {}))
        where = self.root if len(hosts) == 1 else self.root.parent.parent
        cpus = " | ".join(",".join(map(str, c)) for c in pinned.values())
        job.echo(f"[sagebook] local run {job.request['TrainingJobName']} in {where}"
                 + (f" ({len(hosts)} hosts{f', CPUs {cpus}' if cpus else ''})"
                    if len(hosts) > 1 else "")
                 + (f" (at {contract.CONTAINER_BASE} for the training code)" if private else ""))
        return self.execute(job, hosts)

    def command(self, job: Job, entry: Path, rank: int, count: int, master: str,
                port: int) -> list[str]:
        """How the training code starts on one host: python, or torchrun as the image's
        `train` starts it, with the cluster on this machine's loopback."""
        cfg = job.config.job
        if cfg.distribution == "torchrun":
            return [_torchrun() or "torchrun", "--nnodes", str(count), "--nproc_per_node",
                    str(cfg.processes_per_host), "--node_rank", str(rank), "--master_addr",
                    master, "--master_port", str(port), str(entry)]
        return [sys.executable, "-u", str(entry)]

    def environment(self, job: Job, base: str, host: str, hosts: list[str], master: str,
                    port: int) -> dict[str, str]:
        """The container's variables and what a process needs here; credentials on request."""
        env = {**contract.machine_environment(os.environ),
               **contract.environment(job.request, base, job.config.job.instance_type,
                                      host=host, hosts=hosts, master_addr=master,
                                      master_port=port,
                                      image_environment=job.config.job.image_environment),
               "PYTHONUNBUFFERED": "1"}
        if job.config.job.pass_aws_credentials:
            env.update(contract.aws_credentials(os.environ))
        else:
            # HOME stays, so boto3 would find ~/.aws: point it at nothing, as in a container.
            env.update(AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_CONFIG_FILE=os.devnull)
        if not job.pdb:
            env["PYTHONBREAKPOINT"] = "0"  # no terminal to debug in: skip breakpoints
        return env


def interruptible(work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` (a phase of network and disk work: uploads, downloads, archives) run in a
    thread of its own and waited for here, where Ctrl-C and SIGTERM arrive (as
    KeyboardInterrupt, see cli.py): they end the wait at once. In this thread they could not
    end it, as a transfer library that catches the interrupt first waits for its reads in
    flight, up to the AWS timeout. The phase, left behind, ends with the process."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, work(*args)))
        except BaseException as exc:  # noqa: BLE001 - handed over to the waiting thread
            outcome.append((False, exc))

    thread = threading.Thread(target=run, daemon=True, name=getattr(work, "__name__", "work"))
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
    done, value = outcome[0]
    if not done:
        raise value
    return value


def _torchrun() -> str | None:
    """torchrun as the training process finds it: the launching Python's folder first."""
    return shutil.which("torchrun", path=contract.machine_environment(os.environ)["PATH"])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _file_states(folder: Path) -> dict[str, tuple[int, int]]:
    """Each file below `folder` (as a relative POSIX name) with its size and mtime."""
    states = {}
    for path in folder.rglob("*"):
        if path.is_file():
            info = path.stat()
            states[path.relative_to(folder).as_posix()] = (info.st_size, info.st_mtime_ns)
    return states


def _prefixed(echo: Callable[[str], None], host: str) -> Callable[[str], None]:
    return lambda line: echo(f"[{host}] {line}")


def _pump(proc: subprocess.Popen[bytes], sink: LogSink) -> None:
    """Read the training output to its end, whatever befalls the lines: a pipe nobody drains
    blocks the training on its next print."""
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            sink.line(raw.decode("utf-8", errors="replace"))
    except Exception as exc:  # noqa: BLE001 - nothing may stop the draining
        sink.error = sink.error or f"log lines could not be handled: {exc}"
        for _ in proc.stdout:
            sink.lost_lines += 1


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _store_options(job: Job) -> dict[str, Any]:
    return job.config.job.store_options()
