"""`instance_type: local`: the training code as a local process under the container contract.

No Docker, no image: seconds from launch to the first log line, and a debugger that works
(`--pdb` hands the terminal to the training process, so `breakpoint()` stops there). On Linux
the process gets a private /opt/ml (see `namespace`), and in any case only the environment a
container would have, plus what a process needs to run on this machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..stores import open_store
from . import Backend, Job, Outcome, checkpoints, contract, namespace
from .logs import LogSink

STOP_GRACE_SECONDS = 120  # SageMaker's grace between SIGTERM and SIGKILL on StopTrainingJob


def work_dir(job_name: str) -> Path:
    """The per-run folder that plays /opt/ml; kept after the run so it can be inspected."""
    base = Path(os.environ.get("SAGEBOOK_WORK_DIR") or Path(tempfile.gettempdir()) / "sagebook")
    return base / job_name


class ProcessRun:
    """Shared by the local backends: tree, channels, checkpoints, logs, artifacts, outcome.

    Subclasses say how the process starts (`command`, `environment`).
    """

    link_channels = True

    def prepare(self, job: Job) -> Path:
        root = work_dir(job.request["TrainingJobName"]) / "opt_ml"
        contract.build_tree(root, job.request, job.config.job.instance_type)
        self.sources = contract.populate_channels(root, job.request, link=self.link_channels,
                                                  store_options=_store_options(job),
                                                  echo=job.echo)
        own = (job.request.get("CheckpointConfig") or {}).get("S3Uri")
        if own:
            if job.resume_from:
                checkpoints.resume(job.resume_from, own, _store_options(job), job.echo)
            restored = checkpoints.store_at(own, _store_options(job)).download_tree(
                "", root / "checkpoints")
            if restored:
                job.echo(f"[sagebook] restored {restored} bytes of checkpoints from {own}")
        return root

    def finish(self, job: Job, root: Path, exit_code: int, stopped: bool,
               sink: LogSink) -> Outcome:
        record = job.record
        own = (job.request.get("CheckpointConfig") or {}).get("S3Uri")
        if own:
            checkpoints.store_at(own, _store_options(job)).upload_tree(root / "checkpoints", "")
        failure = contract.failure_reason(root)
        if (root / "output/failure").is_file():
            record.put_text("failure.txt", (root / "output/failure").read_text(errors="replace"))
        if stopped:
            status = "Stopped"
        else:
            status = "Completed" if exit_code == 0 else "Failed"
        outcome = Outcome(status=status, exit_code=exit_code, final_metrics=dict(sink.last))
        if status == "Failed":
            meaning = contract.explain_exit(exit_code)
            outcome.failure_reason = failure or f"AlgorithmError: {meaning}"
            outcome.details["exit_meaning"] = meaning
        output = job.request["OutputDataConfig"]["S3OutputPath"]
        path = contract.local_path(output)
        store = open_store(str(path) if path else output, **_store_options(job))
        name = job.request["TrainingJobName"]
        archives = root.parent / "archives"
        archives.mkdir(exist_ok=True)
        if status == "Completed" and contract.pack(root / "model", archives / "model.tar.gz"):
            store.put_file(f"{name}/output/model.tar.gz", archives / "model.tar.gz")
            outcome.model_artifact = store.url(f"{name}/output/model.tar.gz")
        if contract.pack(root / "output/data", archives / "output.tar.gz"):
            store.put_file(f"{name}/output/output.tar.gz", archives / "output.tar.gz")
            outcome.output_artifact = store.url(f"{name}/output/output.tar.gz")
        return outcome

    def execute(self, job: Job, command: list[str], env: dict[str, str], cwd: Path) -> Outcome:
        root = self.root
        record = job.record
        local_record = record.local_path()
        spool = local_record or root.parent / "record"
        sink = LogSink(spool / "logs/algo-1.log", spool / "metrics.jsonl",
                       job.request["AlgorithmSpecification"]["MetricDefinitions"], job.echo)
        record.set_status("InProgress", work_dir=str(root))
        try:
            if job.pdb:
                exit_code, stopped = self._interactive(job, command, env, cwd, sink)
            else:
                exit_code, stopped = self._streamed(job, command, env, cwd, sink)
        finally:
            sink.close()
            if local_record is None:
                record.put_file("logs/algo-1.log", sink.log_path)
                record.put_file("metrics.jsonl", sink.metrics_path)
        return self.finish(job, root, exit_code, stopped, sink)

    def _streamed(self, job: Job, command: list[str], env: dict[str, str], cwd: Path,
                  sink: LogSink) -> tuple[int, bool]:
        # A new session keeps a terminal's Ctrl-C away from the training process: we decide
        # how it stops (SIGTERM, then SIGKILL), as SageMaker does.
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        reader = threading.Thread(target=_pump, args=(proc, sink), daemon=True)
        reader.start()
        stopped = False
        try:
            proc.wait()
        except BaseException as exc:
            # Ctrl-C stops the run; anything else (SystemExit, a bug) must not leave the
            # training process running on its own either.
            stopped = True
            self.stop(job, proc)
            if not isinstance(exc, KeyboardInterrupt):
                raise
        reader.join(timeout=10)
        return _exit_code(proc.returncode), stopped

    def stop(self, job: Job, proc: subprocess.Popen[bytes]) -> None:
        job.echo(f"[sagebook] stopping: SIGTERM sent, SIGKILL in {STOP_GRACE_SECONDS}s "
                 "(Ctrl-C again to kill now)")
        self.signal(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_SECONDS)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            self.signal(proc, signal.SIGKILL)
            proc.wait()

    def signal(self, proc: subprocess.Popen[bytes], sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def _interactive(self, job: Job, command: list[str], env: dict[str, str], cwd: Path,
                     sink: LogSink) -> tuple[int, bool]:
        """The process gets this terminal, so pdb can read commands; its output is not saved."""
        job.echo("[sagebook] --pdb: the training process has this terminal; breakpoint() "
                 "stops there. Logs and metrics are not captured in this mode.")
        sink.line("[sagebook] run with --pdb: output went to the terminal, not to this log")
        proc = subprocess.Popen(command, cwd=cwd, env=env)
        stopped = False
        while True:
            try:
                proc.wait()
                break
            except KeyboardInterrupt:
                stopped = True  # pdb handles Ctrl-C itself; the loop waits for it to end
        return _exit_code(proc.returncode), stopped and proc.returncode != 0


class LocalBackend(ProcessRun, Backend):
    def check(self, job: Job) -> None:
        """Without namespaces, code that hard-codes /opt/ml would fail mid-run: stop now."""
        mode = namespace.support()
        if mode.available:
            return
        source_dir = job.config.job.source_dir
        problem = namespace.fallback_problem(Path(source_dir), mode.detail)
        if problem:
            raise ConfigError.one(source_dir, "job.source_dir", problem)

    def run(self, job: Job) -> Outcome:
        self.root = root = self.prepare(job)
        entry = Path(job.config.job.source_dir) / job.config.job.entry_point
        if not entry.is_file():
            raise FileNotFoundError(f"entry point {entry} does not exist")
        private = namespace.support().available
        base = contract.CONTAINER_BASE if private else str(root)
        env = self.environment(job, base)
        command = [sys.executable, "-u", str(entry)]
        if private:
            command = namespace.wrap(command, root, root.parent / "namespace", [contract.HOST])
        job.record.update(opt_ml="private namespace" if private else "host folder",
                          **({"aws_credentials_passed": True}
                             if job.config.job.pass_aws_credentials else {}))
        job.echo(f"[sagebook] local run {job.request['TrainingJobName']} in {root}"
                 + (f" (at {base} for the training code)" if private else ""))
        return self.execute(job, command, env, Path(job.config.job.source_dir))

    def environment(self, job: Job, base: str) -> dict[str, str]:
        """The container's variables and what a process needs here; credentials on request."""
        env = {**contract.machine_environment(os.environ),
               **contract.environment(job.request, base, job.config.job.instance_type),
               "PYTHONUNBUFFERED": "1"}
        if job.config.job.pass_aws_credentials:
            env.update(contract.aws_credentials(os.environ))
        else:
            # HOME stays, so boto3 would find ~/.aws: point it at nothing, as in a container.
            env.update(AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_CONFIG_FILE=os.devnull)
        if not job.pdb:
            env["PYTHONBREAKPOINT"] = "0"  # no terminal to debug in: skip breakpoints
        return env


def _pump(proc: subprocess.Popen[bytes], sink: LogSink) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        sink.line(raw.decode("utf-8", errors="replace"))


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _store_options(job: Job) -> dict[str, Any]:
    return job.config.job.store_options()
