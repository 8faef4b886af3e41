"""A hostile-record corpus: what anyone with write access to a shared store could leave there.

The store is a trust boundary (issue 21): every record is written by one person and read by
the whole team. Each `case_…` function below plants one attack into a store, as raw bytes (no
masking, no validation: an attacker does not run sagebook to write), and says how the reader
commands are expected to meet it. `build()` writes them all; `tests/test_hostile_store.py`
runs every reader command over the result.

The second half is the runner those tests start: `python hostile_corpus.py SPEC` runs a list of
commands, each in a fork of its own under memory and file-size limits and a SIGKILL timeout,
inside a fresh PID namespace (so a heartbeat naming pid 1, -1 or every process group can reach
nothing but the runner's own sentinel process), and reports for each command its exit code,
time, output, the sentinel's fate and every file it created, changed or removed.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import socket
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "hostile"
TEAMMATE = "mallory"  # the user a teammate's records name (never the reader)
SENTINEL_PID = 2  # the runner's first child in its PID namespace (the runner is 1)
SENTINEL_GRACE = 0.05  # seconds after a command ends before the sentinel's fate is read
CODE_ARCHIVE = "sourcedir.tar.gz"
# The archive bounds the reader runs with (their defaults are far larger): small enough that
# the corpus's bomb, a few MB on the wire, is over them.
MAX_CODE_BYTES = 8 << 20
MAX_CODE_FILES = 1000
HUGE_BYTES = 5 << 20  # the huge record's log line, failure text and metrics file

# Tokens in the shapes secret scanners know; none may appear in any output or written file.
PEM_BODY = ("MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/"
            "IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyeh")
SECRETS = {
    "github": "ghp_R8fT2kLm9QzX4vBn7YcW1pJd5sHa3eUo6GiK",
    "github_pat": "github_pat_11AAQ7Z3Y0kx9Wq2VbRt5m_Lp8sN4dF6gH1jK3zX7cV9bN2mQ5wE8rT1yU4iO"
                  "6pA3sD5fG7hJ9kL2zXcVb",
    "huggingface": "hf_qWeRtYuIoPaSdFgHjKlZxCvBnMqWeRtYuIo",
    "aws_secret": "Zq3vT9xLm2Pw8Rk4Ns7Yb1Hc6Jd0Fg5QaEuWoIe+",
    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJtYWxsb3J5Iiwicm9sZSI6ImFkbWluIn0."
           "hN3x0c8vQ2rYb5kLm9TzW1pJd4sHa7eUo6GiKfR2tXc",
    "url_password": "S3cr3tPassw0rdHostile",
    "slack": "xoxb-482619375102-4826193751023-AbCdEfGhIjKlMnOpQrStUvWx",
    "pem": PEM_BODY[:64],
    "bearer": "hostileBearerTokenQ9w8E7r6T5y4U3i2O1p0",
    "reader_aws_secret": "Rd7Kp2Xw9Lm4Qz8Vb1Nc6Hj3Tg5Fy0Ue+Wa/Se2Id",  # the reader's own key
}
TOKEN_TEXT = "\n".join([
    f"cloning with {SECRETS['github']}",
    f"GITHUB={SECRETS['github_pat']}",
    f"using model token {SECRETS['huggingface']}",
    f"aws credentials AKIA2E0A8F3B244C9986 {SECRETS['aws_secret']}",
    f"Authorization: Bearer {SECRETS['jwt']}",
    f"db postgresql://admin:{SECRETS['url_password']}@db.internal:5432/prod",
    f"slack {SECRETS['slack']}",
    "-----BEGIN RSA PRIVATE KEY-----", PEM_BODY, "-----END RSA PRIVATE KEY-----",
    f"curl -H 'Authorization: Bearer {SECRETS['bearer']}' https://api.internal/",
])
# Markup that must never reach a page or the dashboard as markup (checked in HTML it writes).
MARKUP = ["<script>window.hostile", "onerror=\"window.hostile", "href=\"javascript:",
          "onload=\"window.hostile", "<iframe"]
NOTEBOOK_PAYLOADS = {
    "script": "<script>window.hostile=1</script>",
    "onerror": "<img src=x onerror=\"window.hostile=2\">",
    "javascript": "<a href=\"javascript:window.hostile=3\">open</a>",
    "svg": "<svg onload=\"window.hostile=4\"><circle r=\"4\"/></svg>",
    "iframe": "<iframe src=\"javascript:window.hostile=5\"></iframe>",
}
CONTROL = "\x1b]0;pwned\x07\x1b[2J\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\\r\x9b31m"
BIDI = "safe\u202egpj.exe"


# A record a reader may name as damaged (exit 1, one line) instead of showing it.
DAMAGED = {"show": {0, 1}, "show --json": {0, 1}, "diff": {0, 1}, "stop": {0, 1},
           "attach": {0, 1}}


@dataclass
class Case:
    """One planted attack: which record (or sweep) it is and what the reader must do with it."""

    name: str
    ref: str | None = None  # `experiment/run_id` of the record the per-record commands name
    sweep: str | None = None  # `experiment/sweep_id` for the sweep commands
    # per command name, the exit codes that are right for this case (else COMMANDS' default)
    expect: dict[str, set[int]] = field(default_factory=dict)
    # paths (relative to the test's folder) that must not exist after the commands ran
    absent: list[str] = field(default_factory=list)
    isolated: bool = False  # runs in a PID namespace of its own (it names processes)
    local_only: bool = False  # meaningful on a local folder store only
    notes: str = ""


@dataclass
class Corpus:
    """The store being filled and the folders around it that the reader must not touch."""

    store: Any
    base: Path  # the test's folder: home/, victim/, work/, … live here
    cases: list[Case] = field(default_factory=list)
    base_ref: str = ""
    good_sweep: str = ""
    _serial: int = 0

    @property
    def home(self) -> Path:
        return self.base / "home"

    @property
    def victim(self) -> Path:
        return self.base / "victim"

    @property
    def local(self) -> bool:
        return self.store.local_path() is not None

    def run_id(self) -> str:
        self._serial += 1
        tail = hashlib.sha256(str(self._serial).encode()).hexdigest()[:6]
        return f"20260101-{self._serial:06d}-{tail}"

    def put(self, key: str, data: bytes | str) -> None:
        """Raw bytes into the store: no masking, no checks (an attacker's write)."""
        self.store.write_bytes(key, data.encode() if isinstance(data, str) else data)

    def record(self, *, run_id: str | None = None, job: dict[str, Any] | None = None,
               training: dict[str, Any] | None = None, event: dict[str, Any] | None = None,
               **manifest: Any) -> tuple[str, dict[str, Any]]:
        """A record as a launch would leave it (manifest, configs, index event), with
        `manifest` fields replacing the usual ones; returns its ref and manifest."""
        run_id = run_id or self.run_id()
        prefix = f"{EXPERIMENT}/{run_id}"
        data: dict[str, Any] = {
            "schema": 1, "run_id": run_id, "experiment": EXPERIMENT, "status": "Completed",
            "status_history": [{"status": "Starting", "time": "2026-01-01T10:00:00+00:00"},
                               {"status": "InProgress", "time": "2026-01-01T10:00:01+00:00"},
                               {"status": "Completed", "time": "2026-01-01T10:05:00+00:00"}],
            "created": "2026-01-01T10:00:00+00:00", "ended": "2026-01-01T10:05:00+00:00",
            "user": reader(), "host": socket.gethostname(), "instance_type": "local",
            "backend": "LocalBackend", "job_name": f"{EXPERIMENT}-{run_id}", "tags": {},
            "git": {"commit": "0123456789abcdef", "dirty": False, "branch": "main"},
            "config": {"overrides": [], "digest": "d"}, "image_uri": "img:1",
            "params": {"epochs": 2, "optimizer": "adam"},
            "final_metrics": {"val_accuracy": 0.5}, "record_uri": self.store.url(prefix),
            "revision": 3, "launched_via": "cli",
        }
        data.update(manifest)
        self.put(f"{prefix}/manifest.json", json.dumps(data, indent=2))
        self.put(f"{prefix}/sagemaker_config.yaml", yaml.safe_dump(
            job if job is not None else {"experiment": EXPERIMENT, "instance_type": "local",
                                         "max_runtime": 600}))
        self.put(f"{prefix}/config/training_config.yaml",
                 yaml.safe_dump(training or {"epochs": 2, "optimizer": "adam"}))
        self.event(data, event)
        return f"{EXPERIMENT}/{run_id}", data

    def event(self, manifest: dict[str, Any], changes: dict[str, Any] | None = None,
              key: str | None = None) -> None:
        """The run's summary in the index, as its writer published it."""
        from sagebook.index import summarize

        try:
            entry = summarize(manifest)
        except Exception:  # a manifest of the wrong types: its writer sent what it liked
            entry = {k: manifest.get(k) for k in ("run_id", "experiment", "status", "user",
                                                   "created", "tags", "revision")}
        entry.update(changes or {})
        revision = int(manifest.get("revision") or 1)
        self.put(key or f"_index/events/{EXPERIMENT}/{manifest.get('run_id')}.{revision:06d}.json",
                 json.dumps(entry, default=str))

    def package(self, members: Callable[[tarfile.TarFile], None], *,
                digest: str | None = None, mangle: Callable[[bytes], bytes] | None = None
                ) -> dict[str, Any]:
        """A code package in the store's uploads (as a launch keeps it), named by the digest of
        its tar stream unless `digest` names it otherwise; the upload entry of a manifest."""
        stream = io.BytesIO()
        with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
            members(tar)
        raw = stream.getvalue()
        digest = digest or hashlib.sha256(raw).hexdigest()[:32]
        data = gzip.compress(raw, compresslevel=6, mtime=0)
        data = mangle(data) if mangle else data
        if re.fullmatch(r"[0-9a-f]{32}", digest):
            self.put(f"_uploads/code/{digest}/{CODE_ARCHIVE}", data)
        return {"channel": "code", "kind": "code", "source": str(REPO / "sagemaker_container"),
                "digest": digest, "uri": self.store.url(f"_uploads/code/{digest}") + "/",
                "bytes": len(data), "files": 1}

    def add(self, case: Case) -> Case:
        self.cases.append(case)
        return case


def reader() -> str:
    """Who runs the reader commands (as sagebook names its user)."""
    from sagebook.record import user

    return user()


def add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def training_code(train: str) -> Callable[[tarfile.TarFile], None]:
    """The example's training code with `train` as its train.py: what a teammate's package
    would run on the reader's machine."""
    def members(tar: tarfile.TarFile) -> None:
        for path in sorted((REPO / "sagemaker_container").iterdir()):
            if path.is_file() and path.name != "train.py":
                add_file(tar, path.name, path.read_bytes(), 0o755 if os.access(path, os.X_OK)
                         else 0o644)
        add_file(tar, "train.py", train.encode())
    return members


def runnable_job(corpus: Corpus, **changes: Any) -> dict[str, Any]:
    """A job config a rerun can launch locally (the example's, paths absolute)."""
    data = yaml.safe_load((REPO / "configs" / "sagemaker_config.local.yaml").read_text())
    data.update(source_dir=str(REPO / "sagemaker_container"), experiment=EXPERIMENT,
                channels={k: str((REPO / "configs" / v).resolve())
                          for k, v in data["channels"].items()},
                experiments_uri=corpus.store.uri, training_config="training_config.yaml",
                max_runtime="5m")
    data.update(changes)
    return data


def runnable_training() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "configs" / "training_config.yaml").read_text())
    data["epochs"] = 1
    return data


CASES: list[Callable[[Corpus], Case]] = []


def case(function: Callable[[Corpus], Case]) -> Callable[[Corpus], Case]:
    CASES.append(function)
    return function


def build(store: Any, base: Path) -> Corpus:
    """Every case planted into `store`; `base` holds the reader's folders and the victims."""
    corpus = Corpus(store, base)
    for folder in ("home/.ssh", "home/.aws", "victim/src", "work", "scratch", "cwd", "outputs"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    (base / "home/.ssh/id_rsa").write_text(f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n"
                                           "-----END RSA PRIVATE KEY-----\n")
    (base / "home/.aws/credentials").write_text(
        f"[default]\naws_secret_access_key = {SECRETS['reader_aws_secret']}\n")
    (base / "victim/sourcedir.tar.gz").write_bytes(b"the victim's file: never removed\n")
    (base / "victim/src/train.py").write_text("print('victim code: never run')\n")
    (base / "cwd/notes.txt").write_text("the reader's own file\n")
    corpus.base_ref, _ = corpus.record()
    for make in CASES:
        made = make(corpus)
        if made.local_only and not corpus.local:
            continue
        corpus.add(made)
    return corpus


# --------------------------------------------------------------------------------------------
# Processes: heartbeats that name what is not the run's


def _heartbeat_case(corpus: Corpus, name: str, beat: dict[str, Any], notes: str) -> Case:
    ref, _ = corpus.record(status="InProgress", ended=None, final_metrics=None,
                           status_history=[{"status": "InProgress",
                                            "time": "2026-01-01T10:00:01+00:00"}])
    corpus.put(f"{ref}/heartbeat.json", json.dumps({
        "host": socket.gethostname(), "time": time.strftime("%Y-%m-%dT%H:%M:%S+00:00",
                                                            time.gmtime()),
        "every": 30, **beat}))
    return Case(name, ref, isolated=True, notes=notes)


@case
def heartbeat_names_a_foreign_process_group(c: Corpus) -> Case:
    return _heartbeat_case(c, "heartbeat_names_a_foreign_process_group",
                           {"pid": 999_999, "pid_started": 0.0, "processes": [SENTINEL_PID]},
                           "launcher gone, processes name an unrelated process group")


@case
def heartbeat_pid_without_pid_started(c: Corpus) -> Case:
    return _heartbeat_case(c, "heartbeat_pid_without_pid_started",
                           {"pid": SENTINEL_PID, "processes": []},
                           "the launcher pid is an unrelated live process, no start time")


@case
def heartbeat_pid_1(c: Corpus) -> Case:
    return _heartbeat_case(c, "heartbeat_pid_1", {"pid": 1, "processes": [1]},
                           "pid 1 and process group 1 (kill(-1): every process)")


@case
def heartbeat_pid_minus_1(c: Corpus) -> Case:
    return _heartbeat_case(c, "heartbeat_pid_minus_1", {"pid": -1, "processes": [-1]},
                           "pid -1: kill(-1) signals every process")


@case
def heartbeat_every_process_group(c: Corpus) -> Case:
    return _heartbeat_case(c, "heartbeat_every_process_group",
                           {"pid": 999_999, "pid_started": 0.0,
                            "processes": list(range(2, 400))},
                           "processes: [2..399], everything the reader owns")


@case
def heartbeat_own_process_group(c: Corpus) -> Case:
    return _heartbeat_case(c, "heartbeat_own_process_group",
                           {"pid": 999_999, "pid_started": 0.0, "processes": [0, -2]},
                           "killpg(0): the reader's own process group")


@case
def heartbeat_of_wrong_types(c: Corpus) -> Case:
    return _heartbeat_case(c, "heartbeat_of_wrong_types",
                           {"pid": str(SENTINEL_PID), "pid_started": "yesterday",
                            "processes": str(SENTINEL_PID), "every": "often"},
                           "every field a string")


@case
def attach_follows_a_local_copy_outside_the_record(c: Corpus) -> Case:
    made = _heartbeat_case(c, "attach_follows_a_local_copy_outside_the_record",
                           {"pid": SENTINEL_PID, "processes": []},
                           "local_copy names the reader's ~/.ssh; a live foreign pid")
    manifest = json.loads(c.store.read_bytes(f"{made.ref}/manifest.json"))
    manifest["local_copy"] = str(c.home / ".ssh")
    manifest.pop("ended", None)
    c.put(f"{made.ref}/manifest.json", json.dumps(manifest))
    return made


# --------------------------------------------------------------------------------------------
# Paths: names that are paths


@case
def run_id_and_experiment_traverse(c: Corpus) -> Case:
    ref, manifest = c.record()
    bad = {"run_id": "../../victim", "experiment": "../../victim",
           "job_name": "../../victim", "record_uri": "../../victim"}
    manifest.update(bad)
    c.put(f"{ref}/manifest.json", json.dumps(manifest))
    c.event(manifest, bad, key=f"_index/events/{EXPERIMENT}/{ref.split('/')[1]}.000004.json")
    return Case("run_id_and_experiment_traverse", ref, expect=DAMAGED)


@case
def index_event_names_a_path(c: Corpus) -> Case:
    run_id = c.run_id()
    c.put(f"_index/events/{EXPERIMENT}/{run_id}.000001.json", json.dumps({
        "run_id": "../../../../victim/pwned", "experiment": "../../../victim",
        "status": "Completed", "revision": 1, "created": "2026-01-01T10:00:00+00:00"}))
    return Case("index_event_names_a_path")


@case
def code_digest_traverses(c: Corpus) -> Case:
    package = c.package(training_code("print('x')\n"), digest="../../victim")
    ref, _ = c.record(uploads=[package])
    return Case("code_digest_traverses", ref,
                notes="rerun deleted victim/sourcedir.tar.gz, used victim/src as code")


@case
def upload_source_is_the_root(c: Corpus) -> Case:
    package = c.package(training_code("print('x')\n"))
    package["source"] = "/"
    ref, _ = c.record(uploads=[package])
    return Case("upload_source_is_the_root", ref, notes="rerun packed / to compare it")


def _package_file(c: Corpus, package: dict[str, Any]) -> Path:
    path = c.base / "packages" / f"{package['digest']}.tar.gz"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(c.store.read_bytes(f"_uploads/code/{package['digest']}/{CODE_ARCHIVE}"))
    return path


# --------------------------------------------------------------------------------------------
# Archives


def _archive_case(c: Corpus, name: str, members: Callable[[tarfile.TarFile], None],
                  notes: str, **options: Any) -> Case:
    package = c.package(members, **options)
    ref, _ = c.record(uploads=[package])
    digest = package["digest"]
    return Case(name, ref, expect={"rerun": {1}}, notes=notes,
                absent=[f"work/_code/{digest}/src", f"work/_code/{digest}/.src.*",
                        f"work/_code/{digest}/.{CODE_ARCHIVE}.*", "escaped.txt",
                        "work/escaped.txt"])


@case
def archive_expands_past_the_size_bound(c: Corpus) -> Case:
    def members(tar: tarfile.TarFile) -> None:
        add_file(tar, "train.py", b"print('x')\n")
        add_file(tar, "weights.bin", bytes(4 * MAX_CODE_BYTES))
    return _archive_case(c, "archive_expands_past_the_size_bound", members,
                         "a gzip bomb: a small package that expands past the bound")


@case
def archive_with_too_many_members(c: Corpus) -> Case:
    def members(tar: tarfile.TarFile) -> None:
        for n in range(MAX_CODE_FILES * 3):
            add_file(tar, f"m/{n}.py", b"")
    return _archive_case(c, "archive_with_too_many_members", members,
                         "more members than the bound")


@case
def archive_member_climbs_out(c: Corpus) -> Case:
    def members(tar: tarfile.TarFile) -> None:
        add_file(tar, "train.py", b"print('x')\n")
        add_file(tar, "../../../escaped.txt", b"escaped\n")
    return _archive_case(c, "archive_member_climbs_out", members, "a ../ member")


@case
def archive_absolute_symlink(c: Corpus) -> Case:
    def members(tar: tarfile.TarFile) -> None:
        add_file(tar, "train.py", b"print(open('key').read())\n")
        link = tarfile.TarInfo("key")
        link.type, link.linkname = tarfile.SYMTYPE, str(c.home / ".ssh" / "id_rsa")
        tar.addfile(link)
    return _archive_case(c, "archive_absolute_symlink", members,
                         "a symlink to the reader's ~/.ssh/id_rsa")


@case
def archive_hard_link_out(c: Corpus) -> Case:
    def members(tar: tarfile.TarFile) -> None:
        add_file(tar, "train.py", b"print('x')\n")
        link = tarfile.TarInfo("key")
        link.type, link.linkname = tarfile.LNKTYPE, "../../../home/.ssh/id_rsa"
        tar.addfile(link)
    return _archive_case(c, "archive_hard_link_out", members, "a hard link out of the folder")


@case
def archive_device_member(c: Corpus) -> Case:
    def members(tar: tarfile.TarFile) -> None:
        add_file(tar, "train.py", b"print('x')\n")
        device = tarfile.TarInfo("disk")
        device.type, device.devmajor, device.devminor = tarfile.BLKTYPE, 8, 0
        tar.addfile(device)
        fifo = tarfile.TarInfo("pipe")
        fifo.type = tarfile.FIFOTYPE
        tar.addfile(fifo)
    return _archive_case(c, "archive_device_member", members, "a block device and a fifo")


@case
def archive_of_random_bytes(c: Corpus) -> Case:
    noise = random.Random(21).randbytes(50_000)
    return _archive_case(c, "archive_of_random_bytes", training_code("print('x')\n"),
                         "random bytes where the package should be",
                         mangle=lambda data: noise)


@case
def archive_truncated_gzip(c: Corpus) -> Case:
    return _archive_case(c, "archive_truncated_gzip", training_code("print('x')\n"),
                         "a gzip stream cut in the middle",
                         mangle=lambda data: data[: len(data) // 2])


# --------------------------------------------------------------------------------------------
# A teammate's record asks for the reader's credentials or sends output elsewhere


def _exfiltrating_code(c: Corpus, name: str) -> str:
    target = c.home / f"exfiltrated-{name}.txt"
    return ("import os\n"
            f"open({str(target)!r}, 'w').write(repr(dict(os.environ)))\n"
            "print('val_accuracy=0.5')\n")


@case
def teammate_asks_for_aws_credentials(c: Corpus) -> Case:
    package = c.package(training_code(_exfiltrating_code(c, "credentials")))
    ref, _ = c.record(user=TEAMMATE, uploads=[package], training=runnable_training(),
                      job=runnable_job(c, pass_aws_credentials=True))
    return Case("teammate_asks_for_aws_credentials", ref, expect={"rerun": {1, 2}},
                absent=["home/exfiltrated-credentials.txt"],
                notes="pass_aws_credentials: true in a teammate's job config")


@case
def teammate_sends_records_elsewhere(c: Corpus) -> Case:
    package = c.package(training_code(_exfiltrating_code(c, "elsewhere")))
    ref, _ = c.record(user=TEAMMATE, uploads=[package], training=runnable_training(),
                      job=runnable_job(c, experiments_uri=str(c.home / "stolen-records")))
    return Case("teammate_sends_records_elsewhere", ref, expect={"rerun": {1, 2}},
                absent=["home/exfiltrated-elsewhere.txt", "home/stolen-records"],
                notes="a teammate's job config names another experiments_uri")


# --------------------------------------------------------------------------------------------
# Markup in notebooks and fields


def _notebook(cells: list[dict[str, Any]]) -> str:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": cells})


def _code_cell(outputs: list[dict[str, Any]], source: str = "show()") -> dict[str, Any]:
    return {"cell_type": "code", "id": hashlib.sha1(source.encode()).hexdigest()[:8],
            "metadata": {}, "source": source, "execution_count": 1, "outputs": outputs}


@case
def notebook_html_output_with_scripts(c: Corpus) -> Case:
    ref, _ = c.record(notebook={"status": "completed"})
    html = "".join(NOTEBOOK_PAYLOADS.values())
    c.put(f"{ref}/notebook.ipynb", _notebook([_code_cell([{
        "output_type": "display_data", "metadata": {},
        "data": {"text/html": html, "text/plain": "x"}}])]))
    return Case("notebook_html_output_with_scripts", ref)


@case
def notebook_markdown_with_raw_html(c: Corpus) -> Case:
    ref, _ = c.record(notebook={"status": "completed"})
    c.put(f"{ref}/notebook.ipynb", _notebook([
        {"cell_type": "markdown", "id": "md1", "metadata": {},
         "source": "# results\n" + "\n".join(NOTEBOOK_PAYLOADS.values())
                   + "\n[click](javascript:window.hostile=6)\n"}]))
    return Case("notebook_markdown_with_raw_html", ref)


@case
def notebook_svg_and_javascript_outputs(c: Corpus) -> Case:
    ref, _ = c.record(notebook={"status": "completed"})
    c.put(f"{ref}/notebook.ipynb", _notebook([_code_cell([
        {"output_type": "display_data", "metadata": {}, "data": {
            "image/svg+xml": "<svg xmlns=\"http://www.w3.org/2000/svg\" "
                             "onload=\"window.hostile=7\"><script>window.hostile=8</script></svg>",
            "application/javascript": "window.hostile=9",
            "text/plain": "x"}}])]))
    return Case("notebook_svg_and_javascript_outputs", ref)


@case
def markup_in_record_fields(c: Corpus) -> Case:
    payload = NOTEBOOK_PAYLOADS["script"] + NOTEBOOK_PAYLOADS["onerror"]
    ref, manifest = c.record(user=payload, tags={"team": payload}, name=payload,
                             failure_reason=payload, status="Failed")
    c.put(f"{ref}/failure.txt", payload)
    return Case("markup_in_record_fields", ref)


# --------------------------------------------------------------------------------------------
# Control sequences and bidirectional overrides


def _annotate_raw(c: Corpus, ref: str, fields: dict[str, Any]) -> None:
    """An annotation event in the record and the index, with whatever fields it likes."""
    stamp = f"20260101T100000.{c._serial:06d}Z-abcd{c._serial % 10:04d}"
    run_id = ref.split("/")[1]
    c.put(f"{ref}/annotations/{stamp}.json", json.dumps(
        {"time": "2026-01-01T10:00:00.000+00:00", "user": TEAMMATE, "host": "h", "set": fields}))
    c.put(f"_index/events/{EXPERIMENT}/{run_id}.note-{stamp}.json", json.dumps(
        {"run_id": run_id, "experiment": EXPERIMENT,
         "annotations": {k: [v, stamp] for k, v in fields.items()}}))


@case
def control_sequences_in_fields(c: Corpus) -> Case:
    ref, _ = c.record(user=f"ann{CONTROL}", tags={f"t{CONTROL}": f"v{CONTROL}"},
                      status="Failed", failure_reason=f"boom{CONTROL}",
                      final_metrics={f"acc{CONTROL}": 0.5})
    _annotate_raw(c, ref, {"note": f"note{CONTROL}", "name": f"name{CONTROL}",
                           "tags.stage": f"x{CONTROL}"})
    c.put(f"{ref}/failure.txt", f"Traceback{CONTROL}\n")
    c.put(f"{ref}/logs/algo-1.log", f"epoch 1{CONTROL}\n")
    return Case("control_sequences_in_fields", ref)


@case
def bidi_override_in_fields(c: Corpus) -> Case:
    ref, _ = c.record(user=BIDI, tags={"file": BIDI}, status="Failed",
                      failure_reason=f"cannot open {BIDI}\u2066\u2069\u202a")
    _annotate_raw(c, ref, {"note": f"see {BIDI}", "name": BIDI})
    return Case("bidi_override_in_fields", ref)


@case
def control_sequences_in_configs(c: Corpus) -> Case:
    ref, _ = c.record(training={"optimizer": f"adam{CONTROL}", "epochs": 2},
                      params={"optimizer": f"adam{CONTROL}", "epochs": 2},
                      job={"experiment": EXPERIMENT, "instance_type": "local",
                           "environment": {"X": f"y{CONTROL}{BIDI}"}})
    c.put(f"{ref}/request.json", json.dumps({"TrainingJobName": f"n{CONTROL}"}))
    return Case("control_sequences_in_configs", ref)


# --------------------------------------------------------------------------------------------
# Regexes from a record's job config


@case
def metric_regex_backtracks(c: Corpus) -> Case:
    package = c.package(training_code(
        "print('a' * 34 + '!', flush=True)\nprint('val_accuracy=0.5', flush=True)\n"))
    job = runnable_job(c, metric_definitions=[{"name": "evil", "regex": "(a+)+$"},
                                              {"name": "val_accuracy",
                                               "regex": "val_accuracy=([0-9.]+)"}])
    ref, _ = c.record(uploads=[package], job=job, training=runnable_training())
    c.put(f"{ref}/logs/algo-1.log", ("a" * 34 + "!\n") * 3)
    return Case("metric_regex_backtracks", ref, expect={"rerun": {0}},
                notes="(a+)+$ replayed by rerun over 'a'*34+'!'")


@case
def metric_regex_with_backreference(c: Corpus) -> Case:
    package = c.package(training_code("print('val_accuracy=0.5')\n"))
    job = runnable_job(c, metric_definitions=[{"name": "evil", "regex": r"(a+)\1=([0-9]+)"}])
    ref, _ = c.record(uploads=[package], job=job, training=runnable_training())
    return Case("metric_regex_with_backreference", ref, expect={"rerun": {2}},
                notes="RE2 cannot run a backreference: refused at validation")


# --------------------------------------------------------------------------------------------
# Bare tokens


@case
def tokens_in_logs(c: Corpus) -> Case:
    ref, _ = c.record()
    c.put(f"{ref}/logs/algo-1.log", f"epoch 1\n{TOKEN_TEXT}\nval_accuracy=0.5\n")
    return Case("tokens_in_logs", ref)


@case
def tokens_in_failure(c: Corpus) -> Case:
    ref, _ = c.record(status="Failed", failure_reason=TOKEN_TEXT)
    c.put(f"{ref}/failure.txt", f"training failed:\n{TOKEN_TEXT}\n")
    return Case("tokens_in_failure", ref)


@case
def tokens_in_notes_tags_and_name(c: Corpus) -> Case:
    ref, _ = c.record(tags={"owner": SECRETS["huggingface"], "ci": SECRETS["github"]},
                      user=SECRETS["slack"])
    _annotate_raw(c, ref, {"note": TOKEN_TEXT, "name": SECRETS["jwt"],
                           "tags.db": f"postgresql://admin:{SECRETS['url_password']}@db/x"})
    return Case("tokens_in_notes_tags_and_name", ref)


@case
def tokens_in_configs(c: Corpus) -> Case:
    ref, _ = c.record(
        params={"target_column": SECRETS["github"]},
        job={"experiment": EXPERIMENT, "instance_type": "local",
             "environment": {"MY_SETTING": SECRETS["huggingface"],
                             "DATABASE": f"postgresql://admin:{SECRETS['url_password']}@db/x"},
             "tags": {"owner": SECRETS["slack"]}},
        training={"target_column": SECRETS["github"], "api": SECRETS["jwt"]})
    c.put(f"{ref}/request.json", json.dumps({"Environment": {"TOKEN": SECRETS["github_pat"],
                                                             "KEY": TOKEN_TEXT}}))
    return Case("tokens_in_configs", ref)


@case
def tokens_in_notebook(c: Corpus) -> Case:
    ref, _ = c.record(notebook={"status": "completed"})
    c.put(f"{ref}/notebook.ipynb", _notebook([_code_cell(
        [{"output_type": "stream", "name": "stdout", "text": TOKEN_TEXT},
         {"output_type": "display_data", "metadata": {},
          "data": {"text/plain": SECRETS["huggingface"],
                   "text/html": f"<pre>{SECRETS['github']}</pre>"}}],
        source=f"token = '{SECRETS['github_pat']}'")]))
    return Case("tokens_in_notebook", ref)


@case
def tokens_in_metric_names(c: Corpus) -> Case:
    ref, _ = c.record(final_metrics={SECRETS["huggingface"]: 1.0})
    c.put(f"{ref}/metrics.jsonl", "".join(
        json.dumps({"name": SECRETS["huggingface"], "value": v, "step": v}) + "\n"
        for v in range(3)))
    return Case("tokens_in_metric_names", ref)


# --------------------------------------------------------------------------------------------
# Damaged and hostile sweep records


def _sweep(c: Corpus, name: str, data: bytes | str | dict[str, Any], **expect: set[int]
           ) -> Case:
    sweep_id = f"sweep-20260101-000000-{hashlib.sha256(name.encode()).hexdigest()[:6]}"
    if isinstance(data, dict) and data.get("sweep_id") == "x":
        data["sweep_id"] = sweep_id  # a well-formed sweep names its own folder
    text = json.dumps(data) if isinstance(data, dict) else data
    c.put(f"_sweeps/{EXPERIMENT}/{sweep_id}/sweep.json", text)
    c.put(f"_sweeps/{EXPERIMENT}/{sweep_id}/sweep.yaml",
          "objective: {metric: val_accuracy, goal: maximize}\nstrategy: grid\n"
          "parameters:\n  training.epochs: [1, 2]\n")
    return Case(name, sweep=f"{EXPERIMENT}/{sweep_id}", expect=expect)


def _sweep_manifest(c: Corpus, **changes: Any) -> dict[str, Any]:
    data = {"schema": 1, "sweep_id": "x", "experiment": EXPERIMENT, "status": "Completed",
            "status_history": [{"status": "Completed", "time": "2026-01-01T10:00:00+00:00"}],
            "created": "2026-01-01T10:00:00+00:00", "user": reader(), "host": socket.gethostname(),
            "backend": "local", "objective": {"metric": "val_accuracy", "goal": "maximize"},
            "strategy": "grid", "config": {"job_file": str(c.base / "missing.yaml"),
                                           "overrides": []},
            "trials": [{"trial": 0, "overrides": ["training.epochs=1"],
                        "parameters": {"training.epochs": 1}, "status": "Completed",
                        "run_id": c.base_ref.split("/")[1], "objective": 0.5}]}
    data.update(changes)
    return data


@case
def sweep_good(c: Corpus) -> Case:
    made = _sweep(c, "sweep_good", _sweep_manifest(c), **{"sweep --resume": {0, 2}})
    c.good_sweep = made.sweep or ""
    return made


@case
def sweep_garbage(c: Corpus) -> Case:
    return _sweep(c, "sweep_garbage", b"\xff\xfe\x00garbage{")


@case
def sweep_truncated(c: Corpus) -> Case:
    return _sweep(c, "sweep_truncated", json.dumps(_sweep_manifest(c))[:200])


@case
def sweep_trials_null(c: Corpus) -> Case:
    return _sweep(c, "sweep_trials_null", _sweep_manifest(c, trials=None))


@case
def sweep_string_trial(c: Corpus) -> Case:
    return _sweep(c, "sweep_string_trial", _sweep_manifest(c, trials=["oops", 5]))


@case
def sweep_of_wrong_types(c: Corpus) -> Case:
    return _sweep(c, "sweep_of_wrong_types", _sweep_manifest(
        c, status=5, objective="val_accuracy", config=[], user={},
        trials=[{"trial": "1", "overrides": 3, "parameters": [], "status": None,
                 "objective": "high", "run_id": ["x"]}]))


@case
def sweep_of_a_teammate_names_a_job_file(c: Corpus) -> Case:
    code = c.base / "planted-code"  # in a shared folder the attacker can write
    code.mkdir(exist_ok=True)
    for path in (REPO / "sagemaker_container").iterdir():
        if path.is_file():
            shutil.copy(path, code / path.name)
    (code / "train.py").write_text(_exfiltrating_code(c, "sweep"))
    job = runnable_job(c, source_dir=str(code), training_config=str(c.base / "planted.yaml"))
    (c.base / "planted.yaml").write_text(yaml.safe_dump(runnable_training()))
    (c.base / "planted-job.yaml").write_text(yaml.safe_dump(job))
    made = _sweep(c, "sweep_of_a_teammate_names_a_job_file", _sweep_manifest(
        c, user=TEAMMATE, status="Failed",
        config={"job_file": str(c.base / "planted-job.yaml"), "overrides": []},
        trials=[{"trial": 0, "overrides": ["training.epochs=1"], "status": "Failed",
                 "parameters": {"training.epochs": 1}}]), **{"sweep --resume": {1, 2}})
    made.local_only = True  # the job file is a path on the reader's machine
    made.absent = ["home/exfiltrated-sweep.txt"]
    made.notes = "--resume runs the job file a teammate's sweep.json names"
    return made


# --------------------------------------------------------------------------------------------
# Huge records, unreadable configs, wrong types


@case
def huge_record(c: Corpus) -> Case:
    line = json.dumps({"name": "val_accuracy", "value": 0.123456, "step": 0}) + "\n"
    count = HUGE_BYTES // len(line)
    ref, _ = c.record(status="Failed", failure_reason="x" * 1024)
    c.put(f"{ref}/metrics.jsonl", "".join(
        json.dumps({"name": "val_accuracy" if n % 2 else "loss", "value": (n % 997) / 997,
                    "step": n}) + "\n" for n in range(count)))
    c.put(f"{ref}/logs/algo-1.log", "epoch 1 " + "y" * HUGE_BYTES + "\nend\n")
    c.put(f"{ref}/failure.txt", "Traceback: " + "z" * HUGE_BYTES)
    return Case("huge_record", ref, notes="5 MB metrics, one 5 MB log line, 5 MB failure")


@case
def invalid_yaml_in_configs(c: Corpus) -> Case:
    ref, _ = c.record()
    c.put(f"{ref}/sagemaker_config.yaml", "experiment: [unclosed\n\t- : :\n")
    c.put(f"{ref}/config/training_config.yaml", b"\xff\xfeepochs: 2\n")
    return Case("invalid_yaml_in_configs", ref,
                notes="diff shows what it can and names the unreadable configs")


@case
def yaml_alias_bomb_in_configs(c: Corpus) -> Case:
    ref, _ = c.record()
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]
    c.put(f"{ref}/sagemaker_config.yaml", "\n".join(lines) + "\n")
    c.put(f"{ref}/config/training_config.yaml", "\n".join(lines) + "\n")
    return Case("yaml_alias_bomb_in_configs", ref)


@case
def manifest_of_wrong_types(c: Corpus) -> Case:
    ref, _ = c.record(status=5, tags="x", created=[], user={}, status_history="x",
                      final_metrics=[1], git="x", config=7, uploads={"a": 1}, ended={},
                      failure_reason=["x"], params="p", cost="free", notebook=3, sweep="s",
                      instance_type=None, parent=[])
    return Case("manifest_of_wrong_types", ref, expect=DAMAGED)


@case
def manifest_with_wrong_field_types_but_a_status(c: Corpus) -> Case:
    ref, _ = c.record(tags=["x"], created=12, user=None, status_history=[5, "x", None],
                      final_metrics={"acc": "high", "loss": None}, git={"commit": 5},
                      uploads=[{"kind": "code"}, 7], failure_reason=5, params=[1],
                      annotations="x", heartbeat=[])
    return Case("manifest_with_wrong_field_types_but_a_status", ref, expect=DAMAGED)


@case
def manifest_not_an_object(c: Corpus) -> Case:
    ref, manifest = c.record()
    c.put(f"{ref}/manifest.json", "[1, 2, 3]")
    return Case("manifest_not_an_object", ref, expect=DAMAGED)


@case
def index_event_of_wrong_types(c: Corpus) -> Case:
    ref, manifest = c.record()
    c.event(manifest, {"run_id": 5, "experiment": None, "tags": [], "status": {},
                       "final_metrics": "x", "params": 3, "created": [], "revision": "r"},
            key=f"_index/events/{EXPERIMENT}/{ref.split('/')[1]}.000009.json")
    return Case("index_event_of_wrong_types", ref)


@case
def annotations_of_wrong_types(c: Corpus) -> Case:
    ref, _ = c.record()
    run_id = ref.split("/")[1]
    c.put(f"{ref}/annotations/20260101T100000.000000Z-0000dead.json", json.dumps({"set": "x"}))
    c.put(f"{ref}/annotations/20260101T100001.000000Z-0000beef.json", b"\x00garbage")
    c.put(f"_index/events/{EXPERIMENT}/{run_id}.note-20260101T1.json",
          json.dumps({"run_id": run_id, "experiment": EXPERIMENT,
                      "annotations": {"note": "not a pair", "name": [1, 2, 3]}}))
    return Case("annotations_of_wrong_types", ref)


# --------------------------------------------------------------------------------------------
# The runner: commands in forks, in a PID namespace, under limits


def snapshot(roots: dict[str, Path], skip: list[Path], s3: dict[str, str] | None
             ) -> dict[str, tuple[Any, ...]]:
    """Every file and folder below `roots` (but `skip`) and every object of the S3 store, with
    what tells a change: size and modification time, or the object's ETag. Taken after every
    command, so it reads each entry once (a folder's listing says what is a folder or a link)."""
    found: dict[str, tuple[Any, ...]] = {}
    skipped = {str(p) for p in skip}
    for label, root in roots.items():
        folders = [(str(root), "")]
        while folders:
            folder, prefix = folders.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                try:
                    is_dir = entry.is_dir()  # a link to a folder is listed, not entered
                except OSError:
                    is_dir = False
                if is_dir and entry.path in skipped:
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                kind = "d" if is_dir and not entry.is_symlink() else "f"
                found[f"{label}:{prefix}{entry.name}"] = (
                    kind, info.st_size if kind == "f" else 0,
                    info.st_mtime_ns if kind == "f" else 0, info.st_mode)
                if kind == "d":
                    folders.append((entry.path, f"{prefix}{entry.name}/"))
    if s3:
        for key, size, etag in _s3_objects(s3["bucket"], s3["prefix"]):
            found[f"store:{key[len(s3['prefix']):]}"] = ("o", size, etag, 0)
    return found


def _s3_objects(bucket: str, prefix: str) -> list[tuple[str, int, str]]:
    """Key, size and ETag of every object under `prefix`, listed from the tests' S3 endpoint
    (moto, which asks for no signature) and read with ElementTree: botocore's parse of a
    listing took twice as long as the listing, once per command. Keys come URL-encoded, as
    boto3 asks for them, so that any key fits in XML."""
    import urllib.parse
    import urllib.request
    from xml.etree import ElementTree

    s3 = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    endpoint = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
    found: list[tuple[str, int, str]] = []
    token = None
    while True:
        query = {"list-type": "2", "prefix": prefix, "encoding-type": "url",
                 **({"continuation-token": token} if token else {})}
        url = f"{endpoint}/{urllib.parse.quote(bucket)}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=60) as answer:
            listing = ElementTree.fromstring(answer.read())
        found += [(urllib.parse.unquote_plus(item.findtext(f"{s3}Key") or ""),
                   int(item.findtext(f"{s3}Size") or 0), item.findtext(f"{s3}ETag") or "")
                  for item in listing.iter(f"{s3}Contents")]
        token = listing.findtext(f"{s3}NextContinuationToken")
        if listing.findtext(f"{s3}IsTruncated") != "true" or not token:
            return found


def read_written(key: str, roots: dict[str, Path], s3: dict[str, str] | None,
                 limit: int = 64 << 20) -> bytes:
    """The bytes of a file or object a command wrote (for the secret scan)."""
    label, _, rel = key.partition(":")
    if label in roots:
        path = roots[label] / rel
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                return handle.read(limit)
        return b""
    if s3 and label == "store":
        body = _s3().get_object(Bucket=s3["bucket"], Key=s3["prefix"] + rel)
        return body["Body"].read(limit)
    return b""


@functools.cache
def _s3() -> Any:
    """One S3 client for the runner's snapshots (a client takes long to make)."""
    import boto3

    return boto3.client("s3")


def _limits(memory: int, file_size: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))


def _run_one(job: dict[str, Any], out: Path, memory: int, file_size: int) -> int:
    """Fork the command; the fork runs it with its output in files; returns the fork's pid."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setpgid(0, 0)
        for sig in (15, 1, 2, 10, 12):
            import signal

            signal.signal(sig, signal.SIG_DFL)
        stdout = os.open(out / "stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        stderr = os.open(out / "stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        os.chdir(job["cwd"])
        _limits(memory, file_size)
        if job.get("exec"):
            os.execvpe(job["exec"][0], job["exec"], {**os.environ, **job.get("env", {})})
        os.environ.update(job.get("env", {}))
        from sagebook import cli

        try:
            code = cli.main(job["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 0)
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(99)
    return 0  # not reached


def _ended_within(pid: int, seconds: float) -> bool:
    """Whether child `pid` ends within `seconds` (it is left to be reaped): woken by its end,
    through a pidfd, not by polling."""
    import select

    handle = os.pidfd_open(pid)
    try:
        waiting = select.poll()
        waiting.register(handle, select.POLLIN)
        return bool(waiting.poll(seconds * 1000))
    finally:
        os.close(handle)


def run(spec_path: str) -> None:
    """Run the commands SPEC lists, one fork each, and write what happened to its `results`.

    Meant to be PID 1 of a fresh PID namespace: its first child, the sentinel, is pid 2, the
    process (and process group) the corpus's heartbeats name; signals sent to pid 1 land in
    this process's handlers and are reported."""
    import signal
    import subprocess

    received: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, lambda signum, frame: received.append(signum))
    spec = json.loads(Path(spec_path).read_text())

    def sentinel() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(60)"],
                                start_new_session=True)

    guard = sentinel()
    first_pid = guard.pid
    for module in ("sagebook.cli", "sagebook.runs.text", "sagebook.report", "sagebook.fsck",
                   "sagebook.launch", "sagebook.sweeps.control", "sagebook.stores.s3", "boto3",
                   "botocore.session"):
        try:
            __import__(module)
        except ImportError:
            pass
    roots = {k: Path(v) for k, v in spec["roots"].items()}
    skip = [Path(p) for p in spec["skip"]]
    s3 = spec.get("s3")
    results = []
    after = snapshot(roots, skip, s3)
    for n, job in enumerate(spec["jobs"]):
        out = Path(spec["out"]) / f"{n:03d}"
        out.mkdir(parents=True, exist_ok=True)
        before = after  # nothing runs between two commands
        received.clear()
        if guard.poll() is not None:
            guard = sentinel()
        started = time.monotonic()
        pid = _run_one(job, out, spec["memory"], spec["file_size"])
        killed = not _ended_within(pid, job["timeout"])
        if killed:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        status = os.waitpid(pid, 0)[1]
        elapsed = time.monotonic() - started
        try:
            os.killpg(pid, signal.SIGKILL)  # whatever the command left running in its group
        except (ProcessLookupError, PermissionError):
            pass
        code = os.waitstatus_to_exitcode(status)
        ended = time.monotonic()
        after = snapshot(roots, skip, s3)
        created = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(k for k in set(after) & set(before) if after[k] != before[k]
                         and after[k][0] != "d")
        found = []
        html = []
        sizes = {}
        for key in created + changed:
            if after[key][0] == "d":
                continue
            data = read_written(key, roots, s3)
            sizes[key] = after[key][1]
            found += [(key, name) for name, value in spec["secrets"].items()
                      if value.encode() in data]
            if key.endswith((".html", ".ipynb")):
                html += [(key, m) for m in spec["markup"] if m.encode() in data]
        # a signal the command sent has had SENTINEL_GRACE to land (the snapshot took most)
        time.sleep(max(0.0, ended + SENTINEL_GRACE - time.monotonic()))
        guard_alive = guard.poll() is None
        results.append({"job": job["id"], "code": code, "killed": killed,
                        "seconds": round(elapsed, 2), "stdout": str(out / "stdout"),
                        "stderr": str(out / "stderr"), "sentinel_alive": guard_alive,
                        "signals_to_pid_1": list(received), "created": created,
                        "changed": changed, "removed": removed, "secrets_in_files": found,
                        "markup_in_files": html, "sizes": sizes})
        Path(spec["results"]).write_text(json.dumps(
            {"sentinel_pid": first_pid, "results": results}))
    guard.kill()


if __name__ == "__main__":
    run(sys.argv[1])

