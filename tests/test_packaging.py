"""The two ways to install sagebook agree on what it needs."""

from __future__ import annotations

import re
import tomllib

import yaml

from conftest import REPO


def _requirement(line: str) -> tuple[str, str]:
    name, spec = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*)$", line.strip()).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_conda_environment_matches_pyproject_and_training_requirements():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yaml").read_text())
    conda = dict(_requirement(d) for d in env["dependencies"] if isinstance(d, str))
    pip = [d for d in env["dependencies"] if isinstance(d, dict)][0]["pip"]
    wanted = dict(_requirement(d) for d in project["dependencies"])
    training = (REPO / "sagemaker_container/requirements.txt").read_text().splitlines()
    wanted.update(_requirement(d) for d in training if d.strip() and not d.startswith("#"))
    for extra in ("sdk", "notebook", "mlflow"):
        wanted.update(_requirement(d) for d in project["optional-dependencies"][extra])
    pip_requirements = dict(_requirement(d) for d in pip if not d.startswith("-e"))
    assert {**conda, **pip_requirements} == {**wanted, "python": ">=3.10", "pip": ""}
    assert "-e ." in pip
