"""Credential masking (`secrets.redact`), which every log line and record text goes through.

Targets: linear time in the size of what is masked. A 5 MB line (one long run of name
characters, the shape that made the old single pattern backtrack quadratically) is timed
against 10 times a 500 KB line of the same shape; a 1 GB log, streamed line by line as the log
sink masks it, against 1,000 times its first megabyte. A ratio near 1 is linear; the quadratic
pattern gave ~10 for the line and never finished the log.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

from run import Row

from sagebook.secrets import redact, secret_values

LINE_MB = 5
LOG_MB = 1024
_LOG_LINES = [
    "epoch 3 step 1200 loss=0.4213 accuracy=0.8812 lr=0.001",
    "INFO dataloader: shard 17 of 64 ready (12,288 records, token=hf_AbCdEfGh123456789)",
    "DEBUG env AWS_SECRET_ACCESS_KEY=Zm9vYmFyYmF6cXV4/c2VjcmV0+a2V5MTIzNDU2Nzg5",
    "WARN gradient norm 13.2 above clip value 10.0; path=/opt/ml/input/data/train/x.csv",
]


def _seconds(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def _mask_log(megabytes: int) -> None:
    values = secret_values()  # as the log sink does: once per run, not per line
    for line in _log(megabytes):
        redact(line, values)


def _log(megabytes: int) -> Iterator[str]:
    budget = megabytes << 20
    for line in itertools.cycle(_LOG_LINES):
        if budget <= 0:
            return
        budget -= len(line) + 1
        yield line


def run() -> list[Row]:
    size = LINE_MB * 1_000_000
    small = min(_seconds(redact, "a" * (size // 10)) for _ in range(5))
    line = min(_seconds(redact, "a" * size) for _ in range(3))
    first_mb = min(_seconds(_mask_log, 1) for _ in range(3))
    log = _seconds(_mask_log, LOG_MB)
    return [
        Row(f"masking a {LINE_MB} MB line (baseline: 10 x a 500 KB line)", line, 10 * small,
            "s", "ratio < 3 (linear)", line < 3 * 10 * small),
        Row(f"masking a {LOG_MB / 1024:g} GB log, streamed (baseline: {LOG_MB} x its 1st MB)",
            log, LOG_MB * first_mb, "s", "ratio < 3 (linear)", log < 3 * LOG_MB * first_mb),
    ]
