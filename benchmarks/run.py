"""`make bench`: run every benchmark and print one table of figure, baseline, ratio and target.

Each `bench_*.py` module here has `run() -> list[Row]`. Figures are ratios against a baseline
measured in the same run on the same machine, so a noisy or slow machine moves both sides.
Run one module alone with `python benchmarks/run.py local`.

sagebook's bytecode is compiled first, as pip compiles an installed package's (boto3's and
the others' were): an editable install under PYTHONDONTWRITEBYTECODE would otherwise compile
sagebook's modules from source in every process a benchmark starts, which no installed
sagebook does.

Memory rows (unit "MB") take both figures as `measure.Peak`s: a process's own peak, read as
`measure` explains. A bare number, or a peak that may be its launcher's, is refused — the row
says why instead of printing a figure that could be another process's — and the run exits 1.
"""

from __future__ import annotations

import compileall
import importlib
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from measure import Peak

HERE = Path(__file__).resolve().parent


MEMORY = "MB"


@dataclass
class Row:
    figure: str
    value: float | Peak
    baseline: float | Peak
    unit: str
    target: str
    met: bool

    @property
    def ratio(self) -> float:
        value, baseline = (_number(x) for x in (self.value, self.baseline))
        return value / baseline if baseline else float("nan")

    @property
    def refusal(self) -> str:
        """Why this row's figures cannot be printed ('' when they can)."""
        if self.unit != MEMORY:
            return ""
        for side in (self.value, self.baseline):
            if not isinstance(side, Peak):
                return "a bare number, not a process's own peak (see benchmarks/measure.py)"
            if side.doubt:
                return side.doubt
        return ""


def _number(figure: float | Peak) -> float:
    return figure.mb if isinstance(figure, Peak) else figure


def format_row(row: Row) -> str:
    """One line of the table; a refused memory row shows why, not its figures."""
    if row.refusal:
        return f"{row.figure:<58} refused: {row.refusal}"
    value, baseline, unit = _number(row.value), _number(row.baseline), row.unit[:1]
    return (f"{row.figure:<58} {value:>9.3f}{unit} {baseline:>9.3f}{unit} {row.ratio:>7.2f}  "
            f"{row.target:<24} {'yes' if row.met else 'NO'}")


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
    compileall.compile_dir(HERE.parent / "lib" / "sagebook", quiet=1)
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
        print(format_row(row))
    return 1 if any(row.refusal for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
