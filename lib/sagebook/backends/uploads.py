"""Local inputs of a cloud job, uploaded once: the code channel and local data channels.

Every upload is content-addressed: its S3 prefix is named by a digest of what it holds, so an
unchanged folder maps to the prefix already in the bucket and uploads 0 bytes, and a changed one
can never overwrite the inputs of a job that is still reading them.

The digest has to go into the CreateTrainingJob request before the request can be validated,
and nothing may be uploaded before it is: so a launch first *plans* (hashes, and packs the code
folder), then builds and validates the request, and only then *uploads* what is missing.

Layout below the uploads root (`uploads_uri`, by default `<record store>/_uploads`):

    code/<digest>/sourcedir.tar.gz     the code folder, packed reproducibly
    data/<digest>/<files…>             a local data folder (or one file) as it is
    code/<digest>.json, data/<digest>.json   written last: the upload is complete

A channel points at `…/<digest>/`, with the slash, so the marker beside it is not part of it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..stores import open_store

CODE_ARCHIVE = "sourcedir.tar.gz"
DIGEST_CACHE_LIMIT = 200_000  # files whose digest is remembered between launches
# Never part of the data: version control and what Jupyter and macOS leave behind.
NOT_DATA = frozenset({".git", ".hg", ".svn", ".ipynb_checkpoints", ".DS_Store"})
# Never part of the training code: that, plus caches, environments and editor settings.
NOT_CODE = NOT_DATA | {"__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache",
                       ".ruff_cache", ".tox", ".idea", ".vscode"}
NOT_CODE_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class Upload:
    """One local input of a job, hashed and ready to upload under its digest."""

    channel: str
    kind: str  # "code" or "data"
    source: Path  # what the user named: the code folder, a data folder or a data file
    digest: str
    # (key below the digest prefix, local file, bytes, its sha256 in hex when it has one)
    files: tuple[tuple[str, Path, int, str | None], ...]
    root: str  # the uploads root URI

    @property
    def prefix(self) -> str:
        return f"{self.kind}/{self.digest}"

    @property
    def uri(self) -> str:
        return f"{self.root.rstrip('/')}/{self.prefix}/"

    @property
    def marker(self) -> str:
        return f"{self.prefix}.json"

    @property
    def size(self) -> int:
        return sum(file[2] for file in self.files)

    def describe(self) -> dict[str, Any]:
        """What the record keeps of it: enough to find the source again and check it."""
        return {"channel": self.channel, "kind": self.kind, "source": str(self.source),
                "digest": self.digest, "uri": self.uri, "bytes": self.size,
                "files": len(self.files)}


UPLOADS_FOLDER = "_uploads"  # beside the experiments; no experiment can have this name


def root_for(job: Any, remote: bool) -> str | None:
    """Where content-addressed inputs go: uploads_uri, else beside the records, else beside the
    configs. A remote job reads them from S3 only: None when the config names no S3 location
    for it; a local run keeps its code package beside its records, wherever they are."""
    if job.uploads_uri:
        return job.uploads_uri if job.uploads_uri.startswith("s3://") or not remote else None
    for base in (job.experiments_uri, job.config_uri):
        if base and (base.startswith("s3://") or not remote):
            return f"{base.rstrip('/')}/{UPLOADS_FOLDER}"
    return None


# --------------------------------------------------------------------------------------------
# Planning: digests, without touching the network


def plan_data(channel: str, source: Path, root: str) -> Upload:
    """A local data folder (or a single file) as a channel: its files and their digest."""
    files = [(source.name, source)] if source.is_file() else list(_walk(source, NOT_DATA))
    # sha256 releases the GIL on large blocks: files are hashed on every core at once
    with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
        file_digests = list(pool.map(file_digest, [path for _, path in files]))
    digest = hashlib.sha256()
    entries = []
    for (rel, path), file_sha in zip(files, file_digests, strict=True):
        size = path.stat().st_size
        digest.update(f"{rel}\0{size}\0{file_sha}\n".encode())
        entries.append((rel, path, size, file_sha))
    return Upload(channel, "data", source, digest.hexdigest()[:32], tuple(entries), root)


def plan_code(source_dir: Path, root: str, workdir: Path) -> Upload:
    """The code folder packed into `workdir/<digest>/sourcedir.tar.gz`, named by the digest of
    its uncompressed tar stream (so another zlib version producing other bytes shares the key).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    partial = workdir / f".{CODE_ARCHIVE}.{os.getpid()}.{threading.get_ident()}"
    digest = pack_code(source_dir, partial)[:32]
    archive = workdir / digest / CODE_ARCHIVE
    archive.parent.mkdir(exist_ok=True)
    os.replace(partial, archive)
    files = ((CODE_ARCHIVE, archive, archive.stat().st_size, None),)
    return Upload("code", "code", source_dir, digest, files, root)


def pack_code(folder: Path, archive: Path) -> str:
    """Write a reproducible tar.gz of `folder`; return the sha256 of its tar stream.

    Reproducible: entries sorted, times, owners and gzip header zeroed, modes reduced to
    644/755, so the same code gives the same digest on any machine and at any time.
    """
    digest = hashlib.sha256()
    with archive.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                  mtime=0) as zipped:
        stream = _Hashing(zipped, digest)
        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for rel, path in _walk(folder, NOT_CODE, NOT_CODE_SUFFIXES):
                info = tarfile.TarInfo(rel)
                mode = path.stat().st_mode
                info.size = path.stat().st_size
                info.mode = 0o755 if mode & stat.S_IXUSR else 0o644
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
    return digest.hexdigest()


def unpack_code(uri: str, digest: str, workdir: Path, store_options: dict[str, Any]) -> Path:
    """The code package at `uri` (a `…/code/<digest>/` prefix), fetched, checked against its
    digest and unpacked into `workdir/<digest>/src`, once: the very code a recorded run ran."""
    folder = workdir / digest / "src"
    if folder.is_dir():
        return folder
    archive = workdir / digest / CODE_ARCHIVE
    archive.parent.mkdir(parents=True, exist_ok=True)
    if not archive.is_file():
        partial = archive.with_name(f".{CODE_ARCHIVE}.{os.getpid()}.{threading.get_ident()}")
        open_store(uri, **store_options).get_file(CODE_ARCHIVE, partial)
        os.replace(partial, archive)
    stream = hashlib.sha256()
    with gzip.open(archive, "rb") as tar_stream:
        for block in iter(lambda: tar_stream.read(1 << 20), b""):
            stream.update(block)
    if stream.hexdigest()[:32] != digest:
        archive.unlink()
        raise ValueError(f"{uri}{CODE_ARCHIVE} does not hold the code it is named by")
    partial_dir = folder.with_name(f".src.{os.getpid()}.{threading.get_ident()}")
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(partial_dir, filter="data")  # no absolute paths, links out or devices
    try:
        os.replace(partial_dir, folder)
    except OSError:  # another launch unpacked it first: theirs is the same code
        import shutil

        shutil.rmtree(partial_dir, ignore_errors=True)
    return folder


def _walk(folder: Path, skip: frozenset[str], skip_suffixes: tuple[str, ...] = ()
          ) -> Iterator[tuple[str, Path]]:
    """Files below `folder` in a stable order, following links, without the names in `skip`."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for name in filenames:
            if name in skip or (skip_suffixes and name.endswith(skip_suffixes)):
                continue
            path = Path(dirpath, name)
            if path.is_file():
                found.append((path.relative_to(folder).as_posix(), path))
    yield from sorted(found)


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes what passes through it on its way to `target`."""

    def __init__(self, target: IO[bytes], digest: Any):
        self.target, self.digest = target, digest

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.digest.update(data)
        self.target.write(data)
        return len(data)


def file_digest(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so an unchanged data folder of
    many gigabytes is not read again on every launch."""
    info = path.stat()
    key = f"{path.resolve()}\0{info.st_size}\0{info.st_mtime_ns}"
    cache = _digest_cache()
    cache.used.add(key)
    if key in cache.entries:
        return cache.entries[key]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    cache.entries[key] = digest.hexdigest()
    cache.dirty = True
    return cache.entries[key]


@dataclass
class _DigestCache:
    path: Path
    entries: dict[str, str]
    dirty: bool = False
    used: set[str] = field(default_factory=set)

    def save(self) -> None:
        """Best effort: a lost cache only costs a re-read, so failures are ignored. A cache
        grown past DIGEST_CACHE_LIMIT keeps only what this launch used."""
        if not self.dirty:
            return
        if len(self.entries) > DIGEST_CACHE_LIMIT:
            self.entries = {k: v for k, v in self.entries.items() if k in self.used}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(self.entries))
            os.replace(tmp, self.path)
            self.dirty = False
        except OSError:
            pass


_cache: _DigestCache | None = None


def _digest_cache() -> _DigestCache:
    global _cache
    if _cache is None:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        path = base / "sagebook" / "file-digests.json"
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError):
            entries = {}
        _cache = _DigestCache(path, entries if isinstance(entries, dict) else {})
    return _cache


def save_digest_cache() -> None:
    if _cache is not None:
        _cache.save()


# --------------------------------------------------------------------------------------------
# Uploading what is missing


def upload(uploads: list[Upload], store_options: dict[str, Any],
           echo: Callable[[str], None]) -> int:
    """Upload every planned input the bucket does not hold yet; return the bytes sent.

    Complete uploads are known by their marker; an interrupted one resumes file by file (S3
    writes an object whole or not at all, so a listed key is a complete file).
    """
    sent = 0
    stores: dict[str, Any] = {}
    done: set[tuple[str, str]] = set()
    for item in uploads:
        if (item.root, item.prefix) not in done:
            done.add((item.root, item.prefix))
            if item.root not in stores:
                stores[item.root] = open_store(item.root, **store_options)
            sent += _upload_one(item, stores[item.root], echo)
    return sent


def _upload_one(item: Upload, store: Any, echo: Callable[[str], None]) -> int:
    label = f"{item.channel} ({item.source.name})"
    if store.exists(item.marker):
        echo(f"[sagebook] {label}: unchanged, already at {item.uri} (0 bytes uploaded)")
        return 0
    present = set(store.list(item.prefix))
    missing = [file for file in item.files if f"{item.prefix}/{file[0]}" not in present]
    total = sum(size for _, _, size, _ in missing)
    with _progress(total, f"[sagebook] uploading {label}") as advance:
        store.put_files(((f"{item.prefix}/{rel}", path, sha256)
                         for rel, path, _, sha256 in missing), advance)
    store.write_text(item.marker, json.dumps({
        **item.describe(), "files": [{"key": rel, "bytes": size} for rel, _, size, _ in item.files],
    }, indent=1) + "\n")
    echo(f"[sagebook] {label}: {_size(total)} uploaded to {item.uri}")
    return total


def upload_folder(source: Path, destination: str, store_options: dict[str, Any],
                  echo: Callable[[str], None]) -> int:
    """`sagebook upload`: a local folder (or one file) copied as it is to `destination`, e.g. a
    data set for a job's channels; returns the bytes sent. Hidden files are left out."""
    from ..inputs import UnreadableFile

    if not source.exists():
        raise UnreadableFile(str(source), "no such file or folder")
    if source.is_file():
        files = [(source.name, source)]
    else:
        files = [(path.relative_to(source).as_posix(), path) for path in sorted(source.rglob("*"))
                 if path.is_file() and not any(part.startswith(".") for part in
                                               path.relative_to(source).parts)]
    store = open_store(destination, **store_options)
    total = sum(path.stat().st_size for _, path in files)
    with _progress(total, f"uploading {source}") as progress:
        store.put_files(((key, path, None) for key, path in files), progress)
    echo(f"{len(files)} file(s), {_size(total)} uploaded to {store.uri}/")
    return total


class _progress:
    """A byte progress bar where a person watches: a terminal, or a notebook open in Jupyter.

    Batch runs (papermill, CI, pipes) get only the summary line: a bar redrawn into a log or
    a stored notebook is noise.
    """

    def __init__(self, total: int, label: str):
        self.total, self.label = total, label
        self.bar: Any = None
        self.lock = threading.Lock()

    def __enter__(self) -> Callable[[int], None]:
        options = {"total": self.total, "desc": self.label, "unit": "B", "unit_scale": True,
                   "unit_divisor": 1024, "leave": False}
        if not self.total:
            return self.advance  # nothing to send: no bar
        if "ipykernel" in sys.modules and os.environ.get("JPY_SESSION_NAME"):
            from tqdm.notebook import tqdm as notebook_bar

            self.bar = notebook_bar(**options)
        elif sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(file=sys.stderr, **options)
        return self.advance

    def advance(self, amount: int) -> None:
        if self.bar is not None:
            with self.lock:
                self.bar.update(amount)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    value, unit = float(count) / 1024, "KB"
    for larger in ("MB", "GB", "TB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.1f} {unit}"
