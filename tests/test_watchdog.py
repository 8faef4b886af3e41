"""The stall watchdog and notifications: a silent local run is stopped as stalled with its
Python stacks in the record, and apprise's json:// webhooks on 127.0.0.1 are told of its
stall and its end; a webhook that never answers costs a bounded wait, never the run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sagebook import notify
from sagebook.backends import stall
from sagebook.record import Record
from sagebook.stores import open_store

from conftest import manifest, runs, sagebook, wait_for

# Prints one line, then waits silently in a function whose name the stacks must show.
SILENT = textwrap.dedent("""
    import faulthandler, signal, sys, time
    faulthandler.register(signal.SIGUSR2, all_threads=True)
    def wait_for_data_that_never_comes():
        time.sleep(60)
    print(f"started at {time.time()}", flush=True)
    wait_for_data_that_never_comes()
    print("slept to the end", flush=True)
""")

# Silent for a while, then ends well: with stall_action report the run goes on.
SLOW_START = textwrap.dedent("""
    import time
    print("loading", flush=True)
    time.sleep(4)
    print("epoch=1 done", flush=True)
""")


class Webhook:
    """A json:// receiver on 127.0.0.1: what apprise posted, one JSON body each."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()


def code_config(make_config, tmp_path: Path, program: str, **changes):
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "train.py").write_text(program)
    return make_config(source_dir=str(code), training_schema=None, metric_definitions=[],
                       **changes)


@pytest.mark.slow
def test_a_silent_run_is_stopped_as_stalled_with_its_stacks_and_both_news(
        make_config, tmp_path, webhook):
    path = code_config(make_config, tmp_path, SILENT, stall_timeout=3,
                       notify=[webhook.url], notify_on=["end", "stall"])
    began = time.monotonic()
    result = sagebook("launch", str(path),
                      env={**os.environ, "SAGEBOOK_STOP_GRACE_SECONDS": "5"})
    took = time.monotonic() - began
    assert result.returncode == 1, result.stderr
    assert took < 3 + 10, took  # the code alone sleeps 60 s
    assert "stalled: no output for 3 s: saving the training's Python stacks" in result.stdout
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Stopped" and m["secondary_status"] == "Stalled"
    assert m["failure_reason"] == "stalled: no output for 3 s"
    assert [h.get("secondary_status") for h in m["status_history"]][-3:] == [
        "Stalled", "Stalled", "Stalled"]  # seen, stopping, stopped
    assert m["watch"] == {"stall_timeout": 3, "stall_action": "stop",
                          "notify": [webhook.url + "?method=POST&overflow=upstream"
                                                   "&retry=0&wait=0.5&optional=no"],
                          "notify_on": ["end", "stall"]}
    [stacks] = (run / "stacks").glob("algo-1-*.txt")
    text = stacks.read_text()
    assert text.startswith("# py-spy dump --pid "), text  # py-spy is in the test extra
    assert "wait_for_data_that_never_comes" in text, text
    assert "slept to the end" not in (run / "logs/algo-1.log").read_text()
    assert [n["event"] for n in m["notifications"]] == ["stall", "end"]
    assert all(n["ok"] for n in m["notifications"]), m["notifications"]
    stalled_news, end_news = webhook.received
    assert stalled_news["title"] == f"sagebook: run {m['experiment']}/{m['run_id']} stalled"
    assert "failure reason: stalled: no output for 3 s" in stalled_news["message"]
    assert end_news["title"].endswith(" stopped")
    for line in ("status: Stopped", "cost: none (local)", f"record: {m['record_uri']}",
                 "failure reason: stalled: no output for 3 s"):
        assert line in end_news["message"], end_news["message"]


@pytest.mark.slow
def test_report_only_marks_the_stall_and_the_run_goes_on(make_config, tmp_path, webhook):
    path = code_config(make_config, tmp_path, SLOW_START, stall_timeout=2,
                       stall_action="report", notify=[webhook.url], notify_on=["stall"])
    result = sagebook("launch", str(path))
    assert result.returncode == 0, result.stderr
    m = manifest(runs(tmp_path / "experiments")[0])
    assert m["status"] == "Completed" and "failure_reason" not in m
    assert "Stalled" in [h.get("secondary_status") for h in m["status_history"]]
    assert m["stalled"]["action"] == "report"
    assert [n["event"] for n in m["notifications"]] == ["stall"]  # notify_on: no end
    assert len(webhook.received) == 1
    assert "epoch=1 done" in (runs(tmp_path / "experiments")[0] / "logs/algo-1.log").read_text()


@pytest.mark.slow
def test_the_attempt_after_a_rehearsed_interruption_starts_a_new_silence(make_config, tmp_path):
    program = textwrap.dedent("""
        import time
        for epoch in range(1, 16):
            time.sleep(0.4)
            print(f"epoch={epoch}", flush=True)
    """)
    path = code_config(make_config, tmp_path, program, stall_timeout=3,
                       checkpoint_uri=str(tmp_path / "checkpoints"))
    result = sagebook("launch", str(path), "--interrupt-after", "4s",
                      env={**os.environ, "SAGEBOOK_STOP_GRACE_SECONDS": "5"})
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Completed" and "stalled" not in m
    assert "epoch=15" in (run / "logs/algo-1.attempt-2.log").read_text()


def test_without_py_spy_the_stacks_come_from_faulthandler_and_others_are_not_signalled(
        tmp_path, monkeypatch):
    store = open_store(str(tmp_path / "store"))
    record = Record.create(store, "exp", "20260101-000000-abcd", {})
    log = tmp_path / "algo-1.log"
    with log.open("w") as out:
        handling = subprocess.Popen(
            [sys.executable, "-c", "import time\n" + SILENT.replace("time.sleep(60)",
                                                                    "time.sleep(30)")],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                                 start_new_session=True)
    try:
        wait_for(lambda: "started at" in log.read_text(), what="the program's first line")
        monkeypatch.setattr(stall, "_py_spy", lambda processes: None)
        # leaders whose Python children are the training: this test process has both
        name = stall.save_stacks(record, "algo-1", os.getpid(), log)
        text = (tmp_path / "store/exp/20260101-000000-abcd" / name).read_text()
        assert text.startswith(f"# faulthandler (SIGUSR2) of pid {handling.pid}, "), text
        assert "wait_for_data_that_never_comes" in text
        assert plain.poll() is None  # SIGUSR2 would have ended it: it was not sent
        assert handling.poll() is None
    finally:
        for proc in (handling, plain):
            proc.kill()
            proc.wait()


def test_the_stall_reason_says_the_timeout_in_minutes():
    assert stall.StallWatch(900).reason == "stalled: no output for 15 min"
    assert stall.StallWatch(7200).reason == "stalled: no output for 2 h"
    assert stall.StallWatch(45).reason == "stalled: no output for 45 s"


def test_a_webhook_that_never_answers_costs_a_bounded_wait(tmp_path, monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections, never answers
    port = silent.getsockname()[1]
    store = open_store(str(tmp_path / "store"))
    record = Record.create(store, "exp", "20260101-000000-abcd", {})
    record.set_status("Failed", failure_reason="boom with ghp_" + "a" * 36)
    monkeypatch.setattr(notify, "SEND_SECONDS", 2.0)
    began = time.monotonic()
    notify.send_end(record, [f"json://127.0.0.1:{port}/hook"], ["failure"])
    took = time.monotonic() - began
    silent.close()
    assert took < 3, took
    [sent] = Record.open(store, "exp", "20260101-000000-abcd").manifest["notifications"]
    assert sent["ok"] is False and sent["error"] == "no answer within 2 s"
    assert sent["event"] == "end"
    title, body = notify.message(record, "end")
    assert "ghp_" + "a" * 36 not in body and "failure reason: boom with ghp_****" in body


def test_an_end_notification_that_fails_leaves_the_run_completed(
        make_config, tmp_path, webhook):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nobody listens: connection refused
    path = code_config(make_config, tmp_path, "print('epoch=1 done')\n",
                       notify=[f"json://127.0.0.1:{port}/x", webhook.url])
    result = sagebook("launch", str(path))
    assert result.returncode == 0, result.stderr
    m = manifest(runs(tmp_path / "experiments")[0])
    assert m["status"] == "Completed"
    refused, told = m["notifications"]
    assert refused["ok"] is False and refused["error"]
    assert told["ok"] is True
    [news] = webhook.received
    assert news["title"].endswith(" completed") and "status: Completed" in news["message"]


def test_an_unknown_notify_url_is_refused_at_its_key_before_anything_runs(
        make_config, tmp_path):
    path = make_config(notify=["json://127.0.0.1:9/x", "nosuchscheme://x"])
    result = sagebook("launch", str(path))
    assert result.returncode == 2, result.stderr
    assert "job.yaml:" in result.stderr and "nosuchscheme://x" in result.stderr
    assert "job.notify.1: not a notification URL apprise knows" in result.stderr
    assert not (tmp_path / "experiments").exists() or not runs(tmp_path / "experiments")


def test_the_watch_keys_take_overrides_and_show_in_dry_run_and_doctor(make_config):
    path = make_config()
    options = ["-o", "job.stall_timeout=15m", "-o", "job.stall_action=report"]
    dry = sagebook("launch", str(path), "--dry-run", *options)
    assert dry.returncode == 0, dry.stderr
    assert "watch: stall_timeout 15 min (report); no notify URLs" in dry.stderr
    doctor = sagebook("doctor", str(path), *options)
    assert "stall_timeout 15 min (report); no notify URLs" in doctor.stdout, doctor.stdout
    bad = sagebook("launch", str(path), "--dry-run", "-o", "job.stall_action=pause")
    assert bad.returncode == 2 and "stall_action" in bad.stderr


def test_apprise_stays_off_the_start_up_path():
    probe = ("import sys, sagebook.cli, sagebook.launch, sagebook.backends.local; "
             "print('apprise' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


# --------------------------------------------------------------------------------------------
# SageMaker: the watching process reads the log streams and calls StopTrainingJob


def _cloud_manifest(s3, bucket: str) -> dict:
    [key] = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="records/")["Contents"]
             if o["Key"].endswith("/manifest.json")]
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


TRAINING_THEN_SILENCE = (
    {"secondary": "Downloading", "message": "Downloading input data", "after": 60},
    {"secondary": "Training", "message": "Training in progress", "after": 30,
     "logs": {"algo-1": ["epoch=1 val_accuracy=0.5"]}},
)  # and then the job trains on, printing nothing


@pytest.mark.slow
def test_a_silent_sagemaker_job_watched_by_its_launch_is_stopped_as_stalled(
        cloud_config, fake, bucket, s3, webhook):
    fake.script(*TRAINING_THEN_SILENCE)
    path = cloud_config(stall_timeout=2, notify=[webhook.url])
    result = sagebook("launch", str(path), "--wait", timeout=120)
    assert result.returncode == 1, result.stderr
    m = _cloud_manifest(s3, bucket)
    assert fake.stop_calls == [m["job_name"]]
    assert "stalled: no output for 2 s in the job's log streams" in result.stdout
    assert m["status"] == "Stopped" and m["secondary_status"] == "Stalled"
    assert m["failure_reason"] == "stalled: no output for 2 s"
    assert "Stalled" in [h.get("secondary_status") for h in m["status_history"]]
    assert [n["event"] for n in m["notifications"]] == ["stall", "end"]
    assert [news["title"].rsplit(" ", 1)[1] for news in webhook.received] == [
        "stalled", "stopped"]


@pytest.mark.slow
def test_attach_keeps_the_recorded_stall_timeout_and_notifies_through_a_variable(
        cloud_config, fake, bucket, s3, webhook):
    fake.script(*TRAINING_THEN_SILENCE)
    path = cloud_config(stall_timeout=2, notify=["$TEAM_WEBHOOK"])
    env = {**os.environ, "TEAM_WEBHOOK": webhook.url}
    # not waited for: the job runs on, unwatched
    launched = sagebook("launch", str(path), env=env)
    assert launched.returncode == 0, launched.stderr
    m = _cloud_manifest(s3, bucket)
    assert m["watch"] == {"stall_timeout": 2, "stall_action": "stop",
                          "notify": ["$TEAM_WEBHOOK"], "notify_on": ["end", "stall"]}
    assert webhook.url.split("//")[1] not in json.dumps(m)  # only the variable's name
    assert fake.stop_calls == [] and webhook.received == []
    attached = sagebook("attach", m["run_id"], "-c", str(path), timeout=120, env=env)
    assert fake.stop_calls == [m["job_name"]], attached.stdout + attached.stderr
    m = _cloud_manifest(s3, bucket)
    assert m["status"] == "Stopped" and m["failure_reason"] == "stalled: no output for 2 s"
    assert [(n["event"], n["url"], n["ok"]) for n in m["notifications"]] == [
        ("stall", "$TEAM_WEBHOOK", True), ("end", "$TEAM_WEBHOOK", True)]
    assert [news["title"].rsplit(" ", 1)[1] for news in webhook.received] == [
        "stalled", "stopped"]


def test_a_notify_variable_that_is_not_set_is_refused_before_anything_runs(
        make_config, tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_WEBHOOK", raising=False)
    result = sagebook("launch", str(make_config(notify=["$NO_SUCH_WEBHOOK"])))
    assert result.returncode == 2, result.stderr
    assert "job.notify.0: $NO_SUCH_WEBHOOK is not set in this environment" in result.stderr


def test_a_notify_url_written_out_with_its_token_is_refused_before_anything_runs(
        make_config, tmp_path):
    slack = "https://hooks.slack.com/services/T01ABCDEF/B02GHIJKL/" + "x" * 24
    path = make_config(notify=["json://127.0.0.1:9/plain", slack,
                               "mailto://ann:hunter2@mail.example.com"])
    result = sagebook("launch", str(path))
    assert result.returncode == 2, result.stderr
    assert "job.notify.1: this URL carries a token or password" in result.stderr
    assert "job.notify.2: this URL carries a token or password" in result.stderr
    assert "job.notify.0" not in result.stderr  # a webhook without a credential is fine
    assert "x" * 24 not in result.stderr and "hunter2" not in result.stderr
    assert not (tmp_path / "experiments").exists() or not runs(tmp_path / "experiments")
