"""A training project: `sagebook init DIR` lays one out like this repository, and commands
run anywhere inside one find its root, its job configs and its record store.

The template is `project_template/`, package data of the wheel. In the source tree its entries
are links to this repository's own files (configs, training code, notebooks, Dockerfile, …), so
the reference project and what `init` lays out are one source and cannot drift apart; only the
new project's README and .gitignore are its own. The launch, dashboard and form notebooks are
found here too, so a `pip install`ed sagebook runs them from any folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .errors import ConfigError, SagebookError
from .inputs import load_yaml_file

TEMPLATE = Path(__file__).resolve().parent / "project_template"
NOTEBOOKS = TEMPLATE / "notebooks"

# Files that the reference project and a new one word differently: (old, new) replacements,
# each of which must match, so a change to the source shows up as an error, not a silent copy.
_REWRITES = {
    "environment.yaml": [(" (tests/test_packaging.py keeps them in step)", ""),
                         (", from this clone", " (from your package index, or a wheel's path)"),
                         ("- -e .", "- sagebook")],
}
_RENAMES = {"gitignore": ".gitignore"}
# An existing repository keeps its own: these are left as they are, not a conflict.
_KEPT_WHEN_PRESENT = {"README.md", ".gitignore"}
_SKIP = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}


class ProjectExists(SagebookError):
    """`init` writes only into a folder that does not already hold the project's files."""


def template_files() -> list[tuple[Path, str]]:
    """Every file of the template (source, path in the new project), in a stable order."""
    found = []
    for folder, dirs, files in os.walk(TEMPLATE, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP)
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            source = Path(folder) / name
            relative = source.relative_to(TEMPLATE).as_posix()
            found.append((source, _RENAMES.get(relative, relative)))
    return found


def init(folder: str | os.PathLike[str]) -> list[str]:
    """Lay out a new project in `folder` (created if needed); return the files written.

    Nothing is written when any of the files already exists there, except a README.md or
    .gitignore, which stay as they are (`sagebook init .` in an existing repository).
    """
    target = Path(folder).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise ProjectExists(f"{target} is a file, not a folder")
    files = [(source, name) for source, name in template_files()
             if not (name in _KEPT_WHEN_PRESENT and (target / name).exists())]
    taken = [name for _, name in files if (target / name).exists()]
    if taken:
        shown = ", ".join(taken[:5]) + (f" and {len(taken) - 5} more" if len(taken) > 5 else "")
        raise ProjectExists(f"{target} already has {shown}: sagebook init writes only new files "
                            "(pick another folder, or move these away)")
    for source, name in files:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        text_changes = _REWRITES.get(name)
        if text_changes:
            destination.write_text(_rewrite(name, source.read_text(), text_changes))
        else:
            shutil.copyfile(source, destination)
        shutil.copymode(source, destination)  # train and build_and_push.sh stay executable
    return [name for _, name in files]


def _rewrite(name: str, text: str, changes: list[tuple[str, str]]) -> str:
    for old, new in changes:
        if old not in text:
            raise SagebookError(f"sagebook's template {name} no longer contains {old!r}: "
                                "its rewrite for new projects needs updating")
        text = text.replace(old, new)
    return text


def job_configs(folder: Path) -> list[Path]:
    """The YAML files in `folder` that are job configs (they name an instance_type)."""
    found = []
    for candidate in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:  # read within bounds: any file in the folder may be anything
            data, _ = load_yaml_file(candidate)
        except ConfigError:
            continue
        if isinstance(data, dict) and "instance_type" in data:
            found.append(candidate.resolve())
    return found


def root(start: Path | None = None) -> Path | None:
    """The project around `start` (default: the current folder): the nearest folder, going up,
    with a `configs/` folder of job configs or an `experiments/` record folder."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "experiments").is_dir() or job_configs(folder / "configs"):
            return folder
    return None


def record_stores(folder: Path) -> dict[str, Path]:
    """The record stores that the project's job configs name (`experiments_uri`, resolved as a
    launch resolves it), each with the first config that names it."""
    stores: dict[str, Path] = {}
    for path in job_configs(folder / "configs"):
        try:
            uri = load_yaml_file(path)[0].get("experiments_uri")
        except (ConfigError, AttributeError):
            continue
        if uri:
            uri = str(uri) if "://" in str(uri) else str(
                (path.parent / Path(str(uri)).expanduser()).resolve())
            stores.setdefault(uri, path)
    return stores
