"""Start-up of the commands a user runs most: `sagebook --help` and `sagebook list`.

Target: under 0.3 s of import time each, measured as the command's wall time minus a bare
`python -c pass` (the interpreter's own start), median of repeated runs. boto3, papermill and
the pydantic models load only in the commands that need them.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

from run import Row, timed

REPEATS = 9


def _median_seconds(command: list[str], env: dict[str, str]) -> float:
    return statistics.median(timed(command, env) for _ in range(REPEATS))


def run() -> list[Row]:
    store = Path(tempfile.mkdtemp(prefix="sagebook-bench-start-"))
    env = {**os.environ, "SAGEBOOK_EXPERIMENTS_URI": str(store)}
    bare = _median_seconds([sys.executable, "-c", "pass"], env)
    rows = []
    for label, args in (("sagebook --help", ["--help"]),
                        ("sagebook list (local store)", ["list", "--store", str(store)])):
        total = _median_seconds([sys.executable, "-m", "sagebook.cli", *args], env)
        rows.append(Row(f"{label} vs `python -c pass` (+{total - bare:.2f} s)", total, bare,
                        "s", "< interpreter + 0.3 s", total - bare < 0.3))
    return rows
