"""Credential masking (`secrets.redact`), which every log line and record text goes through.

Targets: linear time in the size of what is masked. A 5 MB line (one long run of name
characters, the shape that made the old single pattern backtrack quadratically) is timed
against 10 times a 500 KB line of the same shape; a 1 GB log, streamed line by line as the log
sink masks it, against 1,000 times its first megabyte; a 256 MB log whose every line holds a
token (GitHub, Hugging Face, Slack, a JWT behind `Authorization: Bearer`, a URL with a
password, an AWS key pair, a private key's lines) against 256 times its first megabyte. A
ratio near 1 is linear; the quadratic pattern gave ~10 for the line and never finished the log.

Times are the process's CPU time, not the wall clock: masking is single-threaded, and on a
shared machine the wall clock also counts the time other processes had the CPU.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

from run import Row

from sagebook.secrets import Masker, redact

LINE_MB = 5
LOG_MB = 1024
TOKEN_LOG_MB = 256
_LOG_LINES = [
    "epoch 3 step 1200 loss=0.4213 accuracy=0.8812 lr=0.001",
    "INFO dataloader: shard 17 of 64 ready (12,288 records, token=hf_AbCdEfGh123456789)",
    "DEBUG env AWS_SECRET_ACCESS_KEY=Zm9vYmFyYmF6cXV4/c2VjcmV0+a2V5MTIzNDU2Nzg5",
    "WARN gradient norm 13.2 above clip value 10.0; path=/opt/ml/input/data/train/x.csv",
]
_RANDOM = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789aBcDeFgHiJkLmNoPqRsTuVwXyZ"
_TOKEN_LINES = [
    f"cloning https://github.com/org/repo with ghp_{_RANDOM[:36]}",
    f"hub login hf_{_RANDOM[2:36]} for org/model",
    f"notify via xoxb-22222222222-333333333333-{_RANDOM[:24]}",
    f"GET /v1/runs Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0cmFpbmVyIn0."
    f"{_RANDOM[:43]}",
    f"connecting to postgresql://admin:S3cr3t-{_RANDOM[:14]}@db.internal:5432/train",
    f"aws_access_key_id AKIAQWERTYUIOPASDFGH aws_secret_access_key {_RANDOM[:18]}/"
    f"{_RANDOM[20:31]}+{_RANDOM[40:49]}",
    "-----BEGIN RSA PRIVATE KEY-----",
    _RANDOM + "AB",
    _RANDOM[:20] + "==",
    "-----END RSA PRIVATE KEY-----",
    f"uploaded model digest {_RANDOM[:40]} to s3://bucket/exp/run/model.tar.gz",
]


def _seconds(function, *args) -> float:
    start = time.process_time()
    function(*args)
    return time.process_time() - start


def _mask_log(megabytes: int, lines: list[str] = _LOG_LINES) -> None:
    mask = Masker()  # as the log sink does: one per host, the secret variables read once
    for line in _log(megabytes, lines):
        mask(line)


def _log(megabytes: int, lines: list[str]) -> Iterator[str]:
    budget = megabytes << 20
    for line in itertools.cycle(lines):
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
    first_token_mb = min(_seconds(_mask_log, 1, _TOKEN_LINES) for _ in range(3))
    token_log = _seconds(_mask_log, TOKEN_LOG_MB, _TOKEN_LINES)
    return [
        Row(f"masking a {LINE_MB} MB line (baseline: 10 x a 500 KB line)", line, 10 * small,
            "s", "ratio < 3 (linear)", line < 3 * 10 * small),
        Row(f"masking a {LOG_MB / 1024:g} GB log, streamed (baseline: {LOG_MB} x its 1st MB)",
            log, LOG_MB * first_mb, "s", "ratio < 3 (linear)", log < 3 * LOG_MB * first_mb),
        Row(f"masking a {TOKEN_LOG_MB} MB log of tokens (baseline: {TOKEN_LOG_MB} x its 1st MB)",
            token_log, TOKEN_LOG_MB * first_token_mb, "s", "ratio < 3 (linear)",
            token_log < 3 * TOKEN_LOG_MB * first_token_mb),
    ]
