"""No credential ever lands in a record: launched with credentials in the environment, a
training script that prints its whole environment leaves none in logs, manifest, notebook or
archives; a config that inlines a secret is refused before anything is written."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

from conftest import REPO, manifest, runs, sagebook, wait_for

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


def test_a_failed_runs_summary_and_error_are_masked_for_python_callers(make_config, tmp_path,
                                                                      monkeypatch):
    from sagebook.launch import RunFailed, launch

    credential_env(monkeypatch)
    run = launch(leaky_config(make_config, tmp_path), echo=lambda line: None)
    assert "failure: boom: **** token=****" in run.summary()
    assert "failed: boom: **** token=****" in str(RunFailed(run))
    for secret in CREDENTIALS:
        assert secret not in run.summary() + str(RunFailed(run)), secret
