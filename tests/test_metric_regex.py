"""Metric regexes come from configs of any branch and from teammates' records (`rerun` replays
them): they run on RE2, in time linear in the line, so no regex and no training output can hang
a launch, and SIGTERM or Ctrl-C ends a launch in every phase.

Python's `re` takes exponential time on `(a+)+$` against `'a'*34+'!'` and holds the GIL while it
does: the launcher neither scrapes on nor answers SIGTERM. Each launch here runs in a child with
a CPU limit and a timeout that SIGKILLs it, so a regression fails the test, not the machine.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import alive, manifest, runs, start_launch, wait_for

EVIL = "a" * 34 + "!"
# the timeout a launch of a few seconds never reaches, and a backtracking one always does
HANG = 300


def limited() -> None:
    """In the child: the kernel ends it after HANG seconds of CPU, should the timeout not."""
    resource.setrlimit(resource.RLIMIT_CPU, (HANG, HANG))


def training(tmp_path: Path, body: str) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(textwrap.dedent(body))
    return code


@pytest.mark.slow
def test_a_backtracking_regex_and_long_lines_cannot_hang_a_launch(make_config, tmp_path):
    code = training(tmp_path, f"""
        for _ in range(5):
            print({EVIL!r}, flush=True)
        print("epoch" + " " * 100_000 + "x", flush=True)  # `\\s*[=:]?\\s*` tried every split
        print("epoch=1 acc=0.5", flush=True)
        print("epoch=2 acc=0.75", flush=True)
    """)
    config = make_config(source_dir=str(code), training_schema=None, metric_definitions=[
        {"name": "evil", "regex": "(a+)+$"}, {"name": "acc", "regex": r"acc=([0-9.]+)"}])
    launched = subprocess.run([sys.executable, "-m", "sagebook.cli", "launch", str(config)],
                              capture_output=True, text=True, timeout=HANG,
                              preexec_fn=limited)
    assert launched.returncode == 0, launched.stderr[-2000:]
    [run] = runs(tmp_path / "experiments")
    record = manifest(run)
    assert record["status"] == "Completed"
    assert record["final_metrics"] == {"acc": 0.75}
    points = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(p["name"], p["value"], p["step"]) for p in points] == [
        ("acc", 0.5, 1), ("acc", 0.75, 2)]
    assert (run / "logs/algo-1.log").read_text().count(EVIL) == 5


FLOOD = """
    import os, pathlib, signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pathlib.Path(os.environ["PID_FILE"]).write_text(str(os.getpid()))
    print("training starts", flush=True)
    for _ in range(30_000):  # 5 minutes at most
        print("a" * 34 + "!", flush=True)
        time.sleep(0.01)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
@pytest.mark.slow
def test_a_signal_ends_a_launch_whose_training_floods_a_backtracking_regex(
        make_config, tmp_path, sig):
    code = training(tmp_path, FLOOD)
    config = make_config(source_dir=str(code), training_schema=None,
                         environment={"PID_FILE": str(tmp_path / "training.pid")},
                         metric_definitions=[{"name": "evil", "regex": "(a+)+$"}])
    launcher = start_launch(str(config), until="training starts")
    try:
        wait_for(lambda: (tmp_path / "training.pid").exists(), what="the training to start")
        training_pid = int((tmp_path / "training.pid").read_text())
        launcher.send_signal(sig)
        _, err = launcher.communicate(timeout=120)  # only a launcher that hangs takes this long
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    assert launcher.returncode == 130, err[-2000:]  # interrupted (README: Exit codes)
    assert "Traceback" not in err
    wait_for(lambda: not alive(training_pid), what="the training to stop")
    [run] = runs(tmp_path / "experiments")
    assert manifest(run)["status"] == "Stopped"


@pytest.mark.slow
def test_sigterm_ends_a_launch_while_it_fetches_its_data(make_config, tmp_path, proxy, bucket,
                                                          s3):
    """Before the training starts: the launcher waits on S3 for the training data (the proxy
    holds the answer), and SIGTERM ends it there, not once S3 answers."""
    s3.put_object(Bucket=bucket, Key="data/train.csv", Body=b"1\n")
    gate = proxy.hold(r"GET /sagebook-test/data/train\.csv")
    code = training(tmp_path, "print('never reached')\n")
    config = make_config(source_dir=str(code), training_schema=None,
                         channels={"train": f"s3://{bucket}/data/"})
    launcher = start_launch(str(config), until="[sagebook] run ")
    try:
        wait_for(lambda: proxy.seen(r"GET /sagebook-test/data/train\.csv"), timeout=60,
                 what="the launcher to fetch the training data")
        launcher.send_signal(signal.SIGTERM)
        _, err = launcher.communicate(timeout=60)  # the held answer comes only after
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
        gate.set()
    assert launcher.returncode != 0 and "Traceback" not in err, err[-2000:]
    [run] = runs(tmp_path / "experiments")
    assert manifest(run)["status"] in ("Stopped", "Failed"), manifest(run)


@pytest.mark.slow
def test_sigterm_ends_a_launch_while_it_writes_its_record_files(make_config, tmp_path, proxy,
                                                               bucket, s3):
    """While the configs and the request go to the store side by side (the proxy holds the
    request's write), SIGTERM ends the launch there and its record says so."""
    gate = proxy.hold(r"PUT /sagebook-test/records/.*/request\.json")
    code = training(tmp_path, "print('never reached')\n")
    config = make_config(source_dir=str(code), training_schema=None,
                         experiments_uri=f"s3://{bucket}/records")
    launcher = start_launch(str(config), until="[sagebook] run ")
    try:
        wait_for(lambda: proxy.seen(r"PUT /sagebook-test/records/.*/request\.json"),
                 timeout=60, what="the launcher to write its request")
        launcher.send_signal(signal.SIGTERM)
        _, err = launcher.communicate(timeout=60)  # the held answer comes only after
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
        gate.set()
    assert launcher.returncode != 0 and "Traceback" not in err, err[-2000:]
    [key] = [k["Key"] for k in s3.list_objects_v2(Bucket=bucket, Prefix="records/")["Contents"]
             if k["Key"].endswith("/manifest.json")]
    assert json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())["status"] == \
        "Stopped"


def test_metrics_are_scraped_as_python_re_would_where_both_run(tmp_path):
    """RE2 takes the same values as `re` for regexes both run: the first capture group of a
    match anywhere in the line, for each definition in its order; non-ASCII text before the
    value, a group that does not take part, and several metrics on one line."""
    import re

    from sagebook.backends.logs import LogSink

    definitions = [{"Name": "loss", "Regex": r"loss[:=]\s*([0-9.eE+-]+)"},
                   {"Name": "acc", "Regex": r"(?i)ACC(?:URACY)?=([0-9.]+)"},
                   {"Name": "opt", "Regex": r"lr=(?:([0-9.]+)|auto)"},
                   {"Name": "end", "Regex": r"total=([0-9]+)$"}]
    lines = [f"step={step} {text}" for step, text in enumerate([  # each line a point
        "loss=0.5 acc=0.25", "époque 2, perte… loss: 0.4 Accuracy=0.5", "lr=auto",
        "lr=0.01 loss=1e-3", "total=7 ", "total=8", "nothing here", "loss=nan",
        "ACC=1.0 acc=2.0"])]
    sink = LogSink(tmp_path / "a.log", tmp_path / "m.jsonl", definitions, lambda _: None)
    for line in lines:
        sink.line(line, 0.0)
    sink.close()
    scraped = [(p["name"], p["value"]) for p in
               map(json.loads, (tmp_path / "m.jsonl").read_text().splitlines())]
    expected = []
    for line in lines:
        for definition in definitions:
            found = re.search(definition["Regex"], line)
            if found and found.group(1) is not None and found.group(1) != "nan":
                expected.append((definition["Name"], float(found.group(1))))
    assert scraped == expected
    assert ("end", 8.0) in scraped and ("end", 7.0) not in scraped
