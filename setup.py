"""sagebook's build hook: a wheel or sdist carries the project template only as committed.

The template (lib/sagebook/project_template/) links to this repository's own configs, training
code, notebooks, data and Dockerfile, and setuptools packs what the links reach as it is on
disk. So that an edited config (a bucket name) or a scratch file (`configs/*.orig`) never goes
into every project that `sagebook init` makes from the wheel, a build from a git checkout of
sagebook refuses when a template file differs from HEAD, and lists them. A tree that is not
such a checkout (an unpacked sdist, which was checked when it was made, or a copy) builds as
it is. Everything else about the build is in pyproject.toml.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.errors import SetupError

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "lib" / "sagebook" / "project_template"


def _git(*args: str) -> list[str]:
    result = subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, check=True)
    return [name for name in result.stdout.split("\0") if name]


def _in_repository(path: str | Path) -> str:
    """`path` (a template file, reached through the template's links) as git names it."""
    return Path(os.path.relpath(Path(path).resolve(), HERE)).as_posix()


def check_template(shipped: list[str]) -> None:
    """Refuse to build when a template file that `shipped` names, or one that HEAD has, is not
    as committed: edited, staged, untracked or deleted."""
    try:
        _git("ls-files", "--error-unmatch", "pyproject.toml")
        _git("rev-parse", "--verify", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        return  # not a git checkout of sagebook with a commit: nothing to compare with
    files = {_in_repository(HERE / path) for path in shipped
             if Path(os.path.abspath(HERE / path)).is_relative_to(TEMPLATE)}
    folders = sorted({_in_repository(entry) for entry in TEMPLATE.iterdir()})
    tracked = set(_git("ls-files", "-z", "--", *folders))
    changed = set(_git("diff", "HEAD", "--name-only", "-z", "--relative", "--", *folders))
    deleted = set(_git("diff", "HEAD", "--name-only", "-z", "--relative", "--diff-filter=D",
                       "--", *folders))
    drift = sorted([f"{name} (not committed)" for name in files - tracked] +
                   [f"{name} (differs from HEAD)" for name in files & tracked & changed] +
                   [f"{name} (deleted)" for name in deleted])
    if drift:
        raise SetupError(
            "sagebook's wheel and sdist carry the project template as committed, and these "
            "template files are not: " + ", ".join(drift) + ". Commit them, or stash them "
            "(git stash --include-untracked) or move them away, then build again.")


class CheckedBuildPy(build_py):
    """build_py that checks the template files it is about to copy (not for editable
    installs, which ship nothing)."""

    def run(self) -> None:
        if not self.editable_mode:
            check_template([os.path.join(src, name) for _, src, _, names in self.data_files
                            for name in names])
        super().run()


class CheckedSdist(sdist):
    """sdist that checks the template files among those it packs."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        check_template(files)
        super().make_release_tree(base_dir, files)


setup(cmdclass={"build_py": CheckedBuildPy, "sdist": CheckedSdist})
