"""A local run of the example vs. running its training script directly with python.

Target: the `sagebook launch` of an `instance_type: local` config (CLI start, validation,
record, contract tree, log streaming, packing) within 1.2x (+0.5 s) of
`python sagemaker_container/train.py` on the same prepared /opt/ml tree and epochs.
"""

from __future__ import annotations

import json
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
REPEATS = 5



def run() -> list[Row]:
    scratch = Path(tempfile.mkdtemp(prefix="sagebook-bench-"))
    env = {**os.environ, "SAGEBOOK_WORK_DIR": str(scratch / "work")}
    launch = [sys.executable, "-m", "sagebook.cli", "launch", str(CONFIG),
              "-o", f"training.epochs={EPOCHS}", "-o", f"job.experiments_uri={scratch / 'exp'}"]
    timed(launch, env)  # warm caches, and leave a prepared tree for the direct run
    manifest = json.loads(next((scratch / "exp").glob("*/*/manifest.json")).read_text())
    tree = Path(manifest["work_dir"])
    direct_env = {**os.environ, "SAGEMAKER_BASE_DIR": str(tree), "PYTHONUNBUFFERED": "1"}
    direct = [sys.executable, "-u", str(REPO / "sagemaker_container" / "train.py")]

    sagebook_times, direct_times = [], []
    for _ in range(REPEATS):
        sagebook_times.append(timed(launch, env))
        shutil.rmtree(tree / "checkpoints", ignore_errors=True)
        (tree / "checkpoints").mkdir()
        direct_times.append(timed(direct, direct_env))
    shutil.rmtree(scratch, ignore_errors=True)
    ours, base = statistics.median(sagebook_times), statistics.median(direct_times)
    return [Row(f"local run, {EPOCHS} epochs (median of {REPEATS})", ours, base, "s",
                "<= 1.2x + 0.5 s", ours <= 1.2 * base + 0.5)]
