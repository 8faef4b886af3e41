"""`sagebook fsck`: every damaged file of a record store, with what to do about it.

A shared store meets half-written files (a full disk, a killed copy), garbage, folders removed
or made unreadable by hand. Readers skip what they cannot read and say so; this reads
everything once and lists each damaged file with its remedy, so a team knows what it lost.
`--repair` removes the damaged index files and rebuilds the index from the records (no record
is ever changed or removed by it).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from . import index
from .errors import StoreError
from .inputs import DamagedFile
from .printing import terminal_lines
from .record import read_manifest
from .stores import Store
from .sweeps.record import DamagedSweep, all_sweeps

REINDEX = "`sagebook fsck --repair` (or `sagebook list --reindex`) rebuilds the index"


@dataclass
class Finding:
    """One damaged file or folder: where, what is wrong, what to do."""

    where: str
    problem: str
    remedy: str
    index_file: bool = False  # a file of the run index, which `--repair` may remove

    def describe(self) -> str:
        """Two lines for the terminal: where and what, then what to do. The key and the
        reason quote the store (any bytes a writer chose), so each line is terminal text."""
        return terminal_lines([f"{self.where}: {self.problem}", f"  what to do: {self.remedy}"])


PROGRESS_EVERY = 1000  # records between two calls of a check's `progress`


def check(store: Store, experiment: str | None = None,
          progress: Callable[[int, int], None] = lambda done, total: None
          ) -> tuple[list[Finding], int]:
    """The store's damaged files, and how many runs were looked at. Of the index and the
    listing it keeps each run's rank, status and whether it has a manifest, never a record's
    contents: memory is a few hundred bytes a run however large the records. Every
    PROGRESS_EVERY records, `progress(done, total)`."""
    findings: list[Finding] = []
    damaged: list[DamagedFile] = []
    indexed = {(e["experiment"], e["run_id"]): (index.rank(e), e.get("status"))
               for e in index.entries(store, experiment, compact_after=False, damaged=damaged)}
    for damage in damaged + index.check_columns(store, experiment):
        findings.append(Finding(damage.where, damage.reason,
                                f"remove this index file; {REINDEX} from the records",
                                index_file=True))
    findings += _unreadable_folders(store, experiment)
    folders: set[tuple[str, str]] = set()
    with_manifest: set[tuple[str, str]] = set()
    for key in store.list(experiment or ""):
        parts = key.split("/")
        if len(parts) >= 3 and not key.startswith(("_", ".")):
            folders.add((parts[0], parts[1]))
            if len(parts) == 3 and parts[2] == "manifest.json":
                with_manifest.add((parts[0], parts[1]))
    for done, (exp, run_id) in enumerate(sorted(folders), 1):
        if done % PROGRESS_EVERY == 0:
            progress(done, len(folders))
        finding = _check_record(store, exp, run_id, (exp, run_id) in with_manifest,
                                indexed.get((exp, run_id)))
        if finding is not None:
            findings.append(finding)
    progress(len(folders), len(folders))
    for (exp, run_id) in sorted(set(indexed) - folders):
        findings.append(Finding(store.url(f"{exp}/{run_id}"), "listed in the run index, but "
                                "its record folder is gone", f"{REINDEX} without it"))
    findings += _damaged_sweeps(store, experiment)
    return findings, len(set(indexed) | folders)


def _check_record(store: Store, exp: str, run_id: str, has_manifest: bool,
                  listed: tuple[tuple[int, str], str | None] | None) -> Finding | None:
    """What is wrong with one record folder (None: nothing), given what the index says of it
    (its rank and status)."""
    where = store.url(f"{exp}/{run_id}")
    if not has_manifest:
        return Finding(where, "a record folder without manifest.json",
                       "restore manifest.json from a backup, or remove the folder")
    try:
        manifest = read_manifest(store, exp, run_id)
    except DamagedFile as exc:
        shown = f" (the index still lists it as {listed[1]})" if listed else ""
        return Finding(exc.where, exc.reason + shown,
                       f"restore it from a backup, or remove the run's folder; then {REINDEX}")
    except (StoreError, FileNotFoundError) as exc:
        return Finding(f"{where}/manifest.json", f"cannot be read: {exc}",
                       "give the team read access to the record")
    if listed is None or listed[0] < (manifest.get("revision", 0), ""):
        return Finding(f"{where}/manifest.json", "not in the run index (or newer than it): "
                       "`list` does not show it as it is", REINDEX)
    return None


def _damaged_sweeps(store: Store, experiment: str | None) -> list[Finding]:
    """Sweep records that cannot be read: `report`, `show` and `list --sweep` pass them over."""
    damaged: list[DamagedFile] = []
    all_sweeps(store, experiment, damaged)
    return [Finding(d.where, d.reason,
                    f"`sagebook sweep --resume {d.sweep_id}` rebuilds a local sweep's record "
                    "from its trials' runs (and runs the trials left to run); else restore it "
                    "from a backup, or remove the sweep's folder"
                    if isinstance(d, DamagedSweep) else
                    "rename or remove this folder: its name is not a sweep id or experiment")
            for d in damaged]


def _unreadable_folders(store: Store, experiment: str | None) -> list[Finding]:
    """Folders a local store's listing had to pass over (no permission, I/O errors)."""
    root = store.local_path()
    if root is None:
        return []
    errors: list[OSError] = []
    for _ in os.walk(root / (experiment or ""), onerror=errors.append):
        pass
    return [Finding(str(e.filename), f"cannot be read: {e.strerror}",
                    "give the team read access to it (e.g. chmod -R a+rX on the folder)")
            for e in errors]


def repair(store: Store, findings: list[Finding], experiment: str | None = None,
           progress: Callable[[int, int], None] = lambda done, total: None) -> index.Rebuilt:
    """Remove the damaged index files, then rebuild the index from the records (`progress` as
    `index.rebuild` calls it)."""
    prefix = store.url("")
    store.delete(f.where[len(prefix):].lstrip("/") for f in findings
                 if f.index_file and f.where.startswith(prefix))
    return index.rebuild(store, experiment, progress)
