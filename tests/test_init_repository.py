"""`sagebook init` as a team meets it: from a wheel that carries only committed template files,
and into a git repository of their own, whose `git status` stays free of sagebook's files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from sagebook.project import GITIGNORE_END, GITIGNORE_START, GUIDE, TEMPLATE, init

from conftest import NOT_BUILT, REPO, sagebook

OFFLINE = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
SAGEBOOK_LINES = [".venv/", "__pycache__/", ".ipynb_checkpoints/", "experiments/", "out.ipynb"]


def _run(*args: str | Path, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                            timeout=300, **kwargs)
    if check:
        assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


def _git(folder: Path, *args: str) -> str:
    return _run("git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args,
                cwd=folder).stdout


def _wheel(source: Path, dist: Path, check: bool = True) -> subprocess.CompletedProcess:
    """sagebook's wheel from `source`, built as test_project.py builds it: pip, offline."""
    return _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                "-w", dist, source, env=OFFLINE, check=check)


def _build(source: Path, hook: str) -> subprocess.CompletedProcess:
    """One of setuptools' build hooks (`build_sdist`, `build_editable`) run in `source`, as
    `python -m build` and `pip install -e` run them (pip has no sdist command)."""
    return _run(sys.executable, "-c", "import sys; from setuptools import build_meta; "
                f"print(build_meta.{hook}('dist'))", cwd=source, check=False)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git checkout of sagebook: this tree's sources, committed."""
    source = tmp_path / "sagebook"
    shutil.copytree(REPO, source, symlinks=True, ignore=NOT_BUILT)
    _git(source, "init", "-q")
    _git(source, "add", "-A")
    _git(source, "commit", "-q", "-m", "sagebook")
    return source


@pytest.mark.slow
def test_a_wheel_carries_only_the_committed_template(checkout, tmp_path):
    config = checkout / "configs" / "sagemaker_config.yaml"
    config.write_text(config.read_text() + "# our-team-bucket\n")  # the walk-through's edit
    (checkout / "configs" / "sagemaker_config.yaml.orig").write_text("sed's backup\n")
    (checkout / "configs" / "scratch.yaml").write_text("instance_type: local\n")

    refused = _wheel(checkout, tmp_path / "dist", check=False)
    assert refused.returncode != 0
    for listed in ("configs/sagemaker_config.yaml (differs from HEAD)",
                   "configs/sagemaker_config.yaml.orig (not committed)",
                   "configs/scratch.yaml (not committed)"):
        assert listed in refused.stderr, refused.stderr
    assert "git stash --include-untracked" in refused.stderr
    assert not list((tmp_path / "dist").glob("*.whl"))
    sdist = _build(checkout, "build_sdist")  # `python -m build` makes the sdist first
    assert sdist.returncode != 0 and "configs/scratch.yaml (not committed)" in sdist.stderr
    assert not list((checkout / "dist").glob("*.tar.gz"))
    # an editable install ships nothing: `make setup` works in a tree being edited
    assert _build(checkout, "build_editable").returncode == 0

    _git(checkout, "commit", "-q", "-a", "-m", "our bucket")  # the edit, committed
    still = _wheel(checkout, tmp_path / "dist", check=False)
    assert still.returncode != 0 and "configs/scratch.yaml (not committed)" in still.stderr
    assert "sagemaker_config.yaml (differs" not in still.stderr
    _git(checkout, "stash", "push", "-q", "--include-untracked")
    _wheel(checkout, tmp_path / "dist")
    [wheel] = (tmp_path / "dist").glob("sagebook-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel,
         env=OFFLINE)
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
                        ).stdout.strip())
    (purelib / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    project = tmp_path / "project"
    made = _run(venv / "bin" / "sagebook", "init", project, env=env, cwd=tmp_path)
    assert sorted(p.name for p in (project / "configs").iterdir()) == [
        "sagemaker_config.local.yaml", "sagemaker_config.yaml", "sweep.yaml",
        "training_config.yaml"]
    assert (project / "configs" / "sagemaker_config.yaml").read_text().endswith(
        "# our-team-bucket\n")
    # the new project's README points to the guide, which the wheel carries
    guide = made.stdout.strip().splitlines()[-1].removeprefix("and sagebook's guide: ")
    assert guide.startswith(str(purelib)) and Path(guide).read_text() == (
        REPO / "README.md").read_text()
    assert "print(p.GUIDE)" in (project / "README.md").read_text()


def test_init_into_a_new_folder_writes_sagebooks_gitignore_block(tmp_path):
    result = sagebook("init", str(tmp_path / "new"))
    assert result.returncode == 0, result.stderr
    gitignore = (tmp_path / "new" / ".gitignore").read_text().splitlines()
    assert gitignore == [GITIGNORE_START, *SAGEBOOK_LINES, GITIGNORE_END]
    assert (TEMPLATE / "gitignore").read_text().splitlines() == gitignore
    assert result.stdout.splitlines()[-2:] == [
        "then README.md, for your own code and SageMaker,", f"and sagebook's guide: {GUIDE}"]
    assert GUIDE.read_text() == (REPO / "README.md").read_text()


def test_an_own_gitignore_gets_the_lines_it_lacks_once(tmp_path):
    (tmp_path / ".gitignore").write_text("*.log\n.venv/")  # no final newline
    made = init(tmp_path)
    assert made.kept == [".gitignore"] and made.ignored == SAGEBOOK_LINES[1:]
    assert (tmp_path / ".gitignore").read_text() == "\n".join(
        ["*.log", ".venv/", GITIGNORE_START, *SAGEBOOK_LINES[1:], GITIGNORE_END]) + "\n"
    before = (tmp_path / ".gitignore").read_text()

    # the project's files moved away and laid out again: the block is not added twice
    for name in made.written:
        (tmp_path / name).unlink()
    again = init(tmp_path)
    assert again.ignored == [] and (tmp_path / ".gitignore").read_text() == before


@pytest.mark.slow
def test_init_dot_in_a_repository_then_a_run_leaves_git_status_clean(tmp_path):
    repo = tmp_path / "ours"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "README.md").write_text("# our team\n")
    (repo / ".gitignore").write_text("*.log\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "ours")

    first = sagebook("init", ".", cwd=repo)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[:2] == ["kept the folder's own README.md",
                         "added to the folder's own .gitignore: " + ", ".join(SAGEBOOK_LINES)]
    assert "  cd ." not in lines  # already there
    # the last lines point to files init wrote, and to sagebook's guide, not to their README
    assert lines[-2:] == ["then sagemaker_container/train.py for your own code, "
                          "configs/sagemaker_config.yaml for SageMaker,",
                          f"and sagebook's guide: {GUIDE}"]
    assert "README.md" not in "\n".join(lines[2:-1])  # their README is theirs
    assert (repo / "README.md").read_text() == "# our team\n"
    gitignore = (repo / ".gitignore").read_text()
    assert gitignore.startswith("*.log\n" + GITIGNORE_START + "\n")

    second = sagebook("init", ".", cwd=repo)
    assert second.returncode == 1 and "already has" in second.stderr
    assert (repo / ".gitignore").read_text() == gitignore

    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "sagebook init")
    _run(sys.executable, "-m", "papermill", "notebooks/launch.ipynb", "out.ipynb",
         "-p", "config", "configs/sagemaker_config.local.yaml",
         "-p", "overrides", '["training.epochs=1"]', cwd=repo)
    assert list((repo / "experiments").iterdir()) and (repo / "out.ipynb").is_file()
    _run(sys.executable, "-m", "venv", "--without-pip", repo / ".venv")
    assert _git(repo, "status", "--porcelain", "--untracked-files=all") == ""
