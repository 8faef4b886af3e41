"""Where sagebook keeps files on this machine: the work folder of local runs, launches and
code, and the cache folder. A leaf (layer 0): every module that keeps a file of its own on this
machine asks here, so the rule for each folder is written once.

The work folder holds each local run's /opt/ml tree, its launcher's claim on its run (see
backends/liveness.py), the code packages `rerun` unpacks and the logs of detached launches.
What is found there is trusted more than what a store says, so it must be this user's alone:
by default `<tmp>/sagebook-<uid>`, created readable by its owner only, and refused when it is
anyone else's, a symlink, or open to others (another user of a shared machine could otherwise
plant a claim or a code folder in it before the first run).

The cache folder holds what is only ever derived again when lost (the service model's shapes,
decoded botocore models, the price list, file digests): the XDG cache folder, not made here.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import SagebookError


class UnsafeFolder(SagebookError):
    """The default work folder exists but is not this user's private folder."""


def work_base() -> Path:
    """Where local runs keep their folders: $SAGEBOOK_WORK_DIR as given, else this user's
    private `<tmp>/sagebook-<uid>`, made on first use."""
    given = os.environ.get("SAGEBOOK_WORK_DIR")
    if given:
        return Path(given)
    return private_folder(Path(tempfile.gettempdir()) / f"sagebook-{os.getuid()}")


def cache_folder() -> Path:
    """Where sagebook keeps its caches: `$XDG_CACHE_HOME/sagebook`, else `~/.cache/sagebook`.
    Not made here: each cache makes it when it first writes, and is only slower without it."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sagebook"


def private_folder(folder: Path) -> Path:
    """`folder`, created with mode 0700 when missing; UnsafeFolder when it is a symlink, not a
    folder, another user's, or writable or readable by others."""
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass  # checked below, whatever it is
    except OSError as exc:
        raise UnsafeFolder(f"{folder}: cannot be made a work folder ({exc.strerror})") from None
    try:
        info = folder.lstat()
    except OSError as exc:
        raise UnsafeFolder(f"{folder}: cannot be made a work folder ({exc.strerror})") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise UnsafeFolder(
            f"{folder} is not a folder of yours that only you can open: remove it, or set "
            "SAGEBOOK_WORK_DIR to a folder of your own")
    return folder
