"""A folder on this machine (or a shared mount) as a store: the embedded default."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import StoreError
from ..inputs import DamagedFile, UnreadableFile, path_reason
from .base import Progress, Store, StoreExistsError

_UMASK = os.umask(0o022)
os.umask(_UMASK)


class LocalStore(Store):
    def __init__(self, uri: str, **_options: object):
        root = uri.removeprefix("file://")
        try:
            self.root = Path(root).expanduser().resolve()
            if self.root.exists() and not self.root.is_dir():
                raise UnreadableFile(root, "not a folder, so it cannot be a record store")
        except (OSError, RuntimeError) as exc:
            raise UnreadableFile(root, path_reason(exc)) from None
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        try:
            path = (self.root / key.lstrip("/")).resolve() if key else self.root
        except (OSError, RuntimeError) as exc:
            raise DamagedFile(self.url(key), path_reason(exc)) from None
        if path != self.root and self.root not in path.parents:
            raise StoreError(f"{key!r} points outside the store {self.root}")
        return path

    def read_chunks(self, key: str, size: int = 1 << 20) -> Iterator[bytes]:
        path = self._path(key)
        try:  # without blocking: a FIFO planted in a record must not hang its reader
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFoundError(self.url(key)) from None
        except OSError as exc:
            raise StoreError(f"cannot read {self.url(key)}: {exc.strerror or exc}") from None
        with os.fdopen(fd, "rb", buffering=0) as handle:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):  # a folder is no object
                raise FileNotFoundError(self.url(key))
            if not stat.S_ISREG(mode):
                raise StoreError(f"cannot read {self.url(key)}: not a regular file")
            try:
                while chunk := handle.read(size):
                    yield chunk
            except OSError as exc:
                raise StoreError(f"cannot read {self.url(key)}: {exc.strerror or exc}") from None

    def write_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        path = self._path(key)
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide records from the team
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if create_only:
                try:
                    os.link(tmp, path)  # atomic and fails if the name exists
                except FileExistsError:
                    raise StoreExistsError(f"{self.url(key)} already exists") from None
            else:
                os.replace(tmp, path)
                tmp = None
        except OSError as exc:
            raise _write_error(path, exc) from None
        finally:
            _remove(tmp)  # a temp file left on a full disk keeps it full

    def put_file(self, key: str, path: Path, progress: Progress | None = None) -> None:
        dest = self._path(key)
        # a name of its own: parallel launches (a sweep's trials) may put the same key at once
        tmp: Path | None = dest.with_name(
            f".{dest.name}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
            tmp = None
        except OSError as exc:
            if exc.filename == str(path) and exc.filename2 is None:  # (copy errors name both)
                raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
            raise _write_error(dest, exc) from None
        finally:
            _remove(tmp)
        if progress:
            progress(dest.stat().st_size)

    def get_file(self, key: str, path: Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise FileNotFoundError(self.url(key))
        shutil.copyfile(source, path)

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self._path(prefix)
        if base.is_file():
            yield prefix.strip("/")
            return
        if not base.is_dir():
            return
        keys = [
            Path(dirpath, name).relative_to(self.root).as_posix()
            for dirpath, _, filenames in os.walk(base)
            for name in filenames
            if not name.startswith(".")
        ]
        yield from sorted(keys)

    def local_path(self) -> Path | None:
        return self.root

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self._path(key).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StoreError(f"cannot delete {self.url(key)}: {exc.strerror or exc}") from None


def _write_error(path: Path, exc: OSError) -> StoreError:
    return StoreError(f"cannot write {path}: {exc.strerror or exc}")


def _remove(path: str | Path | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass
