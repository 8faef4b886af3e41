"""`sagebook fsck`: every damaged file of a record store, with what to do about it.

A shared store meets half-written files (a full disk, a killed copy), garbage, folders removed
or made unreadable by hand. Readers skip what they cannot read and say so; this reads
everything once and lists each damaged file with its remedy, so a team knows what it lost.
`--repair` removes the damaged index files and rebuilds the index from the records (no record
is ever changed or removed by it).
"""

from __future__ import annotations

import os
from collections import defaultdict
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


def check(store: Store, experiment: str | None = None) -> tuple[list[Finding], int]:
    """The store's damaged files, and how many runs were looked at."""
    findings: list[Finding] = []
    damaged: list[DamagedFile] = []
    indexed = {(e["experiment"], e["run_id"]): e
               for e in index.entries(store, experiment, compact_after=False, damaged=damaged)}
    for damage in damaged:
        findings.append(Finding(damage.where, damage.reason,
                                f"remove this index file; {REINDEX} from the records",
                                index_file=True))
    findings += _unreadable_folders(store, experiment)
    folders: dict[tuple[str, str], set[str]] = defaultdict(set)
    for key in store.list(experiment or ""):
        parts = key.split("/")
        if len(parts) >= 3 and not key.startswith(("_", ".")):
            folders[(parts[0], parts[1])].add("/".join(parts[2:]))
    for (exp, run_id), names in sorted(folders.items()):
        where = store.url(f"{exp}/{run_id}")
        if "manifest.json" not in names:
            findings.append(Finding(where, "a record folder without manifest.json",
                                    "restore manifest.json from a backup, or remove the folder"))
            continue
        try:
            manifest = read_manifest(store, exp, run_id)
        except DamagedFile as exc:
            listed = indexed.get((exp, run_id))
            shown = f" (the index still lists it as {listed.get('status')})" if listed else ""
            findings.append(Finding(exc.where, exc.reason + shown,
                                    "restore it from a backup, or remove the run's folder; "
                                    f"then {REINDEX}"))
            continue
        except (StoreError, FileNotFoundError) as exc:
            findings.append(Finding(f"{where}/manifest.json", f"cannot be read: {exc}",
                                    "give the team read access to the record"))
            continue
        entry = indexed.get((exp, run_id))
        if entry is None or index.rank(entry) < (manifest.get("revision", 0), ""):
            findings.append(Finding(f"{where}/manifest.json", "not in the run index (or newer "
                                    "than it): `list` does not show it as it is", REINDEX))
    for (exp, run_id) in sorted(set(indexed) - set(folders)):
        findings.append(Finding(store.url(f"{exp}/{run_id}"), "listed in the run index, but "
                                "its record folder is gone", f"{REINDEX} without it"))
    findings += _damaged_sweeps(store, experiment)
    return findings, len(set(indexed) | set(folders))


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


def repair(store: Store, findings: list[Finding], experiment: str | None = None
           ) -> index.Rebuilt:
    """Remove the damaged index files, then rebuild the index from the records."""
    prefix = store.url("")
    store.delete(f.where[len(prefix):].lstrip("/") for f in findings
                 if f.index_file and f.where.startswith(prefix))
    return index.rebuild(store, experiment)
