"""The stall watchdog's cost on a normal local run.

Target: the local launch of the example with `stall_timeout: 15m` within 1.05x of the same
launch without it. The watchdog reads the last line's time of each host every time the
launcher polls its processes (every 50 ms); a run that prints never stalls, so that is all
it costs. The two launches alternate, so a machine that slows down slows both.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from run import Row, timed

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "sagemaker_config.local.yaml"
EPOCHS = 10
REPEATS = 7


def run() -> list[Row]:
    scratch = Path(tempfile.mkdtemp(prefix="sagebook-bench-"))
    env = {**os.environ, "SAGEBOOK_WORK_DIR": str(scratch / "work")}
    launch = [sys.executable, "-m", "sagebook.cli", "launch", str(CONFIG),
              "-o", f"training.epochs={EPOCHS}", "-o", f"job.experiments_uri={scratch / 'exp'}"]
    watched = [*launch, "-o", "job.stall_timeout=15m"]
    timed(launch, env)  # warm caches
    plain_times, watched_times = [], []
    for _ in range(REPEATS):
        plain_times.append(timed(launch, env))
        watched_times.append(timed(watched, env))
    shutil.rmtree(scratch, ignore_errors=True)
    ours, base = statistics.median(watched_times), statistics.median(plain_times)
    return [Row(f"local run with stall_timeout, {EPOCHS} epochs (median of {REPEATS})", ours,
                base, "s", "<= 1.05x without it", ours <= 1.05 * base)]
