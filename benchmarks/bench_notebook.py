"""The papermill launch vs. the CLI launch of the same local run.

Target: `papermill notebooks/launch.ipynb …` adds at most one second over `sagebook launch`
beyond what any papermill run costs (papermill's start, the kernel's start and shutdown),
measured here as the run of a one-cell notebook.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

import nbformat
from run import Row, timed

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "sagemaker_config.local.yaml"
REPEATS = 5
PAPERMILL = str(Path(sys.executable).parent / "papermill")



def run() -> list[Row]:
    scratch = Path(tempfile.mkdtemp(prefix="sagebook-bench-nb-"))
    env = {**os.environ, "SAGEBOOK_WORK_DIR": str(scratch / "work"),
           "SAGEBOOK_EXPERIMENTS_URI": str(scratch / "exp"),
           "JUPYTER_DATA_DIR": str(Path(sys.prefix) / "share" / "jupyter")}
    overrides = ["training.epochs=1", f"job.experiments_uri={scratch / 'exp'}"]
    cli = [sys.executable, "-m", "sagebook.cli", "launch", str(CONFIG)]
    for item in overrides:
        cli += ["-o", item]
    notebook = [PAPERMILL, str(REPO / "notebooks/launch.ipynb"), str(scratch / "out.ipynb"),
                "-p", "config", str(CONFIG), "-p", "overrides", repr(overrides).replace("'", '"')]
    trivial_path = scratch / "trivial.ipynb"
    trivial_nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("pass")])
    trivial_nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                         "language": "python"}
    nbformat.write(trivial_nb, trivial_path)
    trivial = [PAPERMILL, str(trivial_path), str(scratch / "trivial.out.ipynb")]

    for command in (cli, notebook, trivial):  # warm the file cache
        timed(command, env)
    times: dict[str, list[float]] = {"cli": [], "notebook": [], "trivial": []}
    for _ in range(REPEATS):
        times["cli"].append(timed(cli, env))
        times["notebook"].append(timed(notebook, env))
        times["trivial"].append(timed(trivial, env))
    cli_s, nb_s, trivial_s = (statistics.median(times[k]) for k in ("cli", "notebook", "trivial"))
    extra = nb_s - cli_s - trivial_s
    return [
        Row("papermill launch vs CLI launch (local, 1 epoch)", nb_s, cli_s, "s",
            "informational", True),
        Row("  of which papermill + kernel (one-cell notebook)", trivial_s, cli_s, "s",
            "informational", True),
        Row(f"  notebook launch vs CLI launch + one-cell notebook (+{extra:.2f} s)", nb_s,
            cli_s + trivial_s, "s", "<= +1 s", extra <= 1.0),
    ]
