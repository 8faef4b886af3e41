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
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, SagebookError
from .inputs import load_yaml_file

TEMPLATE = Path(__file__).resolve().parent / "project_template"
NOTEBOOKS = TEMPLATE / "notebooks"
# sagebook's documentation: its README, package data (a link to this repository's README)
GUIDE = Path(__file__).resolve().parent / "README.md"

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
# The template's gitignore is one block between these lines; a repository's own .gitignore gets
# the block too (with the lines it lacks), and one that has the first line is left alone.
GITIGNORE_START = "# sagebook: run records, papermill's output, the venv (from sagebook init)"
GITIGNORE_END = "# end of sagebook's lines"


class ProjectExists(SagebookError):
    """`init` writes only into a folder that does not already hold the project's files."""


@dataclass(frozen=True)
class NewProject:
    """What `init` did: the files it wrote, the folder's own files it kept, and the lines it
    added to the folder's own .gitignore (none when it wrote the .gitignore, or when the
    .gitignore already had sagebook's block)."""

    folder: Path
    written: list[str]
    kept: list[str]
    ignored: list[str]

    def summary(self, shown_as: str) -> str:
        """What `sagebook init` prints: what it kept and added, the first run, then the files
        to start from (the new README when it wrote one, not the folder's own) and the guide."""
        lines = []
        if "README.md" in self.kept:
            lines.append("kept the folder's own README.md")
        if self.ignored:
            lines.append(f"added to the folder's own .gitignore: {', '.join(self.ignored)}")
        elif ".gitignore" in self.kept:
            lines.append("kept the folder's own .gitignore: it already has sagebook's lines")
        lines.append(f"a new project in {shown_as}: {len(self.written)} files. First run, on "
                     "this machine:")
        if self.folder != Path.cwd().resolve():
            lines.append(f"  cd {shlex.quote(shown_as)}")
        lines += ["  pip install -r sagemaker_container/requirements.txt",
                  "  papermill notebooks/launch.ipynb out.ipynb "
                  "-p config configs/sagemaker_config.local.yaml"]
        if "README.md" in self.written:
            lines.append("then README.md, for your own code and SageMaker,")
        else:
            lines.append("then sagemaker_container/train.py for your own code, "
                         "configs/sagemaker_config.yaml for SageMaker,")
        lines.append(f"and sagebook's guide: {GUIDE}")
        return "\n".join(lines)


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


def init(folder: str | os.PathLike[str]) -> NewProject:
    """Lay out a new project in `folder` (created if needed).

    Nothing is written when any of the files already exists there, except a README.md, which
    stays as it is, and a .gitignore, which gets sagebook's lines appended (`sagebook init .`
    in an existing repository: its runs, papermill's output and the venv stay out of git).
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
    written = [name for _, name in files]
    kept = [name for name in sorted(_KEPT_WHEN_PRESENT) if name not in written]
    ignored = _extend_gitignore(target / ".gitignore") if ".gitignore" in kept else []
    return NewProject(target, written, kept, ignored)


def _extend_gitignore(path: Path) -> list[str]:
    """Append sagebook's block to a repository's own .gitignore, with the lines it lacks; once:
    a .gitignore with the block's first line is left alone. Returns the lines appended."""
    text = path.read_text()
    have = {line.strip() for line in text.splitlines()}
    if GITIGNORE_START in have:
        return []
    block = (TEMPLATE / "gitignore").read_text().splitlines()
    lines = [line for line in block if line and not line.startswith("#") and line not in have]
    if lines:
        separator = "" if not text or text.endswith("\n") else "\n"
        path.write_text(text + separator + "\n".join([GITIGNORE_START, *lines, GITIGNORE_END])
                        + "\n")
    return lines


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
