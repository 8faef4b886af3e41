"""Parity with the sagemaker-training toolkit: for the same job, the `SM_*` variables of a local
run equal, name by name and value by value, what `sagemaker_training.environment.Environment`
computes on each host — for one host and for three. The differences that are deliberate are
listed (and checked) here.

The toolkit lives in the SDK's venv (`make sdk-venv`, the toolkit extra): it runs there as a
subprocess, reading the very /opt/ml trees the local backend writes.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sagebook.backends import contract

from conftest import REPO

TOOLKIT_PYTHON = REPO / ".venv-sdk" / "bin" / "python"

# Names sagebook sets that the toolkit does not, and why. Every other SM_* name is the
# toolkit's, with the toolkit's value.
EXTRA = {
    "SM_HOST_COUNT": "SageMaker's distributed drivers (SDK v3) export it for torchrun/mpirun; "
                     "training code on several hosts reads it",
    "SM_CURRENT_HOST_RANK": "idem: the host's index in SM_HOSTS, torchrun's node rank",
    "SM_MASTER_ADDR": "idem: the first host, which training code connects to",
    "SM_MASTER_PORT": "idem; locally a free port of this machine, since all hosts share its "
                      "loopback (7777 on SageMaker)",
}
# The toolkit also exports CURRENT_HOST, SAGEMAKER_JOB_NAME and SAGEMAKER_REGION into its own
# process; those are not part of to_env_vars() and not compared.

# Runs in the toolkit's venv: for each tree, the toolkit's variables as that host sees them.
TOOLKIT = """
import importlib, json, os, sys
out = []
for base in sys.argv[1:]:
    os.environ["SAGEMAKER_BASE_DIR"] = base
    from sagemaker_training import environment
    importlib.reload(environment)  # it reads SAGEMAKER_BASE_DIR when imported
    out.append(environment.Environment().to_env_vars())
print(json.dumps(out))
"""

pytestmark = pytest.mark.skipif(
    not TOOLKIT_PYTHON.exists()
    or subprocess.run([str(TOOLKIT_PYTHON), "-c", "import sagemaker_training"],
                      capture_output=True).returncode != 0,
    reason="the toolkit is missing: `make sdk-venv` installs it")


def job_request() -> dict:
    """A job with the values that trip naive emulations: numbers, booleans, lists, a section
    (dotted key), a channel name with a hyphen, a content type."""
    return {
        "TrainingJobName": "parity-20261201-000000-abcdef",
        "HyperParameters": {"epochs": "64", "learning_rate": "0.01", "optimizer": "adam",
                            "data.train_file": "train.csv", "shuffle": "true",
                            "layers": "[64, 32]", "seed": "null", "name": "\"quoted\"",
                            "x": "3"},
        "InputDataConfig": [
            {"ChannelName": name, "InputMode": "File", **extra,
             "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://b/{name}",
                                             "S3DataDistributionType": distribution}}}
            for name, distribution, extra in [
                ("config", "FullyReplicated", {"ContentType": "application/x-yaml"}),
                ("train", "ShardedByS3Key", {}),
                ("extra-data", "FullyReplicated", {})]],
        "Environment": {"LOG_LEVEL": "INFO"},
    }


def toolkit_variables(trees: list[Path], job_name: str) -> list[dict[str, str]]:
    result = subprocess.run(
        [str(TOOLKIT_PYTHON), "-c", TOOLKIT, *map(str, trees)], capture_output=True, text=True,
        timeout=120, env={"PATH": "/usr/bin:/bin", "TRAINING_JOB_NAME": job_name,
                          "HOME": str(trees[0].parent)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("host_count", [1, 3])
def test_sm_variables_equal_the_toolkits_on_every_host(tmp_path, host_count):
    request = job_request()
    hosts = contract.host_names(host_count)
    trees = [tmp_path / host for host in hosts]
    for host, tree in zip(hosts, trees, strict=True):
        contract.build_tree(tree, request, "local", host, hosts)
    reference = toolkit_variables(trees, request["TrainingJobName"])
    for host, tree, expected in zip(hosts, trees, reference, strict=True):
        ours = {k: v for k, v in contract.environment(
            request, str(tree), "local", host=host, hosts=hosts, master_port=29500).items()
            if k.startswith("SM_")}
        assert set(ours) - set(expected) == set(EXTRA)
        assert set(expected) - set(ours) == set(), "a toolkit variable is missing"
        for name in sorted(expected):
            assert ours[name] == expected[name], f"{host}: {name}"
        # the additions agree with the toolkit's own view of the cluster
        training_env = json.loads(expected["SM_TRAINING_ENV"])
        assert ours["SM_MASTER_ADDR"] == training_env["master_hostname"] == "algo-1"
        assert ours["SM_CURRENT_HOST_RANK"] == str(training_env["hosts"].index(host))
        assert ours["SM_HOST_COUNT"] == str(host_count)
    if host_count == 1:
        # the values the issue found wrong before: decoded numbers, dotted names kept
        assert json.loads(ours["SM_HPS"])["epochs"] == 64
        assert ours["SM_HP_DATA.TRAIN_FILE"] == "train.csv"
        assert "SM_USER_ARGS" in ours and "SM_OUTPUT_INTERMEDIATE_DIR" in ours
