"""The environment the training process is given, read from inside it: every variable the
contract computes reaches it, dotted names included (the toolkit's `SM_HP_DATA.TRAIN_FILE` for
a nested hyperparameter, which a POSIX shell on the way would drop), on one host and on two.

`contract.environment()` is the reference here; test_toolkit_parity.py holds it equal to the
toolkit's `Environment().to_env_vars()`, so the process gets the toolkit's variables.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import textwrap

import pytest

from sagebook.backends import contract, namespace

from conftest import manifest, runs, sagebook

# What the process was started with, as the kernel keeps it (/proc/self/environ: Python may add
# LC_CTYPE to os.environ on its own), and what the training code reads (os.environ).
DUMP = textwrap.dedent("""\
    import json, os
    started = open('/proc/self/environ', 'rb').read().decode().split('\\0')
    base = os.environ.get('SAGEMAKER_BASE_DIR', '/opt/ml')
    with open(f"{base}/output/data/env-{os.environ['SM_CURRENT_HOST']}.json", 'w') as out:
        json.dump({'started': dict(e.split('=', 1) for e in started if '=' in e),
                   'os_environ': dict(os.environ)}, out)
""")

# The example's nested `data:` section, as the toolkit names its variables.
DOTTED = {"SM_HP_DATA.TRAIN_FILE": "train.csv", "SM_HP_DATA.VALIDATION_FILE": "validation.csv",
          "SM_HP_DATA.VALIDATION_FRACTION": "0.2"}


def started_environment(command: list[str]) -> dict[str, str]:
    out = subprocess.run(command, capture_output=True, check=True).stdout
    return dict(entry.decode().split("=", 1) for entry in out.split(b"\0") if b"=" in entry)


@pytest.mark.skipif(not namespace.support().available, reason=namespace.support().detail)
def test_private_opt_ml_passes_the_environment_through_unchanged(tmp_path):
    given = {"PATH": os.environ["PATH"], **DOTTED, "SM_HPS": '{"data.train_file": "a b"}',
             "LOG_LEVEL": "INFO", "EMPTY": "", "MULTI": "one\ntwo",
             # the job's own Python settings are the training code's, not the set-up's
             "PYTHONPATH": str(tmp_path / "nothing"), "PYTHONHOME": str(tmp_path / "nothing")}
    wrapped = namespace.wrap(["env", "-0"], tmp_path / "tree", tmp_path / "scratch", ["algo-1"])
    (tmp_path / "tree").mkdir()
    assert started_environment(["env", "-i", *(f"{k}={v}" for k, v in given.items()),
                                *wrapped]) == given


@pytest.mark.skipif(not namespace.support().available, reason=namespace.support().detail)
def test_a_missing_command_in_the_namespace_exits_as_a_shell_would(tmp_path):
    (tmp_path / "tree").mkdir()
    result = subprocess.run(namespace.wrap([str(tmp_path / "absent")], tmp_path / "tree",
                                           tmp_path / "scratch", ["algo-1"]),
                            capture_output=True, text=True)
    assert result.returncode == 127, result.stderr
    assert "absent: No such file or directory" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("count", [1, 2])
def test_training_process_gets_every_contract_variable(make_config, tmp_path, count):
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(DUMP)
    config = make_config(source_dir=str(code), training_schema=None, instance_count=count)
    result = sagebook("launch", str(config), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Completed"
    request = json.loads((run / "request.json").read_text())
    hosts = contract.host_names(count)
    with tarfile.open(m["output_artifact"]) as tar:
        seen = {host: json.load(tar.extractfile(f"env-{host}.json")) for host in hosts}
    for host in hosts:
        started, os_environ = seen[host]["started"], seen[host]["os_environ"]
        base = started.get("SAGEMAKER_BASE_DIR", contract.CONTAINER_BASE)
        expected = {
            **contract.machine_environment(os.environ),
            **contract.environment(request, base, "local", host=host, hosts=hosts,
                                   master_addr=started["SM_MASTER_ADDR"],
                                   master_port=int(started["SM_MASTER_PORT"])),
            "PYTHONUNBUFFERED": "1", "PYTHONBREAKPOINT": "0",
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_CONFIG_FILE": os.devnull,
        }
        assert started == expected, host
        assert {k: os_environ[k] for k in DOTTED} == DOTTED, host
        assert json.loads(started["SM_HPS"])["data.validation_fraction"] == 0.2
        assert started["SM_CURRENT_HOST"] == host
