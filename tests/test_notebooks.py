"""The launch notebook with a real kernel, and the executed notebook reaching the record: the
papermill CLI, pm.execute_notebook from Python, a failing cell, a killed kernel, and an
interactive kernel."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from conftest import REPO, manifest, runs, sagebook, wait_for

LAUNCH = REPO / "notebooks" / "launch.ipynb"
PAPERMILL = Path(sys.executable).parent / "papermill"


def test_jupyter_lab_runs_from_the_environment_make_setup_builds():
    """README's third way to launch, `jupyter lab notebooks/launch.ipynb`: `make setup` installs
    the notebook extra, which brings JupyterLab, and this environment's `jupyter` has it."""
    assert "-e '.[notebook]'" in (REPO / "Makefile").read_text()
    result = subprocess.run([str(Path(sys.executable).parent / "jupyter"), "lab", "--version"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split(".")[0]) >= 4, result.stdout


def papermill(notebook: Path, out: Path, *params: str, timeout: float = 180):
    args = [str(PAPERMILL), str(notebook), str(out)]
    for param in params:
        name, _, value = param.partition("=")
        args += ["-p", name, value]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def captured(experiments: Path) -> dict:
    """The single run's manifest once the capture process has judged the notebook."""
    def done():
        found = runs(experiments)
        if len(found) == 1:
            m = manifest(found[0])
            if m.get("notebook", {}).get("status") not in (None, "pending"):
                return m
        return None
    return wait_for(done, timeout=60, what="the notebook capture")


def test_launch_notebook_is_committed_without_outputs_and_declares_parameters():
    import papermill as pm

    nb = nbformat.read(LAUNCH, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count")
               for c in nb.cells if c.cell_type == "code")
    assert set(pm.inspect_notebook(str(LAUNCH))) == {"config", "overrides", "wait", "sweep"}


@pytest.mark.slow
def test_papermill_cli_run_lands_the_executed_notebook_in_the_record(make_config, tmp_path):
    out = tmp_path / "out.ipynb"
    result = papermill(LAUNCH, out, f"config={make_config()}", 'overrides=["training.epochs=1"]')
    assert result.returncode == 0, result.stderr
    m = captured(tmp_path / "experiments")
    assert m["status"] == "Completed" and m["launched_via"] == "notebook"
    assert m["config"]["overrides"] == ["training.epochs=1"]
    assert m["notebook"]["status"] == "completed" and m["notebook"]["path"] == str(out)
    run = runs(tmp_path / "experiments")[0]
    stored = nbformat.read(run / "notebook.ipynb", as_version=4)
    # the final save, after the kernel shut down: it carries papermill's end time
    assert stored.metadata.papermill["end_time"]
    assert stored == nbformat.read(out, as_version=4)
    text = json.dumps(stored)
    assert "epoch=1 " in text and text.count(f"record: {run}") == 1  # said once, at the end


@pytest.mark.slow
def test_invalid_parameter_fails_the_notebook_without_a_record(make_config, tmp_path):
    out = tmp_path / "out.ipynb"
    result = papermill(LAUNCH, out, f"config={make_config()}", "overrides=7")
    assert result.returncode == 1
    # papermill's own traceback comes first (README, "Bad input"); the message is the last line
    assert "parameter overrides" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "experiments").exists()
    error = [o for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", [])
             if o.output_type == "error"]
    assert error[0].ename == "ConfigError"
    assert error[0].traceback == [f"ConfigError: {error[0].evalue}"]  # a message, no traceback


@pytest.mark.slow
def test_failing_training_fails_notebook_and_record(make_config, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("pixel_0,label\nx,1\n")
    path = make_config(channels={"train": str(bad)}, training={"data": {"train_file": "bad.csv"}})
    result = papermill(LAUNCH, tmp_path / "out.ipynb", f"config={path}")
    assert result.returncode == 1
    m = captured(tmp_path / "experiments")
    assert m["status"] == "Failed"
    assert m["notebook"]["status"] == "failed" and "RunFailed" in m["notebook"]["error"]


@pytest.mark.slow
def test_a_failing_cell_after_the_launch_marks_the_record_failed(make_config, tmp_path):
    nb = nbformat.read(LAUNCH, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("raise ValueError('analysis broke')"))
    notebook = tmp_path / "launch_plus.ipynb"
    nbformat.write(nb, notebook)
    result = papermill(notebook, tmp_path / "out.ipynb", f"config={make_config()}")
    assert result.returncode == 1
    m = captured(tmp_path / "experiments")
    assert m["status"] == "Failed"
    assert "analysis broke" in m["failure_reason"]
    assert [h["status"] for h in m["status_history"]][-2:] == ["Completed", "Failed"]


@pytest.mark.slow
def test_killed_kernel_marks_the_run_interrupted_and_stops_its_process(make_config, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    pid_file = tmp_path / "train.pid"
    (code / "train.py").write_text(textwrap.dedent(f"""
        import os, signal, time
        import psutil
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        print("killing the kernel", flush=True)
        # the training's parent is its supervisor; the kernel launched the supervisor
        os.kill(psutil.Process(os.getppid()).ppid(), signal.SIGKILL)
        time.sleep(60)
    """))
    path = make_config(source_dir=str(code), training_schema=None)
    out = tmp_path / "out.ipynb"
    result = papermill(LAUNCH, out, f"config={path}")
    assert result.returncode != 0
    m = captured(tmp_path / "experiments")
    assert m["status"] == "Interrupted"
    assert m["notebook"]["status"] == "failed"
    assert (runs(tmp_path / "experiments")[0] / "notebook.ipynb").is_file()
    pid = int(pid_file.read_text())
    import psutil

    wait_for(lambda: not psutil.pid_exists(pid) or
             psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             timeout=30, what="the orphaned training process to stop")


@pytest.mark.slow
def test_execute_from_python_has_the_notebook_in_the_record_when_it_returns(make_config,
                                                                              tmp_path, caplog):
    from sagebook.notebooks import execute

    out = tmp_path / "out.ipynb"
    with caplog.at_level("INFO", logger="papermill"):
        execute(out, config=str(make_config()), overrides=["training.epochs=1"],
                progress_bar=False)
    # its own two parameters are for the kernel: papermill's note on them is not shown
    assert "Executing notebook" in caplog.text and "unknown parameter" not in caplog.text
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)  # no waiting: execute() stored it before returning
    assert m["status"] == "Completed"
    assert m["notebook"]["status"] == "completed" and m["notebook"]["path"] == str(out)
    stored = nbformat.read(run / "notebook.ipynb", as_version=4)
    assert stored.metadata.papermill["end_time"]
    assert stored == nbformat.read(out, as_version=4)


@pytest.mark.slow
def test_execute_stores_the_notebook_of_a_failed_run_before_raising(make_config, tmp_path):
    import papermill as pm

    from sagebook.notebooks import execute

    bad = tmp_path / "bad.csv"
    bad.write_text("pixel_0,label\nx,1\n")
    path = make_config(channels={"train": str(bad)}, training={"data": {"train_file": "bad.csv"}})
    try:
        execute(tmp_path / "out.ipynb", config=str(path), progress_bar=False)
    except pm.PapermillExecutionError as exc:
        assert exc.ename == "RunFailed"
    else:
        raise AssertionError("a failed run must fail the notebook")
    m = manifest(runs(tmp_path / "experiments")[0])
    assert m["status"] == "Failed" and m["notebook"]["status"] == "failed"


def test_show_says_the_notebook_is_pending_until_papermill_has_exited(make_config, tmp_path):
    from sagebook.record import Record
    from sagebook.stores import open_store

    store = open_store(str(tmp_path / "experiments"))
    record = Record.create(store, "exp", "20260101-000000-abcdef", {"instance_type": "local"})
    record.update(notebook={"status": "pending", "source": "papermill",
                            "path": str(tmp_path / "out.ipynb"),
                            "note": "copied into the record once the notebook run is over"})
    result = sagebook("show", "abcdef", "--store", str(tmp_path / "experiments"))
    assert result.returncode == 0, result.stderr
    assert ("notebook status: pending (copied into the record once the notebook run is over: "
            f"{tmp_path / 'out.ipynb'})") in result.stdout


@pytest.mark.slow
def test_plain_execute_notebook_says_why_the_notebook_is_missing(make_config, tmp_path):
    import papermill as pm

    pm.execute_notebook(str(LAUNCH), str(tmp_path / "out.ipynb"), progress_bar=False,
                        parameters={"config": str(make_config()),
                                    "overrides": ["training.epochs=1"]})
    m = captured(tmp_path / "experiments")
    assert m["status"] == "Completed"
    assert m["notebook"]["status"] == "unknown"
    assert "sagebook.notebooks.execute()" in m["notebook"]["note"]


@pytest.mark.slow
def test_interactive_kernel_copies_the_saved_notebook_at_shutdown(make_config, tmp_path):
    from jupyter_client.manager import start_new_kernel

    notebook = tmp_path / "mine.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]),
                   notebook)
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path),
                                       env={**__import__("os").environ,
                                            "JPY_SESSION_NAME": str(notebook)})
    try:
        reply = client.execute_interactive(
            "import sagebook.notebooks\n"
            f"run = sagebook.notebooks.launch({str(make_config())!r}, ['training.epochs=1'])",
            timeout=120)
        assert reply["content"]["status"] == "ok"
        m = manifest(runs(tmp_path / "experiments")[0])
        assert m["notebook"]["status"] == "pending"
        assert m["notebook"]["source"] == "interactive"
        assert m["notebook"]["path"] == str(notebook)
    finally:
        client.stop_channels()
        manager.shutdown_kernel()
    m = captured(tmp_path / "experiments")
    assert m["notebook"]["status"] == "completed"
    stored = runs(tmp_path / "experiments")[0] / "notebook.ipynb"
    assert nbformat.read(stored, as_version=4).cells[0].source == "1 + 1"

