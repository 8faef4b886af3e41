"""The one interface every store offers."""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..errors import StoreError
from ..inputs import MAX_RECORD_BYTES, DamagedFile

Progress = Callable[[int], None]


class StoreExistsError(StoreError):
    """A create-only write found the key already there: someone else got there first."""


class Store(ABC):
    """Keys are `/`-separated paths below the store's root URI."""

    uri: str

    def url(self, key: str = "") -> str:
        """The full URI of `key`, as a user would paste it."""
        return self.uri.rstrip("/") + ("/" + key.lstrip("/") if key else "")

    def child(self, key: str) -> Store:
        """A store rooted at `key` below this one."""
        return type(self)(self.url(key), **self.options())

    def options(self) -> dict:
        """What `open_store` needs to open this store again at another URI (a child, a
        record's full URI, a notebook's child process)."""
        return {}

    def read_bytes(self, key: str, limit: int = MAX_RECORD_BYTES) -> bytes:
        """The object's bytes; FileNotFoundError if there is none, DamagedFile when it holds
        more than `limit` bytes, read no further: an object of a shared store may be of any
        size, and one planted there must not take a reader's memory."""
        data = bytearray()
        for chunk in self.read_chunks(key):
            data += chunk
            if len(data) > limit:
                raise DamagedFile(self.url(key), f"too large (more than {limit:,} bytes)")
        return bytes(data)

    @abstractmethod
    def write_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        """Write atomically: readers see the old or the new object, never a torn one.

        With create_only, raise StoreExistsError instead of replacing an existing object, so two
        writers racing for one key cannot both believe they own it.
        """

    @abstractmethod
    def put_file(self, key: str, path: Path, progress: Progress | None = None) -> None:
        """Copy a local file to `key`, streaming (never read whole into memory)."""

    def put_files(self, files: Iterable[tuple[str, Path, str | None]],
                  progress: Progress | None = None) -> None:
        """Copy many local files in: (key, path, the file's sha256 in hex when the caller has
        it, or None). Stores that can send several at once, or use the digest, do."""
        for key, path, _ in files:
            self.put_file(key, path, progress)

    @abstractmethod
    def get_file(self, key: str, path: Path) -> None:
        """Copy `key` to a local file."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys below the folder `prefix`, recursively, in lexical order."""

    @abstractmethod
    def local_path(self) -> Path | None:
        """The folder behind this store when it is local, so local runs can link, not copy."""

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Remove these objects; keys that are already gone are not an error, so that two
        processes tidying the same keys (index compaction) never fail each other."""

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode()

    @abstractmethod
    def read_chunks(self, key: str, size: int = 1 << 20) -> Iterator[bytes]:
        """The object's bytes in pieces of at most about `size`, streamed, so a reader that
        keeps only what it needs of a large object (a cut text, a downsampled curve) holds
        only that; FileNotFoundError if there is none."""

    def write_text(self, key: str, text: str, *, create_only: bool = False) -> None:
        self.write_bytes(key, text.encode(), create_only=create_only)

    def exists(self, key: str) -> bool:
        chunks = self.read_chunks(key, 1)
        try:
            next(chunks, None)
        except FileNotFoundError:
            return False
        finally:
            chunks.close()
        return True

    def download_tree(self, prefix: str, dest: Path) -> int:
        """Copy every object below `prefix` into `dest`; return the number of bytes."""
        total = 0
        prefix = prefix.strip("/")
        for key in self.list(prefix):
            rel = key[len(prefix):].lstrip("/") if prefix else key
            # a store rooted at one object (a channel naming a file) lists it as ""
            target = dest / (rel or Path(self.url(key)).name)
            target.parent.mkdir(parents=True, exist_ok=True)
            self.get_file(key, target)
            total += target.stat().st_size
        return total

    def copy_from(self, source: Store) -> int:
        """Copy every object of `source` to the same key here; return how many were copied.

        Through this machine; stores that can copy on their side (S3 to S3) do so instead.
        """
        count = 0
        local = source.local_path()
        with tempfile.TemporaryDirectory(prefix="sagebook-copy-") as folder:
            for key in list(source.list()):  # listed first: `source` may hold this prefix
                path = local / key if local else Path(folder, "object")
                if local is None:
                    source.get_file(key, path)
                self.put_file(key, path)
                count += 1
        return count

    def upload_tree(self, src: Path, prefix: str, progress: Progress | None = None) -> int:
        """Copy every file below `src` to `prefix`; return the number of bytes."""
        total = 0
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            rel = path.relative_to(src).as_posix()
            self.put_file(f"{prefix.strip('/')}/{rel}".lstrip("/"), path, progress)
            total += path.stat().st_size
        return total
