"""The launch notebook's glue, and how the executed notebook reaches the record.

papermill saves the output notebook after every cell and once more after the kernel has shut
down, so nothing inside the kernel ever sees the final file. When the launch cell creates the
record, it therefore starts a small detached *capture* process (`python -m sagebook.notebooks
capture …`) that outlives the kernel. The capture process waits until the notebook run is over
— the papermill process has exited, or the kernel has exited and the file holds papermill's
final save — then copies the executed notebook into the record and judges it: every code cell
executed and no error output means the notebook succeeded; otherwise the record is marked
Failed (or Interrupted, when the kernel died during the run).

Until then the manifest says the notebook is `pending`. How the capture process finds the
executed notebook, in order:
1. a `PAPERMILL_OUTPUT_PATH` variable in the kernel (`papermill --inject-paths`, or
   `sagebook.notebooks.execute()`, which `pm.execute_notebook` users can call instead);
2. the papermill command line of the kernel's parent process (`papermill in.ipynb out.ipynb …`);
3. an interactive kernel's notebook file (`JPY_SESSION_NAME`, set by Jupyter Server), copied as
   last saved when the kernel shuts down.
When none applies (`pm.execute_notebook` without the output path), the record says so.

When sagebook runs papermill itself (`execute()`, and so the form), no detached process is
needed: the kernel hands the record over to the caller, which stores the notebook as soon as
papermill returns, so the record holds it when `execute()` returns.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import ConfigError, SagebookError
from .kinds import is_remote
from .printing import MaskedError, masked_output
from .record import TERMINAL, Record
from .secrets import redact, secret_values

LAUNCH_NOTEBOOK = Path(__file__).resolve().parent / "project_template" / "notebooks" / (
    "launch.ipynb")  # package data (see project.py)
# A notebook parameter naming a file: the kernel writes the record's URI there instead of
# starting a capture process, and the caller that runs papermill stores the notebook.
HANDOFF = "SAGEBOOK_NOTEBOOK_HANDOFF"
PENDING_NOTE = "copied into the record once the notebook run is over"


# --------------------------------------------------------------------------------------------
# Inside the kernel


def launch(config: Any, overrides: Any = None, wait: Any = None, pdb: Any = False,
           sweep: Any = None) -> Any:
    """Run the launch notebook's job: validate the papermill parameters, launch, capture.
    With `sweep` (a sweep file, or True for the config's `sweep:` section), run that sweep."""
    # launch loads pydantic and the backends: the notebook-copying child (`python -m
    # sagebook.notebooks`) imports this module and never launches
    from .launch import RunFailed
    from .launch import launch as launch_run
    from .sweeps.control import SweepInterrupted

    _install_error_display()
    config_path, override_list, wait_flag = check_parameters(config, overrides, wait)
    # Asked now: on Ctrl-C the papermill command may exit before the run has stopped, and a
    # process that is gone can no longer say it was papermill.
    under_papermill = _papermill_cli()
    if sweep is not None and sweep is not False:
        try:
            return _sweep(config_path, override_list, wait_flag, sweep)
        except SweepInterrupted as interrupted:
            if under_papermill:
                _tell_terminal(f"sagebook: sweep {interrupted}; next: "
                               f"{interrupted.next_step}\n")
            raise
    with masked_output():  # the cell's output is saved in the notebook: mask it as the record
        run = launch_run(config_path, override_list, via="notebook", wait=wait_flag,
                         pdb=bool(pdb), on_record=start_capture)
        print(run.summary())
    step = run.next_step()
    if step and under_papermill:
        _tell_terminal(f"sagebook: run {run.record.run_id} interrupted "
                       f"({run.outcome.status}); next: {step}\n")
    if not run.ok:
        raise RunFailed(run)
    return run


def _papermill_cli() -> bool:
    """Whether the kernel runs under the `papermill` command, which on Ctrl-C shuts it down
    and exits without waiting for the cell to end."""
    parent = os.environ.get("JPY_PARENT_PID")
    return bool(parent and parent.isdigit() and papermill_output_path(int(parent)))


def _tell_terminal(text: str) -> None:
    """Write to the terminal papermill runs in, past the cell's output, which papermill no
    longer reads once interrupted. The kernel then fails to answer papermill, which has left;
    ipykernel logs that as a ZMQError traceback, dropped here, as it says nothing to act on."""
    try:
        fd = sys.stderr.fileno()  # ipykernel's stream: the kernel's original stderr
    except (AttributeError, OSError, ValueError):
        fd = 2
    try:
        os.write(fd, text.encode(errors="replace"))
    except OSError:
        pass  # no terminal left to tell
    try:
        log = get_ipython().kernel.log  # type: ignore[name-defined]  # noqa: F821
    except (NameError, AttributeError):
        return
    log.addFilter(_without_zmq_errors)


def _without_zmq_errors(record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    return not (error is not None and type(error).__module__.startswith("zmq"))


def _sweep(config: str, overrides: list[str], wait: bool | None, sweep: Any) -> Any:
    from .sweeps import control as sweeps  # as `launch` in `run`

    if sweep is True:
        sweep_file = None
    elif isinstance(sweep, str) and sweep.strip():
        sweep_file = sweep
    else:
        raise ConfigError.one("parameter sweep", None, "expected the path of a sweep file, or "
                                                       f"true for the config's sweep section, "
                                                       f"got {sweep!r}")
    plan = sweeps.plan(config, sweep_file, overrides)
    with masked_output():
        record = sweeps.start(plan, via="notebook", wait=wait)
        print(f"record: {record.uri}")  # as a run's summary ends
    return record


def check_parameters(config: Any, overrides: Any, wait: Any) -> tuple[str, list[str], bool | None]:
    """papermill types `-p` values loosely and only warns about unknown names: check them here."""
    if not isinstance(config, str) or not config.strip():
        raise ConfigError.one("parameter config", None,
                              f"expected the path of a job config, got {config!r}")
    if overrides is None or overrides == "":
        override_list: list[Any] = []
    elif isinstance(overrides, str):
        try:
            parsed = json.loads(overrides)
        except json.JSONDecodeError:
            parsed = [overrides] if "=" in overrides else None
        override_list = parsed if isinstance(parsed, list) else [None]
    elif isinstance(overrides, list | tuple):
        override_list = list(overrides)
    else:
        override_list = [None]
    if not all(isinstance(o, str) for o in override_list):
        raise ConfigError.one(
            "parameter overrides", None,
            'expected a list of "key.path=value" strings, e.g. '
            f'\'["training.epochs=3"]\', got {overrides!r}',
        )
    if wait is not None and not isinstance(wait, bool):
        raise ConfigError.one("parameter wait", None, f"expected true or false, got {wait!r}")
    return config, override_list, wait


def _install_error_display() -> None:
    """Show sagebook's errors as their message, not a traceback, while still failing the cell."""
    try:
        shell = get_ipython()  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        return

    def show(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None):
        masked = MaskedError(value)
        shell._showtraceback(etype, masked, [f"{etype.__name__}: {masked}"])

    shell.set_custom_exc((SagebookError,), show)


def start_capture(record: Any) -> None:
    """Arrange for the executed notebook to reach `record`: hand the record to the caller
    that runs papermill (execute()), or start the detached capture process."""
    notebook, source, owner = _notebook_location()
    handoff = _user_variable(HANDOFF)
    if handoff:
        Path(str(handoff)).write_text(json.dumps({"record": record.uri,
                                                  "store_options": record.store.options()}))
    else:
        _start_capture_process(record, notebook, source, owner)
    record.update(notebook={"status": "pending", "source": source, "path": notebook,
                            "note": PENDING_NOTE})


def _start_capture_process(record: Any, notebook: str | None, source: str,
                           owner: int | None) -> None:
    command = [sys.executable, "-m", "sagebook.notebooks", "capture", "--record", record.uri,
               "--store-options", json.dumps(record.store.options()),
               "--kernel-pid", str(os.getpid()), "--source", source]
    if notebook:
        command += ["--notebook", notebook]
    if owner:
        command += ["--owner-pid", str(owner)]
    subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def _notebook_location() -> tuple[str | None, str, int | None]:
    """Where the executed notebook will be, how we know, and which process writes it last.

    The writer is the papermill CLI process when there is one; otherwise None, and the capture
    waits for the kernel to exit and papermill's final save instead.
    """
    parent = os.environ.get("JPY_PARENT_PID")
    from_cli = papermill_output_path(int(parent)) if parent else None
    owner = int(parent) if parent and from_cli else None
    injected = _user_variable("PAPERMILL_OUTPUT_PATH")
    if injected:
        return _absolute(str(injected), os.getcwd()), "papermill", owner
    if from_cli:
        return from_cli, "papermill", owner
    session = os.environ.get("JPY_SESSION_NAME")
    if session:
        path = Path(session)
        if not path.is_file():
            path = Path.cwd() / path.name
        return str(path), "interactive", None
    return None, "unknown", None


def _user_variable(name: str) -> Any:
    try:
        return get_ipython().user_ns.get(name)  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        return None


def papermill_output_path(pid: int) -> str | None:
    """The output path on a papermill command line, parsed the way papermill parses it."""
    import psutil  # psutil: only to look at a process

    try:
        process = psutil.Process(pid)
        argv, cwd = process.cmdline(), process.cwd()
    except (psutil.Error, OSError):
        return None
    for index, arg in enumerate(argv):
        if Path(arg).name == "papermill" or arg == "papermill" and argv[index - 1] == "-m":
            break
    else:
        return None
    from papermill.cli import papermill as papermill_command  # papermill: only to run a notebook

    try:
        context = papermill_command.make_context("papermill", argv[index + 1:],
                                                 resilient_parsing=True)
    except Exception:  # an unparseable command line is simply not one we can follow
        return None
    output = context.params.get("output_path")
    if not output or output == "-":
        return None
    return _absolute(output, cwd)


def _absolute(path: str, cwd: str) -> str:
    return path if "://" in path or os.path.isabs(path) else os.path.join(cwd, path)


def _without_own_parameter_notes(record: logging.LogRecord) -> bool:
    """papermill warns of each parameter the notebook's parameters cell does not name; the two
    that execute() passes for the kernel (not for the notebook's reader) are meant so."""
    return record.getMessage() not in {f"Passed unknown parameter: {name}"
                                       for name in ("PAPERMILL_OUTPUT_PATH", HANDOFF)}


def execute(output_path: str | os.PathLike[str], config: str, overrides: list[str] | None = None,
            **papermill_options: Any) -> Any:
    """`pm.execute_notebook` on the launch notebook; the executed notebook is in the run's
    record when this returns (or raises papermill's error for a failed run)."""
    import papermill as pm  # papermill: only to run a notebook

    output = os.path.abspath(output_path)
    with tempfile.TemporaryDirectory(prefix="sagebook-notebook-") as folder:
        handoff = Path(folder) / "record.json"
        parameters = {"config": config, "overrides": overrides or [],
                      "PAPERMILL_OUTPUT_PATH": output, HANDOFF: str(handoff)}
        papermill_log = logging.getLogger("papermill")
        papermill_log.addFilter(_without_own_parameter_notes)
        try:
            return pm.execute_notebook(str(LAUNCH_NOTEBOOK), output, parameters=parameters,
                                       **papermill_options)
        finally:
            papermill_log.removeFilter(_without_own_parameter_notes)
            # papermill has written its final save and shut the kernel down by now
            if handoff.is_file():
                started = json.loads(handoff.read_text())
                store_notebook(started["record"], output, "papermill", started["store_options"])


# --------------------------------------------------------------------------------------------
# The capture process


def judge(notebook: dict[str, Any]) -> tuple[bool, str | None]:
    """Success means every code cell ran and none shows an error (papermill's own flag is not
    set for timeouts, SIGINT or a dead kernel, so it is not consulted)."""
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return False, f"cell {index}: {output.get('ename')}: {output.get('evalue')}"
        if cell.get("source", "").strip() and cell.get("execution_count") is None:
            return False, f"cell {index} never ran (the kernel stopped before it)"
    return True, None


def masked_notebook(notebook: dict[str, Any]) -> dict[str, Any]:
    """The notebook with credentials masked in every cell's source and output texts, each
    text whole: the outputs of consecutive stream messages (the kernel sends a line in as many
    as it had writes and flushes) are masked as the one text Jupyter shows, and replaced by
    it when something in it was masked; a private key's lines are one text. What holds no
    credential stays as it was. (The record's copy is masked once more as JSON text, which
    alone would miss a token split between two outputs, or a key whose lines are escapes.)"""
    values = secret_values()

    def masked(value: Any) -> Any:
        if not isinstance(value, str | list):
            return value
        text = _joined(value)
        result = redact(text, values)
        return value if result == text else result

    for cell in notebook.get("cells") or []:
        if not isinstance(cell, dict):
            continue
        if "source" in cell:
            cell["source"] = masked(cell["source"])
        outputs = cell.get("outputs")
        if not isinstance(outputs, list):
            continue
        kept: list[Any] = []
        for start, run in _stream_runs(outputs):
            if run:
                joined = "".join(_joined(output.get("text")) for output in run)
                result = redact(joined, values)
                kept += run if result == joined else [{**run[0], "text": result}]
                continue
            output = outputs[start]
            if isinstance(output, dict):
                for field in ("text", "evalue"):
                    if field in output:
                        output[field] = masked(output[field])
                if isinstance(output.get("traceback"), list):
                    output["traceback"] = [masked(line) for line in output["traceback"]]
                if isinstance(output.get("data"), dict):
                    output["data"] = {mime: masked(value)
                                      for mime, value in output["data"].items()}
            kept.append(output)
        cell["outputs"] = kept
    return notebook


def _stream_runs(outputs: list[Any]) -> list[tuple[int, list[dict[str, Any]]]]:
    """The outputs in order, as (index, run): a run of consecutive stream outputs of the same
    stream, or an empty run for any other output (at that index)."""
    runs: list[tuple[int, list[dict[str, Any]]]] = []
    for index, output in enumerate(outputs):
        stream = isinstance(output, dict) and output.get("output_type") == "stream"
        previous = runs[-1][1] if runs else []
        if stream and previous and previous[-1].get("name") == output.get("name"):
            previous.append(output)
        else:
            runs.append((index, [output] if stream else []))
    return runs


def _joined(text: Any) -> str:
    """A notebook's multi-line string (one string, or a list of its lines) as one string."""
    if isinstance(text, list):
        return "".join(str(line) for line in text)
    return str(text) if text is not None else ""


def _alive(pid: int | None) -> bool:
    import psutil  # psutil: only to look at a process

    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _final_save_done(path: str) -> bool:
    """papermill's last save stamps end_time in the notebook metadata."""
    try:
        notebook = _read_notebook(path)
    except (OSError, ValueError, SagebookError):
        return False
    return bool(notebook.get("metadata", {}).get("papermill", {}).get("end_time"))


def _read_notebook(path: str) -> Any:
    """The notebook at a local path or URI, with cell sources joined into strings."""
    import nbformat  # nbformat: only to read a notebook

    if "://" in path:
        from papermill.iorw import load_notebook_node  # papermill: only to run a notebook

        return load_notebook_node(path)
    return nbformat.reads(Path(path).read_text(), as_version=4)


def capture(record_uri: str, notebook: str | None, source: str, kernel_pid: int,
            owner_pid: int | None, store_options: dict[str, Any] | None = None,
            poll: float = 0.2, settle_timeout: float = 120.0) -> None:
    """Wait for the notebook run to end, then store and judge the executed notebook."""
    _wait_for_the_end(notebook, source, kernel_pid, owner_pid, poll, settle_timeout)
    store_notebook(record_uri, notebook, source, store_options)


def _wait_for_the_end(notebook: str | None, source: str, kernel_pid: int,
                      owner_pid: int | None, poll: float, settle_timeout: float) -> None:
    # The kernel may still write the manifest (the launch cell ending) after papermill is
    # gone, so wait for both; a kernel that outlives its papermill parent exits within
    # seconds, and is not waited for beyond a minute.
    orphaned_since = None
    while _alive(owner_pid) or _alive(kernel_pid):
        if owner_pid is not None and not _alive(owner_pid):
            orphaned_since = orphaned_since or time.monotonic()
            if time.monotonic() - orphaned_since > 60:
                break
        time.sleep(poll)
    if owner_pid is None and source == "papermill" and notebook:
        deadline = time.monotonic() + settle_timeout
        while not _final_save_done(notebook) and time.monotonic() < deadline:
            time.sleep(poll)
        time.sleep(poll * 2)  # papermill writes once more when it reports errors


def store_notebook(record_uri: str, notebook: str | None, source: str,
                   store_options: dict[str, Any] | None = None) -> None:
    """Copy the executed notebook into the record and judge the run by it."""
    record = Record.open_uri(record_uri, **(store_options or {}))
    info: dict[str, Any] = {"source": source, "path": notebook}
    if notebook is None:
        info.update(status="unknown", note=(
            "the output path of this notebook run is unknown: run it with the papermill CLI, "
            "`papermill --inject-paths`, or sagebook.notebooks.execute()"))
        record.update(notebook=info)
        return
    try:
        content = _read_notebook(notebook)
    except (OSError, ValueError) as exc:
        info.update(status="missing", note=f"cannot read {notebook}: {exc}")
        record.update(notebook=info)
        return
    record.put_text("notebook.ipynb",
                    json.dumps(masked_notebook(content), indent=1, ensure_ascii=False) + "\n")
    ok, error = (True, None) if source == "interactive" else judge(content)
    info.update(status="completed" if ok else "failed", uri=record.url("notebook.ipynb"))
    if error:
        info["error"] = error
    if source == "interactive":
        info["note"] = "copied as last saved when the kernel shut down"
    record.reload()
    if record.status not in TERMINAL and not is_remote(record.manifest.get("instance_type", "")):
        if record.manifest.get("host") == socket.gethostname():
            _stop_orphans(record.run_id)
        record.set_status("Interrupted", notebook=info,
                          failure_reason=f"the launch notebook ended during the run: {error}")
    elif not ok and record.status == "Completed":
        record.set_status("Failed", notebook=info,
                          failure_reason=f"launch notebook failed: {error}")
    else:
        record.update(notebook=info)


def _stop_orphans(run_id: str) -> None:
    """A local training process outlives a killed kernel (it runs in its own session, and the
    kernel may die before noting its pid): find it by the run id in its environment and end
    it, as the run it belonged to is over."""
    import psutil  # psutil: only to look at a process

    for process in psutil.process_iter():
        try:
            if process.environ().get("SAGEBOOK_RUN_ID") == run_id:
                os.killpg(process.pid, signal.SIGTERM)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sagebook.notebooks")
    commands = parser.add_subparsers(dest="command", required=True)
    cap = commands.add_parser("capture", help="store an executed notebook in its record")
    cap.add_argument("--record", required=True)
    cap.add_argument("--notebook")
    cap.add_argument("--source", default="papermill")
    cap.add_argument("--kernel-pid", type=int, required=True)
    cap.add_argument("--owner-pid", type=int)
    cap.add_argument("--store-options", type=json.loads, default={},
                     help="the record store's options (profile, region, kms_key, "
                          "expected_owner), as JSON")
    args = parser.parse_args(argv)
    try:
        capture(args.record, args.notebook, args.source, args.kernel_pid, args.owner_pid,
                args.store_options)
    except Exception as exc:  # nobody sees this process's stderr: the record must say it
        Record.open_uri(args.record, **args.store_options).update(notebook={
            "status": "capture-failed", "path": args.notebook,
            "note": f"{type(exc).__name__}: {exc}",
        })
        raise


if __name__ == "__main__":
    main()
