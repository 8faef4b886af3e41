"""No credential ever lands in a record: launched with credentials in the environment, a
training script that prints its whole environment leaves none in logs, manifest, notebook or
archives; a config that inlines a secret is refused before anything is written."""

from __future__ import annotations

import random
import re
import resource
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import REPO, add_run, manifest, run_cli, runs, sagebook, wait_for

ACCESS_KEY = "AKIAQWERTYUIOPASDFGH"
SECRET_KEY = "Zm9vYmFyYmF6cXV4/c2VjcmV0+a2V5MTIzNDU2Nzg5"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEHwaCXVzLWVhc3QtMSJGMEQCIBLAHBLAHBLAH0123456789abcdefXYZ"
HF_TOKEN = "hf_SeCrEtVaLuE1234567890"
CREDENTIALS = (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, HF_TOKEN)

LEAKY_TRAINING = textwrap.dedent("""
    import os, pathlib
    base = pathlib.Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
    for name, value in sorted(os.environ.items()):
        print(f"{name}={value}")
    print("aws_secret_access_key = " + os.environ["AWS_SECRET_ACCESS_KEY"])
    (base / "output/failure").write_text(
        "boom: " + os.environ["AWS_SECRET_ACCESS_KEY"] + " token="
        + os.environ["AWS_SESSION_TOKEN"])
    raise SystemExit(1)
""")


def every_byte(folder: Path) -> bytes:
    """All files of a record, archives opened too."""
    data = b""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data += path.read_bytes()
        if path.name.endswith(".tar.gz"):
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    if member.isfile():
                        data += tar.extractfile(member).read()
    return data


def leaky_config(make_config, tmp_path: Path) -> Path:
    code = tmp_path / "leaky"
    code.mkdir()
    (code / "train.py").write_text(LEAKY_TRAINING)
    # the credentials reach the training process only when the config passes them
    return make_config(source_dir=str(code), training_schema=None, pass_aws_credentials=True,
                       environment={"DB_PASSWORD": "arn:aws:secretsmanager:us-east-1:"
                                                   "123456789012:secret:db-AbCdEf"})


def credential_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)


@pytest.mark.slow
def test_cli_launch_leaves_no_credential_in_the_record(make_config, tmp_path, monkeypatch):
    credential_env(monkeypatch)
    result = sagebook("launch", str(leaky_config(make_config, tmp_path)))
    assert result.returncode == 1  # the script fails on purpose, after leaking all it can
    [run] = runs(tmp_path / "experiments")
    data = every_byte(run)
    assert b"aws_secret_access_key = ****" in data  # the line is there, the key is not
    assert b"DB_PASSWORD=arn:aws:secretsmanager" in data  # references stay readable
    for secret in CREDENTIALS:
        assert secret.encode() not in data, secret
    assert manifest(run)["failure_reason"] == "boom: **** token=****"
    # and what the terminal showed: the log, the summary's failure line, the error
    printed = result.stdout + result.stderr
    assert "failure: boom: **** token=****" in printed
    assert "aws_secret_access_key = ****" in printed
    for secret in CREDENTIALS:
        assert secret not in printed, secret


@pytest.mark.slow
def test_notebook_launch_leaves_no_credential_in_the_record(make_config, tmp_path,
                                                            monkeypatch):
    credential_env(monkeypatch)
    config = leaky_config(make_config, tmp_path)
    out = tmp_path / "out.ipynb"
    result = subprocess.run([str(Path(sys.executable).parent / "papermill"),
                             str(REPO / "notebooks/launch.ipynb"), str(out),
                             "-p", "config", str(config)], capture_output=True, text=True,
                            timeout=180)
    # papermill's own output notebook (anyone may commit it) and its terminal output
    executed = out.read_text() + result.stdout + result.stderr
    assert "AWS_SECRET_ACCESS_KEY=****" in executed
    assert "boom: **** token=****" in executed  # the summary's failure line and RunFailed
    for secret in CREDENTIALS:
        assert secret not in executed, secret
    run = wait_for(lambda: [r for r in runs(tmp_path / "experiments")
                            if (r / "notebook.ipynb").exists()], what="the notebook")[0]
    wait_for(lambda: manifest(run)["notebook"]["status"] != "pending", what="the capture")
    data = every_byte(run)
    assert b"AWS_SECRET_ACCESS_KEY=****" in data
    for secret in CREDENTIALS:
        assert secret.encode() not in data, secret


@pytest.mark.slow
def test_form_launch_shows_no_credential(make_config, tmp_path, monkeypatch):
    from sagebook.widgets import ConfigForm

    credential_env(monkeypatch)
    form = ConfigForm(leaky_config(make_config, tmp_path))
    form.launch().join(timeout=180)
    shown = form.log.value + form.run_status.value + form.record.value
    assert "Failed" in form.run_status.value and "boom: **** token=****" in shown
    executed = re.search(r"executed notebook <code>(.+?)</code>", form.run_status.value)[1]
    shown += Path(executed).read_text()
    assert "AWS_SECRET_ACCESS_KEY=****" in shown
    for secret in CREDENTIALS:
        assert secret not in shown, secret


def test_inline_secrets_in_the_job_environment_are_refused(make_config, tmp_path):
    path = make_config(environment={"HF_TOKEN": HF_TOKEN, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                                    "TOKENIZERS_PARALLELISM": "false"})
    result = sagebook("launch", str(path))
    assert result.returncode == 2
    assert "job.environment.HF_TOKEN" in result.stderr or "environment.HF_TOKEN" in result.stderr
    assert "looks like an AWS access key id" in result.stderr
    assert "TOKENIZERS_PARALLELISM" not in result.stderr
    assert "Secrets Manager" in result.stderr
    assert not (tmp_path / "experiments").exists()


# --------------------------------------------------------------------------------------------
# Masking runs in linear time, whatever the line

# The single pattern masking used before: the reference for what must be masked. It backtracks
# over long runs of name characters (quadratic), so it is only ever run on short texts here.
_REFERENCE = re.compile(
    r"(?P<name>[A-Za-z0-9_\-.]*(?<![A-Za-z0-9])(?:secret|password|passwd|token|credentials?|"
    r"(?:api|private|access)[_\-]?key)(?![A-Za-z0-9])[A-Za-z0-9_\-.]*)"
    r"(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?P<value>[A-Za-z0-9/+=_\-.]{8,})",
    re.IGNORECASE,
)


def _reference_mask(text: str) -> str:
    from sagebook.secrets import ACCESS_KEY_ID, MASK, SECRET_REFERENCE

    def mask(match: re.Match[str]) -> str:
        value = match.group("value")
        if value.isdigit() or SECRET_REFERENCE.match(value):
            return match.group(0)
        return f"{match.group('name')}{match.group('sep')}{MASK}"

    return _REFERENCE.sub(mask, ACCESS_KEY_ID.sub(MASK, text))


def test_named_values_are_masked_as_the_single_pattern_masked_them():
    # The rule for `name = value` (and access key ids) alone: redact() as a whole also masks
    # the token shapes, which these random texts make too (a 40-character run next to
    # "secret" is an AWS secret key).
    from sagebook.secrets import ACCESS_KEY_ID, MASK, _mask_named_values

    pieces = ["token", "password", "secret", "api_key", "HF_TOKEN", "aws_secret_access_key",
              "passwd", "x", "=", ": ", '"', "'", " ", "abcdefgh12", "12345678901", "\n",
              "arn:aws:ssm:x", ACCESS_KEY, "-", ".", "TOKENIZERS_PARALLELISM", "/", "+"]
    rng = random.Random(16)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 24)))
        assert _mask_named_values(ACCESS_KEY_ID.sub(MASK, text)) == _reference_mask(text), text


_TIMING_CHILD = textwrap.dedent("""
    import re, sys, time
    from sagebook.secrets import redact

    tokenize = re.compile(r"[A-Za-z0-9_\\-.]+|[^A-Za-z0-9_\\-.]+").findall

    def best(function, text):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            function(text)
            times.append(time.perf_counter() - start)
        return min(times)

    shapes = {
        "one long name": lambda n: "a" * n,
        "secret words": lambda n: ("token-" * n)[:n],
        "names and spaces": lambda n: ("token " * n)[:n],
        "a long separator": lambda n: "password=" + " " * n,
        "pairs": lambda n: ("password=abcdefgh12 " * n)[:n],
    }
    for name, make in shapes.items():
        for size in (10_000, 100_000, 1_000_000):
            text = make(size)
            print(name, size, best(redact, text) / best(tokenize, text), flush=True)
""")


def test_masking_time_is_linear_in_the_line_length():
    # Each hostile line of 10k, 100k and 1M characters is masked within a generous factor of
    # the time a trivial regex takes to tokenize the same line: linear (measured 3-110x on a
    # loaded machine), where the quadratic pattern took 5.4 s for 20k characters (~20,000x).
    # In a child with a deadline, so that a regression fails instead of hanging the suite.
    result = subprocess.run([sys.executable, "-c", _TIMING_CHILD], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    ratios = [line.rsplit(" ", 1) for line in result.stdout.splitlines()]
    assert len(ratios) == 15
    for label, ratio in ratios:
        assert float(ratio) < 1000, f"{label}: {float(ratio):.0f}x a tokenizing regex"


@pytest.mark.slow
def test_a_failed_runs_summary_and_error_are_masked_for_python_callers(make_config, tmp_path,
                                                                      monkeypatch):
    from sagebook.launch import RunFailed, launch

    credential_env(monkeypatch)
    run = launch(leaky_config(make_config, tmp_path), echo=lambda line: None)
    assert "failure: boom: **** token=****" in run.summary()
    assert "failed: boom: **** token=****" in str(RunFailed(run))
    for secret in CREDENTIALS:
        assert secret not in run.summary() + str(RunFailed(run)), secret


# --------------------------------------------------------------------------------------------
# Token shapes: what secret scanners look for, printed bare by training code

def _chars(count: int, seed: int) -> str:
    """Letters of both cases and digits, as random tokens have them (built here, so that no
    token is written in this file, nor in the training code a record archives)."""
    alphabet = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789aBcDeFgHiJkLmNoPqRsTuVwXyZ"
    return "".join(alphabet[(seed * 7 + i * (seed + 3)) % len(alphabet)] for i in range(count))


GITHUB = "ghp_" + _chars(36, 1)
GITHUB_PAT = "github_pat_" + _chars(22, 2) + "_" + _chars(59, 3)
HUGGING_FACE = "hf_" + _chars(34, 4)
AWS_SECRET = _chars(18, 5) + "/" + _chars(11, 6) + "+" + _chars(9, 7)  # 40
SLACK = "xoxb-" + "2" * 11 + "-" + "3" * 12 + "-" + _chars(24, 8)
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ0cmFpbmVyIiwiZXhwIjo5OTk5fQ."
       + _chars(43, 9))
URL_PASSWORD = "S3cr3t-" + _chars(14, 10)
BEARER = _chars(40, 11)
BASIC = _chars(28, 12) + "=="
KEY_LINES = [_chars(64, 13), _chars(64, 14), _chars(20, 15) + "=="]

# kind: (what the training code prints, what must not survive, what stays readable)
SAMPLES = {
    "github": (f"cloning with {GITHUB}", [GITHUB[4:]], "cloning with ghp_****"),
    "github_pat": (f"GH={GITHUB_PAT} git push", [GITHUB_PAT[11:]], "git push"),
    "hugging_face": (f"hub login {HUGGING_FACE} ok", [HUGGING_FACE[3:]], "hub login hf_****"),
    "aws_secret_key": (f"aws_access_key_id {ACCESS_KEY} aws_secret_access_key {AWS_SECRET}",
                       [ACCESS_KEY, AWS_SECRET], "aws_secret_access_key ****"),
    "jwt": (f"id token {JWT} expires soon", [JWT.rsplit(".", 1)[1], JWT[:40]],
            "id token **** expires"),
    "url_password": (f"connecting to postgresql://admin:{URL_PASSWORD}@db.internal:5432/train",
                     [URL_PASSWORD], "postgresql://admin:****@db.internal:5432/train"),
    "slack": (f"notify via {SLACK}", [SLACK[5:]], "notify via xoxb-****"),
    "bearer": (f"curl -H 'Authorization: Bearer {BEARER}' https://api.internal/v1",
               [BEARER], "Bearer ****'"),
    "bearer_json": (f'headers {{"authorization": "Bearer {JWT}"}}', [JWT[:40]], "headers {"),
    "basic": (f"Authorization: Basic {BASIC}", [BASIC], "Authorization: Basic ****"),
    "private_key": ("\n".join(["-----BEGIN RSA PRIVATE KEY-----", *KEY_LINES,
                               "-----END RSA PRIVATE KEY-----", "epoch 1 loss=0.5"]),
                    KEY_LINES, "-----END RSA PRIVATE KEY-----\nepoch 1 loss=0.5"),
}
SECRETS = [secret for _, secrets, _ in SAMPLES.values() for secret in secrets]

# Ordinary training output: nothing in it may be masked.
ORDINARY = [
    "epoch 3 step 1200 loss=0.4213 accuracy=0.8812 lr=0.001",
    "commit 3f2a9c1d4e5b6a7f8091a2b3c4d5e6f708192a3b (HEAD -> main)",
    "run 20240501T101112.123456Z-a1b2c3 uuid 123e4567-e89b-12d3-a456-426614174000",
    "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 data/train.csv",
    f"model weights digest {AWS_SECRET} (base64)",  # a 40-character run, no AWS about it
    "saved s3://my-bucket/experiments/exp-a/20240501T101112-a1b2c3/model.tar.gz",
    "downloading https://huggingface.co/bert-base-uncased/resolve/main/config.json",
    "tokenizer hf_tokenizer_v2 vocab=30522 max_tokens=512",
    "listening on http://127.0.0.1:8080/metrics at 12:30:45, user ann@host",
    "payload eyJhbGciOiJIUzI1NiJ9 (header only)",
    "-----BEGIN CERTIFICATE-----",
    "MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ",
    "-----END CERTIFICATE-----",
]


def _lines_of(text: str) -> list[str]:
    return text.split("\n")


def test_every_token_shape_is_masked_in_a_log_line(tmp_path):
    from sagebook.backends.logs import LogSink
    from sagebook.secrets import redact

    shown: list[str] = []
    sink = LogSink(tmp_path / "logs/algo-1.log", tmp_path / "metrics.jsonl", [], shown.append)
    for kind, (text, secrets, readable) in SAMPLES.items():
        masked = redact(text, ())
        assert readable in masked, kind
        for line in _lines_of(text):  # as the training output reaches the sink
            sink.line(line + "\n")
        for secret in secrets:
            assert secret not in masked, kind
    sink.close()
    logged = (tmp_path / "logs/algo-1.log").read_text()
    assert logged == "\n".join(shown) + "\n"
    for kind, (_, _, readable) in SAMPLES.items():
        assert readable in logged, kind
    for secret in SECRETS:
        assert secret not in logged


def test_ordinary_training_output_is_not_masked(tmp_path):
    from sagebook.backends.logs import LogSink
    from sagebook.secrets import redact, token_kind

    sink = LogSink(tmp_path / "algo-1.log", tmp_path / "metrics.jsonl", [], lambda line: None)
    for line in ORDINARY:
        assert redact(line, ()) == line
        assert token_kind(line) is None, line
        sink.line(line)
    sink.close()
    assert (tmp_path / "algo-1.log").read_text() == "\n".join(ORDINARY) + "\n"
    assert redact("\n".join(ORDINARY), ()) == "\n".join(ORDINARY)


def test_every_token_shape_is_masked_inside_json():
    import json

    from sagebook.secrets import redact

    for kind, (text, secrets, _) in SAMPLES.items():
        document = json.dumps({"cells": [{"outputs": [{"text": text + "\n"}]}]}, indent=1)
        masked = redact(document, ())
        assert json.loads(masked)  # still JSON: a mask never eats a quote or half an escape
        for secret in secrets:
            assert secret not in masked, kind


def test_every_token_shape_is_masked_when_split_across_notebook_outputs(store, tmp_path):
    # The kernel sends a line in as many stream messages as it had writes (and flushes): a
    # notebook's output may hold a token in two pieces, and a key in many.
    import json

    import nbformat

    from sagebook.notebooks import store_notebook

    record = add_run(store)
    outputs = []
    for text, secrets, _ in SAMPLES.values():
        cut = text.index(secrets[0]) + len(secrets[0]) // 2
        outputs += [nbformat.v4.new_output("stream", name="stdout", text=text[:cut]),
                    nbformat.v4.new_output("stream", name="stdout", text=text[cut:] + "\n")]
    cell = nbformat.v4.new_code_cell("train()", execution_count=1, outputs=outputs)
    notebook = nbformat.v4.new_notebook(cells=[cell])
    (tmp_path / "out.ipynb").write_text(nbformat.writes(notebook))

    store_notebook(record.uri, str(tmp_path / "out.ipynb"), "papermill")

    stored = store.read_text(f"{record.prefix}/notebook.ipynb")
    [cell] = json.loads(stored)["cells"]
    [output] = cell["outputs"]  # the pieces joined, as Jupyter shows them
    for kind, (_, _, readable) in SAMPLES.items():
        assert readable in output["text"], kind
    for secret in SECRETS:
        assert secret not in stored


def test_printing_masks_whole_lines_written_in_pieces():
    # print() writes its arguments one by one: the AWS context, the URL around a password,
    # are only seen in the whole line
    import contextlib
    import io

    from sagebook.printing import masked_output

    out = io.StringIO()
    with contextlib.redirect_stdout(out), masked_output():
        print("aws_secret_access_key", AWS_SECRET)
        print("postgresql://admin:", URL_PASSWORD, "@db:5432/train", sep="")
        for line in _lines_of(SAMPLES["private_key"][0]):
            print(line)
        print("unfinished", HUGGING_FACE, end="")  # held until the block ends, then masked
    shown = out.getvalue()
    assert "aws_secret_access_key ****" in shown
    assert "postgresql://admin:****@db:5432/train" in shown
    assert shown.endswith("unfinished hf_****")
    for secret in SECRETS:
        assert secret not in shown


TOKEN_TRAINING = textwrap.dedent("""
    import sys
    # reversed, so that the code archived with the record holds no token
    for text in {reversed_samples!r}:
        print(text[::-1], flush=True)
    sys.stdout.write("Authorization: ")  # a line in two writes
    sys.stdout.write("Bearer " + {reversed_bearer!r}[::-1] + "\\n")
""")


def token_config(make_config, tmp_path: Path) -> Path:
    code = tmp_path / "tokens"
    code.mkdir()
    (code / "train.py").write_text(TOKEN_TRAINING.format(
        reversed_samples=[text[::-1] for text, _, _ in SAMPLES.values()],
        reversed_bearer=BEARER[::-1]))
    return make_config(source_dir=str(code), training_schema=None)


@pytest.mark.slow
def test_a_launch_whose_training_prints_tokens_records_and_shows_none(make_config, tmp_path):
    config = token_config(make_config, tmp_path)
    out = tmp_path / "out.ipynb"
    result = subprocess.run([str(Path(sys.executable).parent / "papermill"),
                             str(REPO / "notebooks/launch.ipynb"), str(out),
                             "-p", "config", str(config)], capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr
    # papermill's own output notebook and its terminal output
    executed = out.read_text() + result.stdout + result.stderr
    assert "hub login hf_****" in executed
    for secret in SECRETS:
        assert secret not in executed, secret
    [run] = runs(tmp_path / "experiments")
    wait_for(lambda: manifest(run)["notebook"]["status"] != "pending", what="the capture")
    log = (run / "logs/algo-1.log").read_text()
    for kind, (_, _, readable) in SAMPLES.items():
        assert readable in log, kind
    assert "Authorization: Bearer ****" in log
    assert "hub login hf_****" in (run / "notebook.ipynb").read_text()
    # the whole store: log, notebook, manifest, request, configs, the index's events
    stored = every_byte(tmp_path / "experiments")
    assert b"_index" in b"".join(str(p).encode() for p in (tmp_path / "experiments").rglob("*"))
    for secret in SECRETS:
        assert secret.encode() not in stored, secret
    # and the terminal of a launch from the command line
    result = sagebook("launch", str(config))
    assert result.returncode == 0, result.stderr
    assert "cloning with ghp_****" in result.stdout
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr, secret


@pytest.mark.parametrize("override, where", [
    (f"training.target_column={GITHUB}", "training.target_column"),
    (f"job.tags.owner={HUGGING_FACE}", "job.tags.owner"),
    (f"job.environment.MY_SETTING={HUGGING_FACE}", "job.environment.MY_SETTING"),
    (f"training.data.train_file=https://ann:{URL_PASSWORD}@files.internal/train.csv",
     "training.data.train_file"),
], ids=["training", "tag", "environment", "url"])
def test_a_token_in_an_override_is_refused_before_anything_is_written(make_config, tmp_path,
                                                                      override, where):
    result = sagebook("launch", str(make_config()), "-o", override)
    assert result.returncode == 2, result.stderr
    [problem] = [line for line in result.stderr.splitlines() if where in line]
    assert f"override '{override.partition('=')[0]}=" in problem  # names the override
    assert "looks like a" in problem and "Secrets Manager" in problem
    assert "Traceback" not in result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    assert not (tmp_path / "experiments").exists()


def test_a_token_in_a_config_file_is_refused_with_its_file_and_line(make_config, tmp_path):
    config = make_config(training={"target_column": JWT}, tags={"team": "ml", "owner": GITHUB})
    result = sagebook("launch", str(config))
    assert result.returncode == 2
    training = yaml.safe_load(config.read_text())["training_config"]
    line = Path(training).read_text().splitlines().index(f"target_column: {JWT}") + 1
    assert (f"{training}:{line}: training.target_column: looks like a JSON Web Token; a config "
            "is shared and recorded") in result.stderr
    assert "job.tags.owner: looks like a GitHub token" in result.stderr
    assert "job.tags.team" not in result.stderr
    assert JWT not in result.stderr and GITHUB not in result.stderr
    assert not (tmp_path / "experiments").exists()


def test_the_readme_example_hugging_face_token_is_refused(make_config, tmp_path):
    result = sagebook("launch", str(make_config(environment={"MY_SETTING": HUGGING_FACE})))
    assert result.returncode == 2
    assert "job.environment.MY_SETTING: looks like a Hugging Face token" in result.stderr


@pytest.mark.parametrize("args", [["note", "RUN", f"the key was {GITHUB}, rotated"],
                                  ["tag", "RUN", f"owner={HUGGING_FACE}"],
                                  ["rename", "RUN", f"run with {SLACK}"]],
                         ids=["note", "tag", "rename"])
def test_a_note_tag_or_name_holding_a_token_is_refused_and_writes_nothing(store, capsys, args):
    from sagebook.record import Record

    run = add_run(store)
    before = sorted(store.list(""))
    args = [run.run_id if a == "RUN" else a for a in args]
    code, out, err = run_cli(capsys, *args, "--store", store.uri)
    assert code == 2
    assert "looks like a" in err and "Secrets Manager" in err and "Traceback" not in err
    for secret in SECRETS:
        assert secret not in out + err
    assert Record.open(store, "exp-a", run.run_id).annotations() == []
    assert sorted(store.list("")) == before


_PATHOLOGICAL_CHILD = textwrap.dedent("""
    from sagebook.secrets import Masker, redact, token_kind
    size = 5_000_000
    shapes = ["eyJ.", "eyJa", "eyJ-", "ghp_", "github_pat_", "hf_", "xoxb-", "a://", "://u:",
              "bearer ", "authorization: ", "Authorization:" + " " * 1000, "aws ",
              "A1b/" * 10 + " aws ", "-----BEGIN PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY"
              "-----\\n" + "A" * 64 + "\\n", "token=", "password" + "-" * 100, "a"]
    for shape in shapes:
        text = shape * (size // len(shape))
        redact(text, ())
        token_kind(text)
        mask = Masker(())
        for line in text.split("\\n")[:1000]:
            mask(line)
        print(repr(shape[:12]), "done", flush=True)
""")


@pytest.mark.slow  # megabyte lines in a child under limits
def test_pathological_lines_are_masked_in_bounded_time():
    # 5 MB of each shape that would make a backtracking pattern quadratic ('eyJ' + '.'
    # repeats, 'ghp_' * 1e6, 'a://' * 1e6…): each is masked in about a second here. In a
    # child under a memory limit, killed (SIGKILL) at the deadline, so that a regression
    # fails this test instead of hanging the suite.
    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    result = subprocess.run([sys.executable, "-c", _PATHOLOGICAL_CHILD], capture_output=True,
                            text=True, timeout=300, preexec_fn=limited)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(" done") == 19
