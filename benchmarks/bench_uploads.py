"""Uploading a local data folder: sagebook's content-addressed upload vs. boto3's TransferManager.

A folder of 10,000 files and 1 GB (SAGEBOOK_BENCH_UPLOAD_MB and _FILES scale it) goes to a local
S3 endpoint (moto's server, in a process of its own), each upload in a fresh process:
- boto3's TransferManager, every file submitted, default concurrency (the baseline);
- sagebook's `uploads.plan_data` + `uploads.upload`, with a cold digest cache into an empty
  uploads root: hashing every file included;
- sagebook again with nothing changed: the digests come from the cache and the marker says
  the upload is complete, so 0 bytes go up.
The first two run in turns, SAGEBOOK_BENCH_UPLOAD_ROUNDS (3) pairs, and their medians are
compared, so that a change in the shared machine's load falls on both; the server is emptied
between pairs.
Targets: at least as fast as the baseline (ratio <= 1.0); the unchanged re-upload sends 0 bytes
in under a second; peak memory bounded: within 64 MB of the baseline's, whatever the data's size
(files are streamed, never read whole). Both timings start after the libraries are imported;
each peak is the process's own (`measure`), not this runner's.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

from measure import measure
from run import Row

MEGABYTES = int(os.environ.get("SAGEBOOK_BENCH_UPLOAD_MB", "1024"))
FILES = int(os.environ.get("SAGEBOOK_BENCH_UPLOAD_FILES", "10000"))
ROUNDS = int(os.environ.get("SAGEBOOK_BENCH_UPLOAD_ROUNDS", "3"))
CREATE_BUCKETS = ("import boto3; c = boto3.client('s3'); "
                  "[c.create_bucket(Bucket=b) for b in ('baseline', 'sagebook')]")

BASELINE = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    import boto3
    from boto3.s3.transfer import TransferManager
    folder, start = Path(sys.argv[1]), time.perf_counter()
    client = boto3.client("s3")
    manager = TransferManager(client)
    futures = [manager.upload(str(p), "baseline", f"data/{p.relative_to(folder).as_posix()}")
               for p in sorted(folder.rglob("*")) if p.is_file()]
    for future in futures:
        future.result()
    manager.shutdown()
    print(json.dumps({"seconds": time.perf_counter() - start}))
""")

SAGEBOOK = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from sagebook.backends import uploads
    start = time.perf_counter()  # as for the baseline: the work, not the library's import
    item = uploads.plan_data("train", Path(sys.argv[1]), "s3://sagebook/_uploads")
    sent = uploads.upload([item], {}, echo=lambda line: None)
    uploads.save_digest_cache()
    print(json.dumps({"seconds": time.perf_counter() - start, "bytes": sent}))
""")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _make_folder(folder: Path) -> None:
    size = MEGABYTES * (1 << 20) // FILES
    block = os.urandom(size)
    for index in range(FILES):
        path = folder / f"part-{index // 1000:03d}" / f"{index:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(index.to_bytes(8, "big") + block[8:])  # every file different


def _run(script: str, folder: Path, env: dict[str, str]) -> dict:
    """What the script printed, and its own peak memory as "peak"."""
    answer = measure([sys.executable, "-c", script, str(folder)], env)
    return {**json.loads(answer.stdout.strip().splitlines()[-1]), "peak": answer.peak}


def run() -> list[Row]:
    scratch = Path(tempfile.mkdtemp(prefix="sagebook-bench-up-"))
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
               "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        folder = scratch / "data"
        _make_folder(folder)
        baselines, firsts = [], []
        for turn in range(ROUNDS):
            # an empty server and a cold digest cache: every pair starts from the same state
            urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}/moto-api/reset", method="POST")).close()
            subprocess.run([sys.executable, "-c", CREATE_BUCKETS], env=env, check=True)
            cache = {"XDG_CACHE_HOME": str(scratch / f"cache-{turn}")}
            baselines.append(_run(BASELINE, folder, env))
            firsts.append(_run(SAGEBOOK, folder, {**env, **cache}))
        again = _run(SAGEBOOK, folder, {**env, **cache})
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    label = f"{MEGABYTES} MB / {FILES} files"
    data_mb = MEGABYTES
    ours = statistics.median(r["seconds"] for r in firsts)
    base = statistics.median(r["seconds"] for r in baselines)
    peak = max((r["peak"] for r in firsts), key=lambda p: p.kb)
    base_peak = max((r["peak"] for r in baselines), key=lambda p: p.kb)
    return [
        Row(f"upload {label}: sagebook (hashing incl.) vs TransferManager (median of {ROUNDS})",
            ours, base, "s", "<= 1.0x", ours <= base),
        Row("  re-upload, nothing changed, vs TransferManager's upload", again["seconds"], base,
            "s", "< 1 s and 0 bytes", again["seconds"] < 1.0 and again["bytes"] == 0),
        Row(f"  peak memory (MB) vs TransferManager's; the data is {data_mb} MB",
            peak, base_peak, "MB", "bounded: <= base + 64 MB", peak.mb <= base_peak.mb + 64),
    ]
