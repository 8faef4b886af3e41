"""Several local hosts: what splitting a job across host processes costs on one machine.

1. The example, data-parallel on 2 hosts, against 1 host doing the same total work (the same
   epochs over the same rows: each of the 2 hosts trains on half of them, and the hosts
   average their parameters every epoch). Target: within 1.3x of one host — the hosts share
   this machine's cores, so the figure is the price of rehearsing a cluster, not a speed-up.
2. The start-up a host adds: a job of 3 hosts against 1 host, with training code that does
   nothing (prints a line), so the difference is tree, namespace, process and log plumbing.
   Target: under 0.5 s per added host.
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
REPEATS = 3


def run() -> list[Row]:
    scratch = Path(tempfile.mkdtemp(prefix="sagebook-bench-hosts-"))
    env = {**os.environ, "SAGEBOOK_WORK_DIR": str(scratch / "work")}
    trivial = scratch / "trivial"
    trivial.mkdir()
    (trivial / "train.py").write_text("print('started')\n")

    def launch(hosts: int, *overrides: str) -> list[str]:
        return [sys.executable, "-m", "sagebook.cli", "launch", str(CONFIG),
                "-o", f"job.instance_count={hosts}", "-o", f"job.experiments_uri={scratch}/exp",
                *overrides]

    example = ("-o", f"training.epochs={EPOCHS}")
    empty = ("-o", f"job.source_dir={trivial}", "-o", "job.training_schema=")
    timed(launch(1, *example), env)  # warm the page cache for both sides
    one, two, one_empty, three_empty = [], [], [], []
    for _ in range(REPEATS):
        one.append(timed(launch(1, *example), env))
        two.append(timed(launch(2, *example), env))
        one_empty.append(timed(launch(1, *empty), env))
        three_empty.append(timed(launch(3, *empty), env))
    shutil.rmtree(scratch, ignore_errors=True)
    t1, t2 = statistics.median(one), statistics.median(two)
    e1, e3 = statistics.median(one_empty), statistics.median(three_empty)
    per_host = (e3 - e1) / 2
    return [
        Row(f"example, 2 local hosts vs 1, same work, {EPOCHS} epochs (median of {REPEATS})",
            t2, t1, "s", "<= 1.3x", t2 <= 1.3 * t1),
        Row(f"3 local hosts vs 1, empty code: +{per_host:.2f} s per added host", e3, e1, "s",
            "< 0.5 s per added host", per_host < 0.5),
    ]
