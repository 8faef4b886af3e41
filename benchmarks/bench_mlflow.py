"""`sagebook export mlflow` of 1,000 runs to a real MLflow tracking server (sqlite backend,
on 127.0.0.1), started from the SDK venv, which has mlflow.

Each run has a training config of 8 parameters, two metrics of 10 points each, its configs
and request as artifacts. Figures: the first export (every run created) and a second one (every
run found unchanged). Baseline, measured in the same run: the MLflow client creating 1,000
empty runs in 4 threads, as the export uses — the floor any exporter pays for the
runs alone. Targets: the export within 5× that floor, the re-export within 1×.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import Row, timed

REPO = Path(__file__).resolve().parents[1]
SDK = REPO / ".venv-sdk" / "bin"
RUNS = 1_000
EMPTY_RUNS = """
import sys
from concurrent.futures import ThreadPoolExecutor
from mlflow.tracking import MlflowClient
client = MlflowClient(tracking_uri=sys.argv[1])
experiment = client.create_experiment("floor")
with ThreadPoolExecutor(4) as pool:
    list(pool.map(lambda i: client.create_run(experiment, tags={"i": str(i)}),
                  range(int(sys.argv[2]))))
"""


def write_runs(uri: str, count: int) -> None:
    from sagebook.record import Record, job_name
    from sagebook.stores import open_store

    store = open_store(uri)
    for i in range(count):
        run_id = f"20260101-{i:06d}-{i:06x}"
        training = {"learning_rate": 10 ** -(i % 4), "optimizer": ("adam", "sgd")[i % 2],
                    "epochs": 10, "batch_size": 64, "hidden_units": 64 + i % 3,
                    "alpha": 0.0001, "seed": i, "data": {"train_file": "train.csv"}}
        record = Record.create(store, "bench", run_id, {
            "user": "ann", "instance_type": "ml.m5.large", "job_name": job_name("bench", run_id),
            "git": {"commit": f"{i:040x}", "dirty": False}, "params": training,
            "tags": {"team": "ml"},
        })
        record.put_text("sagemaker_config.yaml", "instance_type: ml.m5.large\n"
                                                 "max_runtime: 3600\n")
        record.put_text("config/training_config.yaml", json.dumps(training))
        record.put_text("request.json", json.dumps({"TrainingJobName": run_id}))
        record.put_text("metrics.jsonl", "".join(
            json.dumps({"name": name, "value": 1 / (step + 1), "step": step,
                        "timestamp": 1767225600 + step}) + "\n"
            for step in range(1, 11) for name in ("val_loss", "val_accuracy")))
        record.set_status("Completed", final_metrics={"val_accuracy": 0.9, "val_loss": 0.1})


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(SDK / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and server.poll() is None:
        with socket.socket() as attempt:
            if attempt.connect_ex(("127.0.0.1", port)) == 0:
                return server, f"http://127.0.0.1:{port}"
        time.sleep(0.5)
    server.kill()
    raise RuntimeError("mlflow server did not start")


def run() -> list[Row]:
    if not (SDK / "mlflow").exists():
        print("  no .venv-sdk with mlflow (make sdk-venv): skipped", file=sys.stderr)
        return []
    scratch = Path(tempfile.mkdtemp(prefix="sagebook-bench-mlflow-"))
    env = {**os.environ, "PYTHONPATH": str(REPO / "lib")}
    server, url = start_server(scratch)
    try:
        print(f"  writing {RUNS} runs …", file=sys.stderr, flush=True)
        write_runs(str(scratch / "store"), RUNS)
        floor = timed([str(SDK / "python"), "-c", EMPTY_RUNS, url, str(RUNS)], env)
        command = [str(SDK / "python"), "-m", "sagebook.cli", "export", "mlflow",
                   "--tracking-uri", url, "--store", str(scratch / "store")]
        first = timed(command, env)
        again = timed(command, env)
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(scratch, ignore_errors=True)
    return [
        Row(f"export {RUNS:,} runs to MLflow: wall", first, floor, "s",
            "<= 5x 1,000 empty runs", first <= 5 * floor),
        Row(f"export again, {RUNS:,} unchanged runs: wall", again, floor, "s",
            "<= 1x 1,000 empty runs", again <= floor),
    ]
