"""`instance_type: local` as a SageMaker container: training code that hard-codes /opt/ml runs
unchanged (as root and as an unprivileged user), concurrent runs do not see each other's
trees, the fallback without namespaces refuses such code clearly, and the training process
gets the container's environment, not the laptop's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import REPO, manifest, runs

pytestmark = pytest.mark.slow  # every test is a full launch

# Written as much bring-your-own-container code is: every path spelled out under /opt/ml.
HARD_CODED = textwrap.dedent("""\
    import json, os, sys, time, pathlib
    prefix = '/opt/ml/'
    try:
        hps = json.load(open(prefix + 'input/config/hyperparameters.json'))
        rows = open(prefix + 'input/data/train/train.csv').read().splitlines()
        sync = os.environ.get('SYNC_DIR')
        if sync:  # concurrent runs: wait until the other one is running too
            pathlib.Path(sync, hps['tag']).touch()
            deadline = time.time() + 60
            while len(os.listdir(sync)) < 2 and time.time() < deadline:
                time.sleep(0.05)
        mine = pathlib.Path(prefix + 'model/' + hps['tag'] + '.txt')
        mine.write_text(f"{hps['tag']} {len(rows)} {os.getuid()}")
        time.sleep(0.3)
        seen = sorted(os.listdir(prefix + 'model'))
        json.dump({'seen': seen, 'hps': hps, 'env': sorted(os.environ),
                   'aws_key_ok': os.environ.get('AWS_SECRET_ACCESS_KEY') == 'laptop-secret',
                   'python': sys.executable},
                  open(prefix + 'output/data/seen.json', 'w'))
        if hps.get('fail') == 'true':
            raise RuntimeError('asked to fail')
    except Exception as e:
        open(prefix + 'output/failure', 'w').write(f'{type(e).__name__}: {e}')
        sys.exit(1)
""")


def write_job(folder: Path, tag: str, **changes) -> Path:
    """A job config and its training config in `folder`, running HARD_CODED."""
    code = folder / "code"
    if not code.exists():
        code.mkdir()
        (code / "train.py").write_text(HARD_CODED)
        data = folder / "data"
        data.mkdir()
        (data / "train.csv").write_text("a,b\n1,2\n3,4\n")
    training = folder / f"training-{tag}.yaml"
    training.write_text(yaml.safe_dump({"tag": tag, **changes.pop("training", {})}))
    job = {"experiment": "byoc", "training_config": str(training), "source_dir": str(code),
           "training_schema": None, "instance_type": "local",
           "channels": {"train": str(folder / "data")},
           "experiments_uri": str(folder / "experiments"), **changes}
    path = folder / f"job-{tag}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def launch(config: Path, *, prefix: tuple[str, ...] = (), env: dict | None = None,
           background: bool = False):
    argv = [*prefix, sys.executable, "-m", "sagebook.cli", "launch", str(config)]
    kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True,
              "env": {**os.environ, **(env or {})}}
    if background:
        return subprocess.Popen(argv, **kwargs)
    return subprocess.run(argv, timeout=120, **kwargs)


def seen(run: Path) -> dict:
    with tarfile.open(manifest(run)["output_artifact"]) as tar:
        return json.load(tar.extractfile("seen.json"))


@pytest.fixture
def shared_folder():
    """A folder an unprivileged user may write (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="sagebook-contract-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_code_that_hard_codes_opt_ml_runs_unchanged(tmp_path):
    before = sorted(os.listdir("/opt"))
    result = launch(write_job(tmp_path, "solo"))
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Completed" and m["opt_ml"] == "private namespace"
    got = seen(run)
    assert got["seen"] == ["solo.txt"] and got["hps"]["tag"] == "solo"
    with tarfile.open(m["model_artifact"]) as tar:
        assert tar.extractfile("solo.txt").read() == b"solo 3 0"  # uid 0, as in a container
    assert sorted(os.listdir("/opt")) == before and not Path("/opt/ml").exists()


def test_failure_file_at_opt_ml_becomes_the_failure_reason(tmp_path):
    result = launch(write_job(tmp_path, "bad", training={"fail": True}))
    assert result.returncode == 1
    m = manifest(runs(tmp_path / "experiments")[0])
    assert m["status"] == "Failed" and m["failure_reason"] == "RuntimeError: asked to fail"


def python_for_others(folder: Path) -> str:
    """An interpreter another user may run with this venv's packages.

    The test venv's Python may live in root's home (pyenv): then a venv of the system's own
    Python of the same version, reading this venv's site-packages, stands in for it.
    """
    real = Path(sys.executable).resolve()
    if all(os.stat(p).st_mode & 0o001 for p in [*real.parents, real]):
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/usr/local/bin")
    if system is None:
        pytest.skip(f"no {version} that another user may run")
    venv = folder / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    # site-packages, and the folder sagebook is imported from (an editable install's .pth is
    # not read when its site-packages is added by another .pth)
    (site / "test-venv.pth").write_text("\n".join(
        p for p in sys.path if p.endswith("site-packages") or (Path(p) / "sagebook").is_dir()
    ) + "\n")
    return str(venv / "bin" / "python")


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_unprivileged_user_gets_a_private_opt_ml_too(shared_folder):
    config = write_job(shared_folder, "nobody")
    python = python_for_others(shared_folder)
    as_nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    result = subprocess.run(
        [*as_nobody, python, "-m", "sagebook.cli", "launch", str(config)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HOME": str(shared_folder), "SAGEBOOK_WORK_DIR": str(shared_folder)})
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = runs(shared_folder / "experiments")
    m = manifest(run)
    assert m["status"] == "Completed" and m["opt_ml"] == "private namespace"
    with tarfile.open(m["model_artifact"]) as tar:
        assert tar.extractfile("nobody.txt").read() == b"nobody 3 0"
    # what the process wrote belongs to the user who launched
    assert Path(m["model_artifact"]).stat().st_uid == 65534
    assert not Path("/opt/ml").exists()


def test_concurrent_runs_each_see_their_own_opt_ml(tmp_path):
    sync = tmp_path / "sync"
    sync.mkdir()
    procs = [launch(write_job(tmp_path, tag, environment={"SYNC_DIR": str(sync)}),
                    background=True) for tag in ("left", "right")]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out + err
    assert sorted(os.listdir(sync)) == ["left", "right"]  # they did overlap
    found = {seen(run)["hps"]["tag"]: seen(run)["seen"] for run in runs(tmp_path / "experiments")}
    assert found == {"left": ["left.txt"], "right": ["right.txt"]}


# Namespaces denied for real: inside a user namespace whose limit on nested ones is 0.
NO_NAMESPACES = ("unshare", "--user", "--map-root-user", "sh", "-c",
                 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "deny")


def test_without_namespaces_hard_coded_paths_stop_the_launch_naming_file_and_line(tmp_path):
    result = launch(write_job(tmp_path, "fallback"), prefix=NO_NAMESPACES)
    assert result.returncode == 2, result.stdout + result.stderr
    code = tmp_path / "code" / "train.py"
    assert f"{code}:2: prefix = '/opt/ml/'" in result.stderr
    assert "namespaces are not allowed here" in result.stderr
    assert "local-docker" in result.stderr and "SAGEMAKER_BASE_DIR" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "experiments").exists()  # nothing written, nothing started
    doctor = subprocess.run([*NO_NAMESPACES, sys.executable, "-m", "sagebook.cli", "doctor",
                             str(tmp_path / "job-fallback.yaml")], capture_output=True, text=True)
    assert doctor.returncode == 1
    assert "FAIL local /opt/ml" in doctor.stdout and f"{code}:2" in doctor.stdout


def test_without_namespaces_code_that_reads_the_contract_runs_in_a_host_folder(tmp_path):
    config = write_job(tmp_path, "portable")
    (tmp_path / "code" / "train.py").write_text(textwrap.dedent("""\
        import os, pathlib
        base = os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")
        pathlib.Path(os.environ["SM_MODEL_DIR"], "where.txt").write_text(base)
    """))
    result = launch(config, prefix=NO_NAMESPACES)
    assert result.returncode == 0, result.stdout + result.stderr
    m = manifest(runs(tmp_path / "experiments")[0])
    assert m["opt_ml"] == "host folder"
    with tarfile.open(m["model_artifact"]) as tar:
        assert tar.extractfile("where.txt").read().decode() == m["work_dir"]
    doctor = subprocess.run([*NO_NAMESPACES, sys.executable, "-m", "sagebook.cli", "doctor",
                             str(config)], capture_output=True, text=True)
    assert doctor.returncode == 0 and "no private /opt/ml" in doctor.stdout


LAPTOP = {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "laptop-secret",
          "AWS_SESSION_TOKEN": "laptop-session", "HF_TOKEN": "hf_laptoptoken",
          "GITHUB_TOKEN": "ghp_laptoptoken", "WANDB_API_KEY": "laptop-wandb",
          "PYTHONPATH": f"{REPO / 'lib'}"}


@pytest.mark.parametrize("opt_in", [False, True])
def test_training_code_sees_laptop_credentials_only_when_the_config_opts_in(tmp_path, opt_in):
    config = write_job(tmp_path, "creds", pass_aws_credentials=opt_in)
    result = launch(config, env=LAPTOP)
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = runs(tmp_path / "experiments")
    got = seen(run)
    aws = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
    assert aws <= set(got["env"]) if opt_in else not aws & set(got["env"])
    assert got["aws_key_ok"] is opt_in
    # tokens never, nor the launcher's PYTHONPATH; the interpreter is still found
    assert not {"HF_TOKEN", "GITHUB_TOKEN", "WANDB_API_KEY", "PYTHONPATH"} & set(got["env"])
    assert got["python"] == sys.executable
    assert {"PATH", "HOME", "TRAINING_JOB_NAME", "SM_MODEL_DIR"} <= set(got["env"])
    m = manifest(run)
    assert m.get("aws_credentials_passed", False) is opt_in
    everything = "".join(p.read_text(errors="replace") for p in run.rglob("*") if p.is_file())
    assert "laptop-secret" not in everything and "hf_laptoptoken" not in everything
