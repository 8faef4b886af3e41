"""Every reader command over a store full of hostile records (tests/hostile_corpus.py), on a
local folder and on S3 through moto: no traceback, the documented exit code, nothing touched
outside the record folders, no foreign process signalled, no planted secret or script in any
output or written file, no control sequence on the terminal, and bounded time and memory.

Each command runs in a fork of its own inside a fresh PID namespace (a heartbeat naming pid 1
or every process group reaches only the runner's sentinel), under RLIMIT_AS and RLIMIT_FSIZE
and a timeout that sends SIGKILL, so a regression fails the test, not the machine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import hostile_corpus as hc
import nbformat
import pytest

from conftest import REPO

# runner processes over the whole corpus, a kernel (the dashboard) and the MLflow server
pytestmark = pytest.mark.slow

# The exit codes each command may end with, as the README documents them. Per-store commands
# read the whole corpus; per-record ones name one hostile record; per-sweep ones one sweep.
# A case may narrow or widen its own (Case.expect, and hc.DAMAGED for damaged manifests).
EXPECTED: dict[str, set[int]] = {
    "list": {0},               # damaged entries are named and skipped
    "list --json": {0},
    "report": {0},             # "a report skips damaged files"
    "fsck": {1},               # exit 1 when there is a damaged file, and the corpus has many
    "list --sweep": {0},       # the good sweep, with damaged ones beside it
    "show sweep": {0},
    "dashboard": {0},
    "export mlflow": {0, 1},   # 1: some runs not exported, each named
    "show": {0},
    "show --json": {0},
    "diff": {0},               # an unreadable config is named, the rest shown
    "stop": {0, 1},            # a finished run: nothing to stop; a refusal: one line, exit 1
    "attach": {0, 1},          # a finished run as recorded (0, 1 when it failed); refusal 1
    "rerun": {1, 2},           # the corpus's configs cannot launch (2) or are refused (1, 2)
    "sweep show": {0, 1},      # a damaged sweep named in one line
    "sweep list": {0, 1},
    "sweep --resume": {0, 1, 2},
}
TIMEOUTS = {"list": 30, "list --json": 30, "report": 90, "fsck": 60, "list --sweep": 30,
            "show sweep": 30, "dashboard": 240, "export mlflow": 180, "show": 30,
            "show --json": 30, "diff": 30, "stop": 45, "attach": 20, "rerun": 40,
            "sweep show": 30, "sweep list": 30, "sweep --resume": 60}
MEMORY = 1536 << 20
FILE_SIZE = 256 << 20
MAX_PAGE_BYTES = 2 << 20  # a run page of the huge record stays small (issue 21)
PAPERMILL = Path(sys.executable).parent / "papermill"
DASHBOARD = REPO / "notebooks" / "experiments.ipynb"
SDK = REPO / ".venv-sdk" / "bin"

# What a command may create or change in the store: the index, the report, sweeps, uploads
# and run folders with well-formed names; never a path with an empty or `..` part.
STORE_WRITES = re.compile(
    r"_(index|report|sweeps)(/.+)?|_uploads(/(code|data)(/[0-9a-f]{32}(\.json|/.+)?)?)?"
    r"|[A-Za-z0-9-]+(/[A-Za-z0-9][A-Za-z0-9_-]*(/.+)?)?")
STORE_REMOVALS = re.compile(r"_(index|report)/.+")
# On the terminal: no C0 control but newline and tab, no DEL, no C1, no bidi override.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\x80-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
def corpus(store: Any, tmp_path: Path) -> hc.Corpus:
    return hc.build(store, tmp_path)


def environment(corpus: hc.Corpus) -> dict[str, str]:
    """The reader's environment: a home, work and temporary folders of its own, its own AWS
    key (a secret too), archive bounds the corpus's bomb exceeds, no colours."""
    base, scratch = corpus.base, str(corpus.base / "scratch")
    env = {**os.environ, "HOME": str(base / "home"), "TMPDIR": scratch,
           "SAGEBOOK_WORK_DIR": str(base / "work"), "XDG_CACHE_HOME": scratch,
           "XDG_CONFIG_HOME": scratch, "XDG_DATA_HOME": scratch, "MPLCONFIGDIR": scratch,
           "NO_COLOR": "1", "MALLOC_ARENA_MAX": "2", "PYTHONDONTWRITEBYTECODE": "1",
           "SAGEBOOK_MAX_CODE_BYTES": str(hc.MAX_CODE_BYTES),
           "SAGEBOOK_MAX_CODE_FILES": str(hc.MAX_CODE_FILES),
           "AWS_ACCESS_KEY_ID": "AKIAREADER0000000001",
           "AWS_SECRET_ACCESS_KEY": hc.SECRETS["reader_aws_secret"],
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true",
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO / "lib")])}
    env.setdefault("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # a local store: AWS is never asked
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "COLUMNS"):
        env.pop(name, None)
    return env


def job(corpus: hc.Corpus, command: str, argv: list[str], case: str = "*",
        **extra: Any) -> dict[str, Any]:
    return {"id": f"{case} | {command}", "case": case, "command": command, "argv": argv,
            "cwd": str(corpus.base / "cwd"), "timeout": TIMEOUTS[command], **extra}


def run_batch(corpus: hc.Corpus, jobs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The jobs in one runner (tests/hostile_corpus.py) as PID 1 of a new PID namespace."""
    return finish(start(corpus, jobs, name))


def start(corpus: hc.Corpus, jobs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """A runner started on `jobs` (batches run side by side: most of their time is waiting)."""
    base = corpus.base
    local = corpus.store.local_path()
    spec = {
        "jobs": jobs, "out": str(base / "outputs" / name),
        "results": str(base / "outputs" / f"{name}.json"),
        "roots": {"outside": str(base), **({"store": str(local)} if local else {})},
        "skip": [str(p) for p in (local, base / "work", base / "scratch", base / "outputs")
                 if p is not None],
        "s3": None if local else dict(zip(("bucket", "prefix"),
                                          corpus.store.uri[5:].split("/", 1), strict=True)),
        "memory": MEMORY, "file_size": FILE_SIZE, "secrets": hc.SECRETS,
        "markup": hc.MARKUP,
    }
    if spec["s3"]:
        spec["s3"]["prefix"] = spec["s3"]["prefix"].rstrip("/") + "/"
    spec_path = base / "outputs" / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    log = (base / "outputs" / f"{name}.log").open("w")
    runner = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                               sys.executable, str(REPO / "tests" / "hostile_corpus.py"),
                               str(spec_path)], env=environment(corpus), stdout=log,
                              stderr=subprocess.STDOUT)
    log.close()
    return {"runner": runner, "spec": spec, "budget": sum(j["timeout"] for j in jobs) + 60}


def finish(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The results of a started runner (SIGKILLed, namespace and all, past its budget)."""
    runner, spec = batch["runner"], batch["spec"]
    try:
        runner.wait(timeout=batch["budget"])
    except subprocess.TimeoutExpired:
        runner.kill()
        runner.wait()
    log = Path(spec["out"] + ".log").read_text(errors="replace")
    assert runner.returncode == 0, f"the runner itself failed: {log[-3000:]}"
    answer = json.loads(Path(spec["results"]).read_text())
    assert answer["sentinel_pid"] == hc.SENTINEL_PID, "the heartbeats name pid 2: the sentinel"
    return answer["results"]


def problems(corpus: hc.Corpus, jobs: list[dict[str, Any]], results: list[dict[str, Any]]
             ) -> list[str]:
    """Everything each command did wrong, one line each, naming the case and command."""
    found: list[str] = []
    cases = {c.name: c for c in corpus.cases}
    for spec, result in zip(jobs, results, strict=True):
        where = f"{spec['case']} | {spec['command']}"
        case = cases.get(spec["case"])
        expected = (case.expect.get(spec["command"]) if case else None) \
            or EXPECTED[spec["command"]]
        out = Path(result["stdout"]).read_text(errors="replace")
        err = Path(result["stderr"]).read_text(errors="replace")
        text = out + err

        def bad(what: str, where: str = where) -> None:
            found.append(f"{where}: {what}")

        if result["killed"]:
            bad(f"killed after {spec['timeout']} s (SIGKILL timeout); stderr: {tail(err)}")
        elif result["code"] not in expected:
            bad(f"exit {result['code']}, expected {sorted(expected)}; stderr: {tail(err)}")
        if "Traceback (most recent call last)" in text:
            bad(f"traceback: {traceback_line(text)}")
        if not result["sentinel_alive"]:
            bad("the sentinel process (pid 2, its own process group) was signalled")
        if result["signals_to_pid_1"]:
            bad(f"signals {result['signals_to_pid_1']} were sent to pid 1")
        shown = [name for name, value in hc.SECRETS.items() if value in text]
        if shown:
            bad(f"planted secrets in its output: {', '.join(shown)}")
        by_file: dict[str, list[str]] = {}
        for key, name in result["secrets_in_files"]:
            if not key.startswith("store:_index/"):
                # (the index moves the store's own summaries: nothing new is shown)
                by_file.setdefault(key, []).append(name)
        for key, markup in result["markup_in_files"]:
            by_file.setdefault(key, []).append(f"markup {markup!r}")
        for key, names in by_file.items():
            bad(f"wrote {key} with planted {', '.join(names)}")
        if spec["command"] != "dashboard":
            control = CONTROL.search(text)
            if control:
                bad(f"a control character {control.group()!r} is in its output: "
                    f"{text[max(0, control.start() - 40):control.end() + 20]!r}")
        for key in result["created"] + result["changed"]:
            if not allowed_write(key):
                bad(f"{'created' if key in result['created'] else 'changed'} {key}")
        for key in result["removed"]:
            label, _, rel = key.partition(":")
            if label != "store" or not STORE_REMOVALS.fullmatch(rel):
                bad(f"removed {key}")
        for key, size in result["sizes"].items():
            if key.endswith(".html") and size > MAX_PAGE_BYTES:
                bad(f"wrote {key} of {size} bytes (a page may have {MAX_PAGE_BYTES})")
    return found


def leftovers(corpus: hc.Corpus) -> list[str]:
    """What a case says must not exist once the commands ran (written outside, or debris)."""
    return [f"{case.name}: {path.relative_to(corpus.base)} exists after the commands (a write "
            "outside the store, or debris of a refused package)"
            for case in corpus.cases for pattern in case.absent
            for path in corpus.base.glob(pattern)]


def allowed_write(key: str) -> bool:
    label, _, rel = key.partition(":")
    parts = rel.split("/")
    return (label == "store" and not {"", ".", ".."} & set(parts)
            and STORE_WRITES.fullmatch(rel) is not None)


def tail(text: str, lines: int = 3) -> str:
    return " / ".join(text.strip().splitlines()[-lines:])[-600:]


def traceback_line(text: str) -> str:
    """The exception line of the first traceback in `text`."""
    lines = text[text.index("Traceback (most recent call last)"):].splitlines()
    last = next((line for line in lines[1:] if line and not line.startswith(" ")), lines[-1])
    frame = [line.strip() for line in lines if line.strip().startswith("File ")][-1:]
    return f"{last[:300]} at {frame[0][:200] if frame else '?'}"


def report(found: list[str]) -> str:
    return f"{len(found)} problems:\n" + "\n".join(found)


# --------------------------------------------------------------------------------------------


def test_store_wide_readers_over_the_corpus(corpus: hc.Corpus) -> None:
    """list, report, fsck, list --sweep, a sweep's show and the dashboard, once over the
    whole corpus."""
    uri = corpus.store.uri
    selection = [c.ref.split("/")[1] for c in corpus.cases
                 if c.name in ("huge_record", "control_sequences_in_fields",
                               "tokens_in_metric_names", "notebook_html_output_with_scripts")]
    dashboard_out = corpus.base / "outputs" / "dashboard.ipynb"
    jobs = [
        job(corpus, "list", ["list", "--store", uri, "-n", "0"]),
        job(corpus, "list --json", ["list", "--store", uri, "-n", "0", "--json"]),
        job(corpus, "fsck", ["fsck", "--store", uri]),
        job(corpus, "report", ["report", "--store", uri]),
        job(corpus, "list --sweep", ["list", "--store", uri, "--sweep", corpus.good_sweep]),
        job(corpus, "show sweep", ["show", "--store", uri, corpus.good_sweep]),
        job(corpus, "dashboard", [], exec=[
            str(PAPERMILL), str(DASHBOARD), str(dashboard_out), "-p", "store", uri,
            "-p", "selection", json.dumps(selection)]),
    ]
    results = run_batch(corpus, jobs, "store")
    found = problems(corpus, jobs, results) + leftovers(corpus)
    if dashboard_out.exists():
        found += dashboard_problems(dashboard_out)
    assert not found, report(found)


def dashboard_problems(path: Path) -> list[str]:
    """The executed dashboard: no error output, no planted secret or markup anywhere in it."""
    found = []
    text = path.read_text(errors="replace")
    nb = nbformat.reads(text, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found.append(f"* | dashboard: error output {output.get('ename')}: "
                             f"{str(output.get('evalue'))[:300]}")
            html = (output.get("data") or {}).get("text/html", "")
            for markup in hc.MARKUP:
                if markup in html:
                    found.append(f"* | dashboard: planted markup {markup!r} in an HTML output")
    for name, value in hc.SECRETS.items():
        if value in text:
            found.append(f"* | dashboard: the planted {name} secret is in its notebook")
    return found


def record_jobs(corpus: hc.Corpus, case: hc.Case) -> list[dict[str, Any]]:
    uri = corpus.store.uri
    jobs = []
    if case.ref:
        ref = case.ref
        jobs += [
            job(corpus, "show", ["show", "--store", uri, ref], case.name),
            job(corpus, "show --json", ["show", "--store", uri, "--json", ref], case.name),
            job(corpus, "diff", ["diff", "--store", uri, corpus.base_ref, ref], case.name),
            job(corpus, "attach", ["attach", "--store", uri, ref], case.name),
            job(corpus, "stop", ["stop", "--store", uri, ref], case.name),
            job(corpus, "rerun", ["rerun", "--store", uri, ref], case.name),
        ]
    if case.sweep:
        jobs += [
            job(corpus, "sweep show", ["show", "--store", uri, case.sweep], case.name),
            job(corpus, "sweep list", ["list", "--store", uri, "--sweep", case.sweep],
                case.name),
            job(corpus, "sweep --resume", ["sweep", "--resume", case.sweep, "--store", uri],
                case.name),
        ]
    return jobs


def test_every_record_command_over_each_hostile_record(corpus: hc.Corpus) -> None:
    """show, show --json, diff, attach, stop and rerun of each record; show, list --sweep and
    --resume of each sweep. Cases that name processes get a PID namespace of their own."""
    assert len(corpus.cases) >= 40
    # The cases that name processes side by side, then the rest: a batch that wrote outside
    # the store must not be blamed on another.
    isolated = [(record_jobs(corpus, c), c.name) for c in corpus.cases if c.isolated]
    batches = [(jobs, start(corpus, jobs, name)) for jobs, name in isolated]
    found = [line for jobs, batch in batches for line in problems(corpus, jobs, finish(batch))]
    shared = [j for c in corpus.cases if not c.isolated for j in record_jobs(corpus, c)]
    found += problems(corpus, shared, run_batch(corpus, shared, "records"))
    found += leftovers(corpus)
    assert not found, report(found)


@pytest.mark.skipif(not (SDK / "mlflow").exists(),
                    reason="the SDK venv (make sdk-venv) brings mlflow")
@pytest.mark.parametrize("store", ["local"], indirect=True)
def test_export_mlflow_over_the_corpus(corpus: hc.Corpus) -> None:
    """`export mlflow` of the whole corpus to a real tracking server (sqlite, 127.0.0.1); on
    the local store only, to keep the suite short: the export reads records as the other
    readers do."""
    server, uri = mlflow_server(corpus.base / "scratch")
    try:
        jobs = [job(corpus, "export mlflow", [], exec=[
            str(SDK / "python"), "-m", "sagebook.cli", "export", "mlflow", "--tracking-uri",
            uri, "--store", corpus.store.uri])]
        found = problems(corpus, jobs, run_batch(corpus, jobs, "export"))
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert not found, report(found)


def mlflow_server(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`mlflow server` with a sqlite backend on a free port of 127.0.0.1, started."""
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(SDK / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240  # a cold start migrates the new database
    while True:
        with socket.socket() as attempt:
            if attempt.connect_ex(("127.0.0.1", port)) == 0:
                return server, f"http://127.0.0.1:{port}"
        assert server.poll() is None and time.monotonic() < deadline, "mlflow did not start"
        time.sleep(0.5)
