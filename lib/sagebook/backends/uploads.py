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

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError
from ..inputs import DamagedFile, UnreadableFile, checked_name, safe_path
from ..paths import cache_folder
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
        _write_tar(folder, _Hashing(zipped, digest))
    return digest.hexdigest()


def code_digest(folder: Path) -> str:
    """The digest `plan_code` names `folder` by (32 hex digits), without writing the archive."""
    digest = hashlib.sha256()
    _write_tar(folder, _Hashing(None, digest))
    return digest.hexdigest()[:32]


def _write_tar(folder: Path, stream: _Hashing) -> None:
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


# --------------------------------------------------------------------------------------------
# Unpacking a recorded code package (rerun)
#
# The package comes from a shared store and its digest from a record: either may be anything.
# It is unpacked into a fresh folder, member by member, only files and folders, within
# bounds on what it unpacks to, and kept only when its tar stream has the recorded digest.

MAX_CODE_BYTES = 2 << 30  # what one package may unpack to (SAGEBOOK_MAX_CODE_BYTES)
MAX_CODE_FILES = 100_000  # files and folders in one package (SAGEBOOK_MAX_CODE_FILES)
MAX_TAR_HEADER = 1 << 20  # one long-name or pax header: tarfile reads it whole into memory
MAX_TAR_TRAILER = 1 << 20  # bytes after the end-of-archive blocks (a writer pads 10 KiB)
_TAR_KINDS = {tarfile.SYMTYPE: "symbolic link", tarfile.LNKTYPE: "hard link",
              tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device",
              tarfile.FIFOTYPE: "named pipe", tarfile.CONTTYPE: "contiguous file",
              tarfile.GNUTYPE_SPARSE: "sparse file"}


def code_limits() -> tuple[int, int]:
    """(bytes, files) a code package may unpack to: SAGEBOOK_MAX_CODE_BYTES and
    SAGEBOOK_MAX_CODE_FILES, by default 2 GiB and 100,000 (generous for training code)."""
    limits = []
    for name, default in (("SAGEBOOK_MAX_CODE_BYTES", MAX_CODE_BYTES),
                          ("SAGEBOOK_MAX_CODE_FILES", MAX_CODE_FILES)):
        text = os.environ.get(name, "").strip()
        if not text:
            limits.append(default)
        elif text.isdigit() and int(text) > 0:
            limits.append(int(text))
        else:
            raise ConfigError.one(name, None, f"expected a whole number above 0, got {text!r}")
    return limits[0], limits[1]


def unpack_code(uri: str, digest: object, workdir: Path, store_options: dict[str, Any],
                where: str) -> Path:
    """The code package at `uri` (a `…/code/<digest>/` prefix) unpacked into
    `workdir/<digest>/src`: the very code a recorded run ran. `uri` and `digest` come from the
    record at `where`; every refusal is a DamagedFile naming it and why, and leaves nothing
    behind. A copy unpacked before is used only when it still holds that digest's code."""
    digest = checked_name("digest", digest, where)
    if not isinstance(uri, str) or uri.rstrip("/").rsplit("/", 2)[-2:] != ["code", digest]:
        raise DamagedFile(where, f"the code package's uri {ascii(uri)[:80]} does not name "
                                 f"its digest ({digest})")
    base = safe_path(workdir, digest, where=where)
    folder, archive = base / "src", base / CODE_ARCHIVE
    limits = code_limits()
    if _holds_code(folder, digest, limits):
        return folder
    base.mkdir(parents=True, exist_ok=True)
    try:
        _remove(folder)
        if archive.is_file() and not archive.is_symlink():  # packed here before, or fetched
            try:
                return _unpack(archive, folder, digest, where, limits)
            except DamagedFile:
                _remove(archive)  # not that digest's package after all: fetched again
        partial = base / f".{CODE_ARCHIVE}.{os.getpid()}.{threading.get_ident()}"
        try:
            open_store(uri, **store_options).get_file(CODE_ARCHIVE, partial)
            unpacked = _unpack(partial, folder, digest, f"{uri.rstrip('/')}/{CODE_ARCHIVE}",
                               limits)
            os.replace(partial, archive)
        finally:
            _remove(partial)
        return unpacked
    except BaseException:
        with contextlib.suppress(OSError):
            base.rmdir()  # the folder this call made, when nothing else is in it
        raise


def _holds_code(folder: Path, digest: str, limits: tuple[int, int]) -> bool:
    """Whether `folder` is an unpacked copy of the package `digest`: within the bounds, only
    folders and regular files (no links a later write could follow), packing to that very
    digest."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    size = count = 0
    try:
        for dirpath, dirnames, filenames in os.walk(folder, onerror=_raise):
            for name in (*dirnames, *filenames):
                info = os.lstat(os.path.join(dirpath, name))
                size, count = size + info.st_size, count + 1
                if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)) or \
                        size > limits[0] or count > limits[1]:
                    return False
        return code_digest(folder) == digest
    except OSError:
        return False


def _raise(error: OSError) -> None:
    raise error


def _unpack(archive: Path, folder: Path, digest: str, where: str,
            limits: tuple[int, int]) -> Path:
    """`archive` unpacked into a fresh folder moved to `folder` once its tar stream proved to
    have `digest`; on any refusal, or an interruption, the fresh folder is removed."""
    partial = folder.with_name(f".src.{os.getpid()}.{threading.get_ident()}")
    hashed = hashlib.sha256()
    try:
        _remove(partial)  # a leftover of a killed process that had this pid
        partial.mkdir()
        with gzip.open(archive, "rb") as unzipped:
            stream = _Hashing(unzipped, hashed)
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=_BoundedInfo) as tar:
                tar.extractall(partial, filter=_CodeMembers(where, *limits))
            trailing = 0  # the end-of-archive padding is part of the digest
            while block := stream.read(1 << 16):
                trailing += len(block)
                if trailing > MAX_TAR_TRAILER:
                    raise DamagedFile(where, "data after the end of the tar archive")
        if hashed.hexdigest()[:32] != digest:
            raise DamagedFile(where, f"does not hold the code it is named by ({digest})")
        try:
            os.replace(partial, folder)
        except OSError:  # another rerun unpacked it meanwhile: theirs, when it checks out
            if not _holds_code(folder, digest, limits):
                raise
    except tarfile.FilterError as exc:
        raise DamagedFile(where, f"{ascii(exc.tarinfo.name)[:80]} would be unpacked outside "
                                 "its folder") from None
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DamagedFile(where, f"not a code package (a gzipped tar): {exc}") from None
    except OSError as exc:
        raise DamagedFile(where, f"cannot be unpacked: {exc.strerror or exc}") from None
    finally:
        _remove(partial)
    return folder


class _CodeMembers:
    """tarfile's extraction filter for a code package: only files and folders, each named by
    plain path components, counted and added up before anything is written, so a package that
    would unpack past its bounds stops at them instead of after filling the disk."""

    def __init__(self, where: str, max_bytes: int, max_files: int):
        self.where, self.max_bytes, self.max_files = where, max_bytes, max_files
        self.bytes = self.files = 0

    def __call__(self, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        shown = ascii(member.name)[:80]
        self.files += 1
        if self.files > self.max_files:
            raise DamagedFile(self.where, f"holds more than {self.max_files:,} files and "
                                          "folders (SAGEBOOK_MAX_CODE_FILES)")
        if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
            kind = _TAR_KINDS.get(member.type, "special entry")
            raise DamagedFile(self.where, f"holds {shown}, a {kind}: a code package holds only "
                                          "files and folders")
        try:
            safe_path(Path(dest), *member.name.split("/"), where=self.where)
        except DamagedFile:
            raise DamagedFile(self.where, f"holds {shown}, a name that is not a plain path "
                                          "inside the package") from None
        self.bytes += member.size
        if self.bytes > self.max_bytes:
            raise DamagedFile(self.where, f"unpacks to more than {_size(self.max_bytes)} "
                                          "(SAGEBOOK_MAX_CODE_BYTES)")
        return tarfile.data_filter(member, dest)  # modes: no set-id bits, owner-writable


class _BoundedInfo(tarfile.TarInfo):
    """A tar header whose long-name or pax extension is refused past MAX_TAR_HEADER before
    tarfile reads it whole into memory (the filter only sees members, after their headers)."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                         tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE) \
                and self.size > MAX_TAR_HEADER:
            raise tarfile.HeaderError(f"a header extension of {_size(self.size)}")
        return super()._proc_member(tarfile_)


def _remove(path: Path) -> None:
    """Remove a file, link or folder tree that may or may not be there."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass  # what could not be removed is named by the next step that trips over it


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
    """A stream that hashes what passes through it: written on its way to `target` (None: only
    hashed), or read from `target`."""

    def __init__(self, target: IO[bytes] | None, digest: Any):
        self.target, self.digest = target, digest

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return self.target is not None

    def write(self, data: Any) -> int:
        self.digest.update(data)
        if self.target is not None:
            self.target.write(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        assert self.target is not None
        data = self.target.read(size)
        self.digest.update(data)
        return data


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
        path = cache_folder() / "file-digests.json"
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
            from tqdm.notebook import tqdm as notebook_bar  # tqdm: only when a bar is shown

            self.bar = notebook_bar(**options)
        elif sys.stderr.isatty():
            from tqdm import tqdm  # tqdm: only when a bar is shown

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
