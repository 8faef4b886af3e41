"""Exit codes, as README's table gives them, and Ctrl-C of the commands that run a run.

Ctrl-C (SIGINT) during `sagebook launch` and during the papermill launch of a run and of a
sweep, as a terminal sends it: no Python traceback, the record says Stopped, and the next step
is printed; the command printed is then run as printed. (`sagebook sweep`'s Ctrl-C is
tests/test_sweeps.py's test_ctrl_c_stops_every_trial_then_resume_runs_only_the_rest.)
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, manifest, runs, start_launch, wait_for

HELD_TRAINING = textwrap.dedent("""
    import os, pathlib, time
    pathlib.Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))
    print("training starts", flush=True)
    for _ in range(3000):  # at most 5 min: a failing test cannot leave it running for ever
        if not os.path.exists(os.environ["HOLD_FILE"]):
            break
        time.sleep(0.1)
    print("training ends", flush=True)
""")


def readme_exit_codes() -> dict[int, str]:
    """README's exit-code table: code → when."""
    text = (REPO / "README.md").read_text()
    table = text.split("### Exit codes", 1)[1].split("\n\n")[2]
    rows = [re.match(r"\| (\d+) \| (.+) \|$", line) for line in table.splitlines()[2:]]
    assert all(rows), table
    return {int(row.group(1)): row.group(2) for row in rows if row}


def next_step(output: str, prefix: str) -> list[str]:
    """The command after `next: ` on the line starting with `prefix`, as a shell splits it,
    run by this Python's sagebook."""
    line = next(line for line in output.splitlines() if line.startswith(prefix))
    command = line.split("next: ", 1)[1].split("   ", 1)[0]  # its explanation follows
    words = shlex.split(command)
    assert words[0] == "sagebook", line
    return [sys.executable, "-m", "sagebook.cli", *words[1:]]


@pytest.fixture
def held_config(make_config, tmp_path):
    """A job whose training runs while tmp_path/hold exists."""
    code = tmp_path / "held"
    code.mkdir()
    (code / "train.py").write_text(HELD_TRAINING)
    (tmp_path / "hold").write_text("the training waits while this file exists")
    return make_config(source_dir=str(code), training_schema=None,
                       environment={"PID_FILE": str(tmp_path / "train.pid"),
                                    "HOLD_FILE": str(tmp_path / "hold")})


def test_readme_lists_every_exit_code_of_the_cli():
    codes = readme_exit_codes()
    assert sorted(codes) == [0, 1, 2, 130, 141]
    assert codes[130].startswith("interrupted: Ctrl-C (SIGINT)")
    for word in ("launch", "rerun", "sweep", "attach"):
        assert f"`{word}`" in codes[130]


@pytest.mark.slow
def test_ctrl_c_during_a_launch_exits_130_and_the_printed_rerun_runs_it_again(
        held_config, tmp_path):
    launcher = start_launch(str(held_config), until="training starts")
    launcher.send_signal(signal.SIGINT)  # Ctrl-C: the training runs in a session of its own
    out, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 130, err
    assert readme_exit_codes()[130].startswith("interrupted")
    assert "Traceback" not in err + out
    [run] = runs(tmp_path / "experiments")
    assert manifest(run)["status"] == "Stopped"
    command = next_step(out, "interrupted; next: ")
    assert command[3:] == ["rerun", str(run)]

    (tmp_path / "hold").unlink()
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    [new] = [r for r in runs(tmp_path / "experiments") if r != run]
    assert manifest(new)["status"] == "Completed"
    assert manifest(new)["parent"]["run_id"] == run.name


def start_papermill(config: Path, out: Path, *parameters: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "papermill"), str(REPO / "notebooks/launch.ipynb"),
         str(out), "-p", "config", str(config), *parameters, "--log-output"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.slow
def test_ctrl_c_during_a_papermill_launch_prints_the_next_step_and_no_traceback(
        held_config, tmp_path):
    papermill = start_papermill(held_config, tmp_path / "out.ipynb")
    wait_for(lambda: (tmp_path / "train.pid").exists(), timeout=60, what="the training")
    os.killpg(papermill.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    out, err = papermill.communicate(timeout=60)
    assert "Traceback" not in err + out and "ZMQError" not in err + out, err
    # papermill's own ending on Ctrl-C (README: Exit codes), which its kernel cannot change
    assert papermill.returncode == 1 and err.rstrip().endswith("Aborted!"), err
    [run] = runs(tmp_path / "experiments")
    prefix = f"sagebook: run {run.name} interrupted (Stopped); next: "
    assert next_step(err, prefix)[3:] == ["rerun", str(run)]
    settled = wait_for(lambda: manifest(run)["notebook"]["status"] != "pending" and manifest(run),
                       timeout=60, what="the notebook capture")
    assert settled["status"] == "Stopped"
    assert (run / "notebook.ipynb").is_file()


@pytest.mark.slow
def test_ctrl_c_during_a_papermill_sweep_prints_how_to_resume_it(held_config, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("objective: {metric: val_accuracy, goal: maximize}\n"
                     "parameters:\n  training.epochs: [1, 2]\nmax_parallel: 1\n")
    papermill = start_papermill(held_config, tmp_path / "out.ipynb", "-p", "sweep", str(sweep))
    wait_for(lambda: (tmp_path / "train.pid").exists(), timeout=60, what="the first trial")
    os.killpg(papermill.pid, signal.SIGINT)
    out, err = papermill.communicate(timeout=60)
    assert "Traceback" not in err + out and "ZMQError" not in err + out, err
    [sweep_dir] = (tmp_path / "experiments" / "_sweeps" / "digits-mlp").iterdir()
    assert json.loads((sweep_dir / "sweep.json").read_text())["status"] == "Stopped"
    command = next_step(err, f"sagebook: sweep {sweep_dir.name} interrupted; next: ")
    assert command[3:] == ["sweep", "--resume", sweep_dir.name,
                           "--store", str(tmp_path / "experiments")]

    (tmp_path / "hold").unlink()
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert [t["status"] for t in record["trials"]] == ["Completed", "Completed"]
