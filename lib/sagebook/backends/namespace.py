"""A private /opt/ml for a local training process, without root or Docker.

Much training code hard-codes `/opt/ml/...` (AWS's own bring-your-own-container samples do).
On Linux the `local` backend runs each host's process in its own user and mount namespace,
where the host's run folder is mounted at /opt/ml: an overlay over /opt (its upper layer on a
private tmpfs) makes room for the mount point, so the machine's /opt is never touched and
concurrent runs each see their own tree. The process sees itself as uid 0, as in a SageMaker
container, and files it writes belong to the user who launched. Cluster host names
(`algo-1`…) resolve to the loopback through a private /etc/hosts.

Where namespaces are unavailable (macOS, kernels or containers that forbid them), the run
goes ahead with its tree at a host folder named by `SAGEMAKER_BASE_DIR` and the `SM_*`
variables, after `hard_coded_paths` found no `/opt/ml` in the code that would break.
"""

from __future__ import annotations

import functools
import io
import re
import shutil
import subprocess
import sys
import tempfile
import tokenize
from dataclasses import dataclass
from pathlib import Path

CONTAINER_BASE = "/opt/ml"

# Run by `unshare` inside the new namespaces, before the training command is exec'd (so the
# command keeps the process id, its signals and its terminal). Python, not `sh -c`: dash (the
# usual /bin/sh) drops every variable whose name is not a shell identifier, and the toolkit's
# `SM_HP_DATA.TRAIN_FILE` for a nested hyperparameter is one. `-I -S`: the job's variables
# (a PYTHONPATH in its `environment`) are the training code's, not this script's. The command
# gets the environment this process was started with, read back from /proc, not os.environ,
# to which Python may have added LC_CTYPE (its C-locale coercion).
_SETUP = r"""
import os, sys
scratch, tree, hosts, command = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def mount(*args):  # on failure, mount's own message is the last line: `support` shows it
    code = os.spawnvp(os.P_WAIT, "mount", ["mount", *args])
    if code != 0:
        sys.exit(code if code > 0 else 1)
mount("-t", "tmpfs", "sagebook", scratch)
os.mkdir(scratch + "/upper")
os.mkdir(scratch + "/work")
mount("-t", "overlay", "overlay", "-o",
      f"lowerdir=/opt,upperdir={scratch}/upper,workdir={scratch}/work", "/opt")
os.makedirs("/opt/ml", exist_ok=True)
mount("--bind", tree, "/opt/ml")
mount("--bind", hosts, "/etc/hosts")
started = open("/proc/self/environ", "rb").read().split(b"\0")
environment = dict(entry.split(b"=", 1) for entry in started if b"=" in entry)
try:
    os.execvpe(command[0], command, environment)
except OSError as exc:  # the exit codes a shell gives: 127 not found, 126 not runnable
    print(f"{command[0]}: {exc.strerror}", file=sys.stderr)
    sys.exit(127 if isinstance(exc, FileNotFoundError) else 126)
"""


@dataclass(frozen=True)
class Support:
    """Whether this machine can give a process a private /opt/ml, and why (not)."""

    available: bool
    detail: str


def wrap(command: list[str], tree: Path, scratch: Path, hosts: list[str]) -> list[str]:
    """`command`, run with `tree` at /opt/ml and `hosts` resolving to the loopback.

    `scratch` is an empty folder that becomes the mount point of the namespace's tmpfs.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    hosts_file = scratch.parent / "etc_hosts"
    hosts_file.write_text(_hosts_text(hosts))
    return [_tool("unshare"), "--user", "--map-root-user", "--mount", sys.executable, "-I",
            "-S", "-c", _SETUP, str(scratch), str(tree), str(hosts_file), *command]


def _hosts_text(hosts: list[str]) -> str:
    try:
        current = Path("/etc/hosts").read_text()
    except OSError:
        current = "127.0.0.1 localhost\n"
    return current.rstrip("\n") + "\n# the job's hosts, all on this machine\n" + "".join(
        f"127.0.0.1 {host}\n" for host in hosts)


def _tool(name: str) -> str:
    return shutil.which(name) or name


@functools.lru_cache(maxsize=1)
def support() -> Support:
    """Try the whole recipe once (about 35 ms): a partial check would pass where, say, overlay
    mounts are refused, and the run would then fail far from the reason."""
    if not sys.platform.startswith("linux"):
        return Support(False, f"{sys.platform} has no user and mount namespaces")
    missing = [t for t in ("unshare", "mount") if shutil.which(t) is None]
    if missing:
        return Support(False, f"{' and '.join(missing)} not found (util-linux)")
    if not Path("/opt").is_dir():
        return Support(False, "/opt does not exist, so there is nothing to mount /opt/ml in")
    with tempfile.TemporaryDirectory(prefix="sagebook-ns-") as folder:
        tree = Path(folder) / "tree"
        tree.mkdir()
        (tree / "probe").write_text("")
        probe = wrap(["test", "-e", f"{CONTAINER_BASE}/probe"], tree, Path(folder) / "scratch",
                     ["algo-1"])
        try:
            result = subprocess.run(probe, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Support(False, f"namespaces could not be tried: {exc}")
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        return Support(False, f"user and mount namespaces are not allowed here ({why})")
    return Support(True, "each local host gets a private /opt/ml (user and mount namespaces)")


# --- the fallback: find what would break -----------------------------------------------------

_HARD_CODED = re.compile(r"/opt/ml\b")
# A line that also names the contract's variables reads them first and falls back to /opt/ml:
# that runs anywhere (`os.environ.get("SM_MODEL_DIR", "/opt/ml/model")`).
_RESOLVED = re.compile(r"SAGEMAKER_BASE_DIR|\bSM_[A-Z]")
_SKIPPED_FOLDERS = {".git", "__pycache__", ".venv", "venv", "node_modules", ".ipynb_checkpoints"}
_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class Reference:
    file: Path
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text.strip()[:100]}"


def hard_coded_paths(code_dir: Path) -> list[Reference]:
    """Lines of the code that use /opt/ml as a path without reading the contract's variables.

    Comments and docstrings are skipped: they run nowhere. Binary and large files are skipped.
    """
    found: list[Reference] = []
    for path in sorted(code_dir.rglob("*")):
        if not path.is_file() or _SKIPPED_FOLDERS & set(path.relative_to(code_dir).parts):
            continue
        try:
            if path.stat().st_size > _MAX_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if b"\0" in data[:8192] or b"/opt/ml" not in data:
            continue
        text = data.decode("utf-8", errors="replace")
        lines = _python_code_lines(text) if path.suffix == ".py" else _code_lines(text)
        found += [Reference(path, number, line) for number, line in lines
                  if _HARD_CODED.search(line) and not _RESOLVED.search(line)]
    return found


def _code_lines(text: str) -> list[tuple[int, str]]:
    return [(n, line) for n, line in enumerate(text.splitlines(), 1)
            if not line.lstrip().startswith(("#", "//"))]


def _python_code_lines(text: str) -> list[tuple[int, str]]:
    """Lines holding a string literal with /opt/ml that is not a docstring."""
    lines = text.splitlines()
    hits: set[int] = set()
    statement_start = True
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT,
                              tokenize.COMMENT, tokenize.ENCODING):
                statement_start = statement_start or token.type != tokenize.COMMENT
                continue
            is_docstring = statement_start and token.type == tokenize.STRING
            statement_start = False
            if token.type != tokenize.OP and "/opt/ml" in token.string and not is_docstring:
                hits.update(range(token.start[0], token.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        return _code_lines(text)  # not valid Python: judge it line by line
    return [(n, lines[n - 1]) for n in sorted(hits)]


def fallback_problem(code_dir: Path, why: str) -> str | None:
    """The message that stops a launch whose code needs /opt/ml where it cannot have it."""
    references = hard_coded_paths(code_dir)
    if not references:
        return None
    shown = "\n".join(f"    {ref}" for ref in references[:10])
    more = f"\n    … and {len(references) - 10} more" if len(references) > 10 else ""
    return (
        f"the training code uses /opt/ml, which a local run cannot give it here ({why}):\n"
        f"{shown}{more}\n"
        "  either run it in the image with instance_type: local-docker, or read the paths "
        "from the contract's variables, falling back to /opt/ml: SM_MODEL_DIR, "
        "SM_CHANNEL_<NAME>, SM_OUTPUT_DATA_DIR…, or os.environ.get(\"SAGEMAKER_BASE_DIR\", "
        "\"/opt/ml\") as a prefix"
    )


def host_environment_note() -> str:
    """One line for `doctor`: which mode local runs use on this machine."""
    found = support()
    if found.available:
        return f"{found.detail}: code that hard-codes /opt/ml runs unchanged"
    return (f"no private /opt/ml ({found.detail}): local runs put the tree in a host folder "
            "named by SAGEMAKER_BASE_DIR and the SM_* variables, and refuse code that "
            "hard-codes /opt/ml")

