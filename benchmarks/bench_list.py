"""`sagebook list` over 1,000, 10,000 and 100,000 synthetic runs, in a local folder and in S3
(moto).

The runs are written through the real write path (`Record.create` → manifest + index event,
writer-side compaction as it happens in use), spread over 20 experiments. Each figure is the
wall time of the whole `sagebook list` command (a fresh process: interpreter start, imports,
index read, sort, print) and its peak resident memory.

Baselines, measured in the same run: for time, reading every manifest (what listing costs
without the index, with the same parallel reads); for memory, a process that only imports
what `list` imports (and, for S3, creates its boto3 client). At 10,000 runs, `list --where
'val_accuracy>0.5' --where optimizer=adam --params` is measured against the plain `list`.
Targets: about two seconds, and memory that does not grow with the store (within 100 MB of
that process at 10,000 runs).

At 100,000 runs (`write_store`, set-up, not timed: writing them one by one through
`Record.create` would take 10 minutes locally and 20 on moto) the manifests and their index
events are written directly, in the shape `Record.create` gives them, and the real compactor
folds the events into pages every 10,000 runs; 60 % of the runs are in one experiment (past the
old one-page cap), 5 % are unfinished, 1 % carry a tag and a note (annotation events), a
quarter are trials of one sweep, and the last 100 runs are still events. The S3 store holds
that same `_index/` and the records of the runs `show` and `diff` read: `list` reads only
`_index/`, and a record is read by its own key, so the other 99,998 records change no figure.
Rows: `list` (≤ 1 s locally, ≤ 3 s on S3), `list --where 'val_accuracy>0.9' --params` (≤ 1 s
locally), `--sort val_loss`, `list --sweep`, `show` and `diff`, each with its own peak memory
(≤ 200 MB), against a process that only imports what `list` imports (its start-up, and for
memory its peak, with a boto3 client on S3). `list` reads the columns of the index's chunks and
the summaries of the runs it shows (README, "100,000 runs, and a million").
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from measure import Peak
from run import Row

SIZES = (1_000, 10_000)
EXPERIMENTS = 20
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
# Peak memory as VmHWM of this process: ru_maxrss would include the forking parent's, which
# here holds the whole moto S3 in memory.
PEAK = "[l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]"
PROBE = ("import sys; from sagebook.cli import main; code = main(sys.argv[1:]); "
         f"print('PEAK_KB', {PEAK}, file=sys.stderr); sys.exit(code)")


def write_runs(uri: str, count: int, start: int = 0) -> None:
    """Runs as launches leave them, finished, with metrics and a git commit."""
    from sagebook.record import Record, job_name
    from sagebook.stores import open_store

    store = open_store(uri)

    def one(i: int) -> None:
        experiment = f"exp-{i % EXPERIMENTS:02d}"
        run_id = f"2026{1 + i // 400_000:02d}{1 + i // 14_400 % 28:02d}-{i % 86400:06d}-{i:06x}"
        status = ("Completed", "Completed", "Completed", "Failed", "Stopped")[i % 5]
        Record.create(store, experiment, run_id, {
            "created": (EPOCH + dt.timedelta(minutes=i)).isoformat(timespec="milliseconds"),
            "user": f"user{i % 7}",
            "instance_type": "ml.m5.large" if i % 3 else "local", "backend": "LocalBackend",
            "job_name": job_name(experiment, run_id), "status": status,
            "status_history": [{"status": "Starting", "time": "2026-01-01T00:00:00+00:00"},
                               {"status": status, "time": "2026-01-01T00:20:00+00:00"}],
            "ended": "2026-01-01T00:20:00.000+00:00",
            "git": {"commit": f"{i:040x}", "dirty": i % 4 == 0, "branch": "main"},
            "config": {"overrides": [f"training.epochs={i % 20}"], "digest": f"{i:016x}"},
            "final_metrics": {"train_loss": 1 / (i + 1), "val_loss": 2 / (i + 1),
                              "val_accuracy": (i % 100) / 100},
            "tags": {"team": "ml"}, "image_uri": "123456789012.dkr.ecr/x:1",
            "params": {"learning_rate": 10 ** -(i % 4), "optimizer": ("adam", "sgd")[i % 2],
                       "epochs": i % 20, "batch_size": 64, "hidden_units": 64,
                       "data.train_file": "train.csv"},
        })

    indices = range(start, start + count)
    if uri.startswith("s3://"):
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(one, indices))
    else:
        for i in indices:
            one(i)


HUGE = 100_000
SWEEP = "sweep-20260101-000000-a1b2c3"


def write_store(root: Path, count: int = HUGE) -> list[str]:
    """A local store of `count` runs (see the module docstring); the ids of two runs of the big
    experiment, for `show` and `diff`."""
    import json as _json
    import socket

    from sagebook import index
    from sagebook.stores import open_store
    from sagebook.sweeps.record import SweepRecord

    store = open_store(str(root))
    SweepRecord.create(store, "exp-00", SWEEP, {
        "backend": "sagemaker", "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "parameters": ["learning_rate", "optimizer"], "status": "Completed",
        "tuning_job": {"name": SWEEP, "status": "Completed"}})
    host, picked = socket.gethostname(), []
    for i in range(count):
        experiment = "exp-00" if i % 10 < 6 else f"exp-{i % EXPERIMENTS:02d}"
        moment = EPOCH + dt.timedelta(minutes=i)  # a run id begins with its time, as launched
        run_id, created = f"{moment:%Y%m%d-%H%M%S}-{i:06x}", moment.isoformat(
            timespec="milliseconds")
        status = ("InProgress" if i % 20 == 7 else
                  ("Completed", "Completed", "Completed", "Failed", "Stopped")[i % 5])
        params = {"learning_rate": 10 ** -(i % 4), "optimizer": ("adam", "sgd")[i % 2],
                  "epochs": i % 20, "batch_size": 64, "hidden_units": 64,
                  "data.train_file": "train.csv"}
        manifest = {
            "schema": 1, "run_id": run_id, "experiment": experiment, "status": status,
            "status_history": [{"status": "Starting", "time": created},
                               {"status": "InProgress", "time": created},
                               *([{"status": status, "time": created}]
                                 if status != "InProgress" else [])],
            "created": created, "user": f"user{i % 7}", "host": host,
            "instance_type": "ml.m5.large" if i % 3 else "local", "backend": "LocalBackend",
            "job_name": f"{experiment}-{run_id}"[:63], "image_uri": "123456789012.dkr.ecr/x:1",
            "git": {"commit": f"{i:040x}", "dirty": i % 4 == 0, "branch": "main"},
            "config": {"overrides": [f"training.epochs={i % 20}"], "digest": f"{i:016x}"},
            "tags": {"team": "ml"}, "params": params, "revision": 1, "updated": created,
            "record_uri": store.url(f"{experiment}/{run_id}"),
        }
        if status != "InProgress":
            manifest.update(ended=created, final_metrics={
                "train_loss": 1 / (i + 1), "val_loss": 2 / (i + 1),
                "val_accuracy": (i * 7919 % 1000) / 1000})
        if i % 4 == 0 and experiment == "exp-00":
            manifest["sweep"] = {"id": SWEEP, "parameters": {
                "learning_rate": params["learning_rate"], "optimizer": params["optimizer"]}}
        folder = root / experiment / run_id
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(_json.dumps(manifest))
        events = root / index.EVENTS / experiment
        events.mkdir(parents=True, exist_ok=True)
        (events / f"{run_id}.000001.json").write_text(
            _json.dumps(index.summarize(manifest), separators=(",", ":")))
        if i % 100 == 3:
            stamp = f"{created}-{i:06x}"
            index.annotate(store, experiment, run_id, stamp, {
                "tags.reviewed": "yes", "note": f"looked at run {i}: fine"})
        if experiment == "exp-00" and len(picked) < 2 and i > count // 2 and status != \
                "InProgress":
            picked.append(f"{experiment}/{run_id}")
        if (i + 1) % 10_000 == 0 or i == count - 101:
            for n in range(EXPERIMENTS):
                index.compact(store, f"exp-{n:02d}")
    return picked


def upload(root: Path, uri: str, picked: list[str]) -> None:
    """The local store's `_index/`, its sweep and the picked runs' records, into S3."""
    from sagebook.stores import open_store

    store = open_store(uri)
    files = [p for p in root.rglob("*") if p.is_file() and (
        p.relative_to(root).parts[0] in ("_index", "_sweeps")
        or "/".join(p.relative_to(root).parts[:2]) in picked)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda p: store.write_bytes(str(p.relative_to(root)), p.read_bytes()),
                      files))


def measure_command(env: dict[str, str], *args: str) -> tuple[float, Peak]:
    """Wall seconds and own peak memory of `sagebook ARGS` in a fresh process (best of 3)."""
    def once() -> tuple[float, Peak]:
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", PROBE, *args], env=env,
                                capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
        return seconds, Peak.vmhwm(int(result.stderr.rsplit("PEAK_KB", 1)[1].split()[0]))

    return min((once() for _ in range(3)), key=lambda measured: measured[0])


def bare_start(env: dict[str, str]) -> float:
    """Wall seconds of a process that only imports what `list` imports: the start-up floor."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sagebook.cli, sagebook.runs.listing, "
                    "sagebook.runs.text"], env=env, check=True)
    return time.perf_counter() - start


def rows_100k(scratch: Path, env: dict[str, str]) -> list[Row]:
    """The 100,000-run rows, local and S3 (AWS_ENDPOINT_URL in `env` names the moto server)."""
    root = scratch / "huge"
    started = time.perf_counter()
    picked = write_store(root)
    print(f"  wrote {HUGE:,} runs in {time.perf_counter() - started:.0f} s", file=sys.stderr,
          flush=True)
    upload(root, "s3://bench/huge", picked)
    floor = min(bare_start(env) for _ in range(3))
    rows: list[Row] = []
    for where, uri, limit in (("local", str(root), 1.0), ("S3", "s3://bench/huge", 3.0)):
        bare = bare_process(env, where == "S3")
        store = ("--store", uri, "--no-refresh")
        subprocess.run([sys.executable, "-c", PROBE, "list", *store], env=env, check=True,
                       capture_output=True)  # the first list compacts the 100 new events
        for name, args, target in (
                ("list", ("list", *store), limit),
                ("list --where 'val_accuracy>0.9' --params",
                 ("list", *store, "--where", "val_accuracy>0.9", "--params"),
                 1.0 if where == "local" else limit),
                ("list --sort val_loss", ("list", *store, "--sort", "val_loss"), limit),
                ("list --sweep", ("list", *store, "--sweep", SWEEP), limit),
                ("show", ("show", "--store", uri, picked[0]), limit),
                ("diff", ("diff", "--store", uri, *picked), limit)):
            seconds, peak = measure_command(env, *args)
            label = f"{name} {HUGE:,} runs, {where}"
            rows.append(Row(f"{label}: wall", seconds, floor, "s", f"<= {target:g} s",
                            seconds <= target))
            rows.append(Row(f"{label}: peak memory", peak, bare, "MB", "<= 200 MB",
                            peak.mb <= 200))
    return rows


# filters over a metric and a parameter, with the parameter columns that differ
FILTERED = ("--where", "val_accuracy>0.5", "--where", "optimizer=adam", "--params")


def measure_list(uri: str, env: dict[str, str], *args: str) -> tuple[float, Peak]:
    """Wall seconds and own peak memory of `sagebook list --store uri` in a fresh process."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PROBE, "list", "--store", uri,
                             "--no-refresh", *args], env=env, capture_output=True, text=True,
                            check=True)
    seconds = time.perf_counter() - start
    peak_kb = int(result.stderr.rsplit("PEAK_KB", 1)[1].split()[0])
    return seconds, Peak.vmhwm(peak_kb)


def bare_process(env: dict[str, str], s3: bool) -> Peak:
    """A process that imports what `list` imports (and, for S3, makes its client), no more."""
    probe = ("import sagebook.cli, sagebook.runs.listing, sagebook.runs.text; "
             + ("import boto3; boto3.client('s3'); " if s3 else "") + f"print({PEAK})")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                         text=True, check=True).stdout
    return Peak.vmhwm(int(out))


def read_every_manifest(uri: str, env: dict[str, str]) -> float:
    """The baseline: what listing costs without the index — list the store, read every
    manifest (in parallel, as the index reads its events) — also in a fresh process."""
    probe = ("import json, sys; from sagebook import index; from sagebook.stores import "
             "open_store; store = open_store(sys.argv[1]); "
             "keys = [k for k in store.list() if k.endswith('/manifest.json')]; "
             "print(len([json.loads(v) for v in index.fetch(store, keys).values() if v]))")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", probe, uri], env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - start


def run() -> list[Row]:
    from moto.server import ThreadedMotoServer

    scratch = Path(tempfile.mkdtemp(prefix="sagebook-bench-list-"))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    aws = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
           "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in aws}
    os.environ.update(aws)
    env = {**os.environ}
    rows: list[Row] = []
    try:
        import boto3

        boto3.client("s3").create_bucket(Bucket="bench")
        for where, uri in (("local", str(scratch / "store")), ("S3", "s3://bench/store")):
            written = 0
            bare = bare_process(env, uri.startswith("s3://"))
            for size in SIZES:
                print(f"  writing {size - written} runs to {where} …", file=sys.stderr,
                      flush=True)
                write_runs(uri, size - written, written)
                written = size
                cold, _ = measure_list(uri, env)  # compacts what writers left uncompacted
                warm, peak = min((measure_list(uri, env) for _ in range(3)),
                                 key=lambda measured: measured[0])
                naive = read_every_manifest(uri, env)
                label = f"list {size:,} runs, {where}"
                rows.append(Row(f"{label}: wall (first list {cold:.2f}s)", warm, naive, "s",
                                "<= 2 s", warm <= 2.0))
                rows.append(Row(f"{label}: peak memory", peak, bare, "MB",
                                "<= bare process + 100 MB", peak.mb <= bare.mb + 100))
                if size == SIZES[-1]:  # filtered, with parameter columns: against plain list
                    filtered, filtered_peak = min((measure_list(uri, env, *FILTERED)
                                                   for _ in range(3)), key=lambda m: m[0])
                    label = f"list --where … --params {size:,}, {where}"
                    rows.append(Row(f"{label}: wall", filtered, warm, "s",
                                    "<= 1.5x plain list", filtered <= 1.5 * warm))
                    rows.append(Row(f"{label}: peak memory", filtered_peak, bare, "MB",
                                    "<= bare process + 100 MB",
                                    filtered_peak.mb <= bare.mb + 100))
        rows += rows_100k(scratch, env)
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    return rows
