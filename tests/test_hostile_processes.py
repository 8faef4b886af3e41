"""A record's heartbeat names processes, and anyone who can write to the store can write it:
`stop`, `list` and `attach` act on, or believe in, only processes this machine shows are the
run's own. Planted heartbeats name a real sentinel process of this test (its real pid, start
time and process group, this host) or values that name no process of the run at all; nothing is
signalled, `stop` says why in one line, exit 1, and the record is left as it was.

A regression here would signal whatever the heartbeat names, so the commands run in a session
of their own, and those given pids such as 1, 0 or -1 in a pid namespace of their own where the
machine has them: a regression then fails the test, not the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import psutil
import pytest

from conftest import add_run, alive, listed, manifest, runs, start_launch, wait_for

NOT_OWN = "this record names processes that are not its own: not signalled"


@pytest.fixture
def sentinel():
    """A process of this test's in a process group of its own: what a planted heartbeat
    names. Killed at the end whatever happened."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                            start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def started(pid: int) -> float:
    return psutil.Process(pid).create_time()


def plant(store: Any, heartbeat: dict[str, Any]) -> Any:
    """A local run InProgress on this host whose heartbeat is `heartbeat`."""
    record = add_run(store, status="InProgress", instance_type="local")
    record.update(host=socket.gethostname())
    store.write_text(f"{record.prefix}/heartbeat.json", json.dumps(heartbeat))
    return record


def beat(**fields: Any) -> dict[str, Any]:
    return {"host": socket.gethostname(), "time": time.strftime("%Y-%m-%dT%H:%M:%S+00:00",
                                                                 time.gmtime()),
            "every": 30, **fields}


def dead_pid() -> tuple[int, float]:
    """The pid and start time of a process that has ended (a launcher killed long ago)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    when = started(proc.pid)
    proc.wait()
    return proc.pid, when


def isolated(*args: str, contained: bool = False,
             timeout: float = 120) -> subprocess.CompletedProcess:
    """`sagebook ARGS` in a session of its own (a killpg(0) or kill(0) reaches only itself);
    `contained`: in a pid namespace of its own too, where pid 1 is itself."""
    command = [sys.executable, "-m", "sagebook.cli", *args]
    if contained:
        command = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc",
                   *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          start_new_session=True)


def pid_namespaces() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--pid", "--fork",
                            "--mount-proc", "true"], capture_output=True)
    return probe.returncode == 0


def refused(result: subprocess.CompletedProcess, record: Any) -> None:
    assert result.returncode == 1, result.stderr
    # one line: the file, the reason, the fields that name what is not the run's
    assert result.stderr.startswith(f"sagebook: {record.url('heartbeat.json')}: {NOT_OWN} (")
    assert result.stderr.endswith(")\n") and result.stderr.count("\n") == 1
    record.reload()
    assert record.status == "InProgress"  # nothing closed, nothing written


@pytest.mark.parametrize("named", [
    "the launcher",  # a live process named as the launcher, with its real start time
    "the launcher without start time",
    "a training group",  # the case: a dead launcher and a live process group
    "a training group without start time",  # the format before start times
])
def test_stop_signals_nothing_a_planted_heartbeat_names(store, sentinel, named):
    pid, when = sentinel.pid, started(sentinel.pid)
    gone, gone_started = dead_pid()
    heartbeat = {
        "the launcher": beat(pid=pid, pid_started=when),
        "the launcher without start time": beat(pid=pid),
        "a training group": beat(pid=gone, pid_started=gone_started, processes=[[pid, when]]),
        "a training group without start time": beat(pid=gone, pid_started=gone_started,
                                                    processes=[pid]),
    }[named]
    record = plant(store, heartbeat)
    result = isolated("stop", record.run_id, "--store", store.uri)
    refused(result, record)
    assert sentinel.poll() is None and alive(sentinel.pid)
    kind = "pid" if "launcher" in named else "process group"
    assert result.stderr.endswith(f"({kind} {pid})\n")


@pytest.mark.parametrize("value", [1, 0, -1, 2**40, -(2**40), "1", "-1", True, 1.5, [1], {}],
                         ids=repr)
@pytest.mark.parametrize("field", ["pid", "processes"])
def test_stop_refuses_values_that_name_no_process_of_the_run(store, value, field):
    if value in (1, 0, -1, "1", "-1", True, [1]) and not pid_namespaces():
        pytest.skip("a regression would signal init or every process: only in a pid namespace")
    gone, gone_started = dead_pid()
    fields = {"pid": value} if field == "pid" else {
        "pid": gone, "pid_started": gone_started, "processes": [value]}
    record = plant(store, beat(**fields))
    result = isolated("stop", record.run_id, "--store", store.uri,
                      contained=pid_namespaces())
    refused(result, record)


def test_a_list_of_every_pid_is_refused_at_once(store):
    if not pid_namespaces():
        pytest.skip("a regression would signal every process: only in a pid namespace")
    gone, gone_started = dead_pid()
    record = plant(store, beat(pid=gone, pid_started=gone_started,
                               processes=list(range(2, 100_000))))
    result = isolated("stop", record.run_id, "--store", store.uri, contained=True)
    refused(result, record)
    assert result.stderr.endswith("(processes)\n")


def test_a_planted_heartbeat_does_not_make_a_live_process_its_launcher(store, sentinel, capsys):
    """`list` and `attach` believe no launcher they cannot prove: the sentinel, named with its
    real pid and start time, is not the run's launcher, so the run is Lost."""
    record = plant(store, beat(pid=sentinel.pid, pid_started=started(sentinel.pid)))
    [entry] = listed(capsys, store)
    assert entry["status"] == "Lost"
    assert entry["lost"] == (f"its heartbeat names pid {sentinel.pid}, which is not its "
                             "launcher (no launch of this user claims the run)")
    attached = isolated("attach", record.run_id, "--store", store.uri)
    assert attached.returncode == 1 and "cannot be followed again" in attached.stderr
    assert alive(sentinel.pid)


@pytest.mark.parametrize(("value", "shown"), [(1, "1"), (-1, "-1"), ("1", "1"), (None, "null")],
                         ids=repr)
def test_a_fresh_heartbeat_that_names_no_launcher_is_lost_not_followed_for_ever(
        store, value, shown, capsys):
    """A heartbeat of this host, beating now, whose pid names no process of a launch (init,
    every process, a string, nothing): no launcher can be proven, so the run is Lost and
    `attach` says so at once instead of following it for ever."""
    record = plant(store, beat(pid=value))
    [entry] = listed(capsys, store)
    assert entry["status"] == "Lost"
    assert entry["lost"] == f"its heartbeat names no launcher (pid {shown})"
    attached = isolated("attach", record.run_id, "--store", store.uri, timeout=60)
    assert attached.returncode == 1 and "cannot be followed again" in attached.stderr


@pytest.mark.slow
def test_a_genuine_run_whose_heartbeat_gains_a_stranger_is_not_signalled(
        make_config, tmp_path, monkeypatch, sentinel):
    """The run's own launcher and training live, but the heartbeat was rewritten to name the
    sentinel's group too: the whole heartbeat is refused, nothing is signalled; once the
    heartbeat is the launcher's own again, `stop` stops the run."""
    monkeypatch.setenv("SAGEBOOK_HEARTBEAT_SECONDS", "600")  # the planted one stays
    code = tmp_path / "slow"
    code.mkdir()
    (code / "train.py").write_text(
        "import os, pathlib, time\n"
        "pathlib.Path(os.environ['PID_FILE']).write_text(str(os.getpid()))\n"
        "print('training starts', flush=True)\n"
        "time.sleep(300)\n")
    config = make_config(source_dir=str(code), training_schema=None,
                         environment={"PID_FILE": str(tmp_path / "training.pid")})
    launcher = start_launch(str(config), until="training starts")
    try:
        training = int((tmp_path / "training.pid").read_text())
        [run] = runs(tmp_path / "experiments")
        own = json.loads((run / "heartbeat.json").read_text())
        assert own["pid"] == launcher.pid and len(own["processes"]) == 1
        planted = {**own, "processes": [*own["processes"],
                                        [sentinel.pid, started(sentinel.pid)]]}
        (run / "heartbeat.json").write_text(json.dumps(planted))
        store = str(tmp_path / "experiments")
        result = isolated("stop", run.name, "--store", store)
        assert result.returncode == 1 and NOT_OWN in result.stderr, result.stderr
        assert result.stderr.endswith(f"(process group {sentinel.pid})\n")
        assert alive(sentinel.pid) and alive(training) and launcher.poll() is None
        assert manifest(run)["status"] == "InProgress"

        (run / "heartbeat.json").write_text(json.dumps(own))
        result = isolated("stop", run.name, "--store", store)
        assert result.returncode == 0, result.stderr
        assert f"asked its launcher (pid {launcher.pid})" in result.stdout
        launcher.communicate(timeout=60)
        wait_for(lambda: not alive(training), what="the training to stop")
        assert manifest(run)["status"] == "Stopped" and alive(sentinel.pid)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()


def test_a_claim_in_the_work_folder_that_is_not_the_users_own_proves_nothing(
        make_config, tmp_path, monkeypatch, sentinel):
    """The launcher's claim is believed only as a regular file of this user's that nobody
    else can write: one made writable by others (or a symlink to one) names no launcher."""
    record_dir = tmp_path / "experiments"
    from sagebook.backends import liveness
    from sagebook.stores import open_store

    monkeypatch.setenv("SAGEBOOK_WORK_DIR", str(tmp_path / "work"))
    store = open_store(str(record_dir))
    record = plant(store, beat(pid=sentinel.pid, pid_started=started(sentinel.pid)))
    folder = liveness.run_folder(record.experiment, record.run_id, record.uri)
    folder.mkdir(parents=True)
    claim = {"record": record.uri, "pid": sentinel.pid, "pid_started": started(sentinel.pid)}
    (tmp_path / "elsewhere.json").write_text(json.dumps(claim))
    (folder / "launcher.json").symlink_to(tmp_path / "elsewhere.json")
    result = isolated("stop", record.run_id, "--store", store.uri)
    refused(result, record)
    (folder / "launcher.json").unlink()
    (folder / "launcher.json").write_text(json.dumps(claim))
    os.chmod(folder / "launcher.json", 0o666)
    result = isolated("stop", record.run_id, "--store", store.uri)
    refused(result, record)
    assert alive(sentinel.pid)


def test_attach_shows_log_lines_as_text_and_reads_only_regular_files(tmp_path):
    """A planted log line cannot drive the terminal, and a FIFO among the logs (which an
    open() would wait on for ever) is passed over."""
    from sagebook.stores import open_store

    store = open_store(str(tmp_path / "experiments"))
    record = add_run(store, status="InProgress", instance_type="local")
    record.update(host=socket.gethostname())  # no heartbeat: nothing says it is Lost
    logs = tmp_path / "experiments" / record.prefix / "logs"
    logs.mkdir()
    (logs / "algo-1.log").write_text("\x1b]0;owned\x07title \x1b[2J cleared \u202egpj.exe\n")
    os.mkfifo(logs / "algo-2.log")
    viewer = subprocess.Popen([sys.executable, "-m", "sagebook.cli", "attach", record.run_id,
                               "--store", store.uri], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert viewer.stdout is not None
        line = viewer.stdout.readline()
        viewer.send_signal(signal.SIGINT)
        out, err = viewer.communicate(timeout=60)
    finally:
        if viewer.poll() is None:
            viewer.kill()
            viewer.communicate()
    assert line == "[algo-1] \\x1b]0;owned\\x07title \\x1b[2J cleared \\u202egpj.exe\n"
    assert viewer.returncode == 130, err
    assert "\x1b" not in out + err
