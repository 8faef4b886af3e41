"""`make bench`: run every benchmark and print one table of figure, baseline, ratio and target.

Each `bench_*.py` module here has `run() -> list[Row]`. Figures are ratios against a baseline
measured in the same run on the same machine, so a noisy or slow machine moves both sides.
Run one module alone with `python benchmarks/run.py local`.
"""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class Row:
    figure: str
    value: float
    baseline: float
    unit: str
    target: str
    met: bool

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")


def timed(command: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one run of `command`, which must succeed (its error output says why)."""
    start = time.perf_counter()
    result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return elapsed


def main(names: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    # the local S3/SageMaker servers some benchmarks start would log every request
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if names:
        modules = [m for m in modules if m.removeprefix("bench_") in names]
    rows: list[Row] = []
    for name in modules:
        print(f"running {name} …", file=sys.stderr, flush=True)
        rows += importlib.import_module(name).run()
    header = f"{'figure':<58} {'value':>10} {'baseline':>10} {'ratio':>7}  {'target':<24} met"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row.figure:<58} {row.value:>9.3f}{row.unit[:1]} {row.baseline:>9.3f}"
              f"{row.unit[:1]} {row.ratio:>7.2f}  {row.target:<24} {'yes' if row.met else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
