"""sagebook used as a team would: a wheel installed outside this repository, `sagebook init`,
and the new project's launch notebook run with papermill, its executed notebook in the record."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from sagebook.project import TEMPLATE, template_files

from conftest import NOT_BUILT, REPO, add_run, manifest, runs, sagebook, wait_for


def _run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                            timeout=300, **kwargs)
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the repository with sagebook's wheel, built from this tree, in it.

    The wheel goes in without its dependencies, which come from the test environment's
    site-packages through a path file (no index is asked); sagebook itself is the wheel's.
    """
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=NOT_BUILT)
    offline = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", base / "dist", source, env=offline)
    [wheel] = (base / "dist").glob("sagebook-*.whl")
    venv = base / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel,
         env=offline)
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
                        ).stdout.strip())
    (purelib / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _outside(env: dict[str, str]) -> dict[str, str]:
    """The environment of a user outside this repository: no source tree on the path."""
    return {k: v for k, v in env.items() if k != "PYTHONPATH"}


def test_template_is_this_repository(tmp_path):
    """One source: every template file but the new project's README and .gitignore is this
    repository's own file, reached through a link."""
    own = {"README.md", ".gitignore"}
    names = {name for _, name in template_files()}
    assert {"configs/sagemaker_config.local.yaml", "configs/sagemaker_config.yaml",
            "configs/training_config.yaml", "sagemaker_container/train.py",
            "sagemaker_container/schema.py", "sagemaker_container/train",
            "notebooks/launch.ipynb", "notebooks/experiments.ipynb",
            "notebooks/edit_config.ipynb", "Dockerfile", "build_and_push.sh",
            "environment.yaml", "data/digits/train.csv", *own} <= names
    for source, name in template_files():
        if name not in own:
            assert source.resolve() == (REPO / name).resolve(), name
    assert not any(p.is_symlink() for p in (TEMPLATE / "README.md", TEMPLATE / "gitignore"))


def test_init_writes_nothing_over_existing_files(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "training_config.yaml").write_text("mine: 1\n")
    result = subprocess.run([sys.executable, "-m", "sagebook.cli", "init", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "already has configs/training_config.yaml" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["configs", "training_config.yaml"]


@pytest.mark.slow
def test_wheel_outside_the_repository_inits_a_project_and_launches_its_notebook(venv,
                                                                                 tmp_path):
    env = _outside(os.environ)
    python, sagebook = venv / "bin" / "python", venv / "bin" / "sagebook"
    where = _run(python, "-c", "import sagebook.notebooks as n; print(n.__file__); "
                 "print(n.LAUNCH_NOTEBOOK)", env=env, cwd=tmp_path).stdout.split()
    assert all(path.startswith(str(venv)) for path in where), where  # the wheel, not the tree

    project = tmp_path / "my-project"
    result = _run(sagebook, "init", project, env=env, cwd=tmp_path)
    assert "papermill notebooks/launch.ipynb" in result.stdout
    assert os.access(project / "sagemaker_container" / "train", os.X_OK)
    assert os.access(project / "build_and_push.sh", os.X_OK)
    assert "- sagebook" in (project / "environment.yaml").read_text()
    assert "-e ." not in (project / "environment.yaml").read_text()
    for name in ("configs/sagemaker_config.yaml", "sagemaker_container/train.py", "Dockerfile"):
        assert (project / name).read_bytes() == (REPO / name).read_bytes(), name

    out = project / "out.ipynb"
    _run(python, "-m", "papermill", "notebooks/launch.ipynb", out,
         "-p", "config", "configs/sagemaker_config.local.yaml",
         "-p", "overrides", '["training.epochs=1"]', env=env, cwd=project)
    [run] = runs(project / "experiments")
    final = wait_for(lambda: manifest(run)["notebook"]["status"] != "pending" and manifest(run),
                     timeout=60, what="the notebook capture")
    assert final["status"] == "Completed" and final["launched_via"] == "notebook"
    assert final["notebook"]["status"] == "completed"
    stored = json.loads((run / "notebook.ipynb").read_text())
    assert stored["metadata"]["papermill"]["end_time"]  # papermill's final save
    assert f"record: {run}" in json.dumps(stored)

    # the dashboard notebook, from the same wheel (its plots are the notebook extra's)
    board = project / "board.ipynb"
    _run(python, "-m", "papermill", "notebooks/experiments.ipynb", board, env=env, cwd=project)
    outputs = [o for c in json.loads(board.read_text())["cells"] for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert run.name in json.dumps(outputs)


def test_commands_find_the_project_store_from_inside_the_project(tmp_path):
    from sagebook.project import init
    from sagebook.stores import open_store

    project = tmp_path / "proj"
    init(project)
    empty = sagebook("list", cwd=project / "notebooks")
    assert empty.returncode == 0
    # no run yet: it names the project's store, and where its cloud config keeps records
    assert f"no runs in {project / 'experiments'}" in empty.stderr
    assert ("configs/sagemaker_config.yaml keeps records in s3://my-ml-bucket/sagebook/"
            "experiments: add -c ../configs/sagemaker_config.yaml") in empty.stderr
    assert "--reindex" not in empty.stderr
    missing = sagebook("show", "20261126-031502-a3f9c1", cwd=project)
    assert missing.returncode == 1 and "--reindex" not in missing.stderr
    assert "keeps records in s3://my-ml-bucket/sagebook/experiments: add -c configs/" \
        "sagemaker_config.yaml" in missing.stderr

    record = add_run(open_store(str(project / "experiments")), "digits-mlp")
    for where in (project, project / "notebooks", project / "sagemaker_container"):
        listed = sagebook("list", cwd=where)
        assert record.run_id in listed.stdout, (where, listed.stderr)
    shown = sagebook("show", record.run_id[-6:], cwd=project / "data" / "digits")
    assert shown.returncode == 0 and f"record:      {record.uri}" in shown.stdout

    # records the index does not know: then, and only then, --reindex
    other = tmp_path / "elsewhere"
    (other / "experiments" / "exp" / "20260101-000000-abcdef").mkdir(parents=True)
    (other / "experiments" / "exp" / "20260101-000000-abcdef" / "manifest.json").write_text("{}")
    assert "sagebook list --reindex" in sagebook("list", cwd=other).stderr
