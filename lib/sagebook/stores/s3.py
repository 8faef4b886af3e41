"""An S3 prefix as a store, through the client `aws.py` makes (boto3's default credential
chain, `AWS_ENDPOINT_URL*` endpoints, botocore's standard retries), so the same code talks to
AWS or to a local S3-compatible server.

boto3, botocore and s3transfer are imported in the methods that use them: a store is opened
wherever a URI is named, often never to be read, and `sagebook list` of a local store must not
pay for them.
"""

from __future__ import annotations

import base64
import mimetypes
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .. import aws
from ..errors import StoreError
from .base import Progress, Store, StoreExistsError

UPLOAD_CONCURRENCY = 10  # boto3's default for a transfer


class S3Store(Store):
    def __init__(self, uri: str, profile: str | None = None, region: str | None = None,
                 kms_key: str | None = None, expected_owner: str | None = None, **_: object):
        bucket_and_prefix = uri.removeprefix("s3://")
        self.bucket, _, prefix = bucket_and_prefix.partition("/")
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.profile, self.region = profile, region
        self.kms_key, self.expected_owner = kms_key, expected_owner
        self._client: Any = None
        self._checked: Any = None

    def options(self) -> dict:
        return {"profile": self.profile, "region": self.region, "kms_key": self.kms_key,
                "expected_owner": self.expected_owner}

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("s3", self.profile, self.region)
        return self._client

    def _key(self, key: str) -> str:
        return "/".join(p for p in (self.prefix, key.strip("/")) if p)

    def _owner(self) -> dict[str, str]:
        return {"ExpectedBucketOwner": self.expected_owner} if self.expected_owner else {}

    def _extra(self, key: str = "") -> dict[str, str]:
        extra = {}
        # A browser opening an object (a report page, a manifest) shows it only when S3 serves
        # it with its type; S3's default, binary/octet-stream, makes it a download.
        content_type = mimetypes.guess_type(key)[0]
        if content_type:
            extra["ContentType"] = content_type
        if self.kms_key:
            extra.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=self.kms_key)
        if self.expected_owner:
            extra["ExpectedBucketOwner"] = self.expected_owner
        return extra

    def _fail(self, action: str, key: str, exc: Exception) -> StoreError:
        return StoreError(f"cannot {action} {self.url(key)}: {exc}")

    def read_chunks(self, key: str, size: int = 1 << 20) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError  # lazy: see module docstring

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key),
                                          **self._owner())["Body"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise FileNotFoundError(self.url(key)) from None
            raise self._fail("read", key, exc) from None
        except BotoCoreError as exc:
            raise self._fail("read", key, exc) from None
        try:  # a reader that stops early closes the connection instead of reading the rest
            yield from body.iter_chunks(size)
        except (BotoCoreError, OSError) as exc:
            raise self._fail("read", key, exc) from None
        finally:
            body.close()

    def write_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> None:
        from botocore.exceptions import BotoCoreError, ClientError  # lazy: see module docstring

        extra = self._extra(key)
        if create_only:
            extra["IfNoneMatch"] = "*"  # S3 conditional write: fails if the key exists
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if create_only and code in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise StoreExistsError(f"{self.url(key)} already exists") from None
            raise self._fail("write", key, exc) from None
        except BotoCoreError as exc:
            raise self._fail("write", key, exc) from None

    def put_file(self, key: str, path: Path, progress: Progress | None = None) -> None:
        from boto3.exceptions import S3UploadFailedError  # lazy: see module docstring
        from boto3.s3.transfer import S3Transfer  # lazy: see module docstring
        from botocore.exceptions import BotoCoreError, ClientError  # lazy: see module docstring

        try:
            with S3Transfer(self.client) as transfer:
                transfer.upload_file(str(path), self.bucket, self._key(key), callback=progress,
                                     extra_args=self._extra(key) or None)
        except (S3UploadFailedError, ClientError, BotoCoreError) as exc:
            raise self._fail("upload to", key, exc) from None

    def put_files(self, files: Iterable[tuple[str, Path, str | None]],
                  progress: Progress | None = None) -> None:
        """Many files at once, through a bounded window: memory stays flat for any file count.

        A file up to the multipart threshold whose sha256 the caller has (an upload named by
        its content has hashed every file already) goes up in one PutObject that carries the
        digest as the object's checksum: S3 checks the bytes it receives against it, so botocore
        neither signs the payload nor computes a CRC32 of its own, and the bytes are hashed
        once. Larger files, and files without a digest, go through a TransferManager, which
        splits them into parts streamed from disk.
        """
        from boto3.exceptions import S3UploadFailedError  # lazy: see module docstring

        # lazy: see module docstring
        from boto3.s3.transfer import TransferConfig, create_transfer_manager
        from botocore.exceptions import BotoCoreError, ClientError  # lazy: see module docstring
        from s3transfer.subscribers import BaseSubscriber  # lazy: see module docstring

        class Progress(BaseSubscriber):
            def on_progress(self, bytes_transferred: int, **_: Any) -> None:
                if progress:
                    progress(bytes_transferred)

        config = TransferConfig(max_concurrency=UPLOAD_CONCURRENCY)

        def put(key: str, path: Path, sha256: str, size: int) -> None:
            with path.open("rb") as body:
                self._checked_client.put_object(
                    Bucket=self.bucket, Key=self._key(key), Body=body,
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
                    **self._extra(key))
            if progress:
                progress(size)

        def settle(key: str, future: Any) -> None:
            try:
                future.result()
            except (S3UploadFailedError, ClientError, BotoCoreError) as exc:
                raise self._fail("upload to", key, exc) from None

        pending: deque[tuple[str, Any]] = deque()
        with ExitStack() as stack:
            pool = stack.enter_context(ThreadPoolExecutor(UPLOAD_CONCURRENCY))
            manager = None
            try:
                for key, path, sha256 in files:
                    if len(pending) >= 8 * UPLOAD_CONCURRENCY:
                        settle(*pending.popleft())
                    size = path.stat().st_size
                    if sha256 and size < config.multipart_threshold:
                        future = pool.submit(put, key, path, sha256, size)
                    else:
                        if manager is None:
                            manager = stack.enter_context(
                                create_transfer_manager(self.client, config))
                        future = manager.upload(str(path), self.bucket, self._key(key),
                                                extra_args=self._extra(key) or None,
                                                subscribers=[Progress()])
                    pending.append((key, future))
                while pending:
                    settle(*pending.popleft())
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise

    @property
    def _checked_client(self) -> Any:
        """A client for PutObjects that carry their own checksum: unsigned payload (the signed
        checksum header binds the bytes instead), so botocore does not hash them again."""
        if self._checked is None:
            self._checked = aws.client("s3", self.profile, self.region,
                                       s3={"payload_signing_enabled": False})
        return self._checked

    def copy_from(self, source: Store) -> int:
        """From another S3 prefix, S3 copies the objects itself (CopyObject, in parts when
        large): no byte passes through this machine."""
        if not isinstance(source, S3Store):
            return super().copy_from(source)
        from boto3.s3.transfer import TransferConfig, create_transfer_manager  # lazy
        from botocore.exceptions import BotoCoreError, ClientError  # lazy: see module docstring

        extra = {k: v for k, v in self._extra().items() if k != "ContentType"}
        if source.expected_owner:
            extra["ExpectedSourceBucketOwner"] = source.expected_owner
        count = 0
        # the classic manager, as boto3's own copy takes: the CRT one does not copy
        classic = TransferConfig(preferred_transfer_client="classic")
        with create_transfer_manager(self.client, classic) as manager:
            for key in list(source.list()):  # listed first: `source` may hold this prefix
                try:
                    manager.copy({"Bucket": source.bucket, "Key": source._key(key)},
                                 self.bucket, self._key(key), extra_args=extra or None).result()
                except (ClientError, BotoCoreError) as exc:
                    raise self._fail(f"copy {source.url(key)} to", key, exc) from None
                count += 1
        return count

    def get_file(self, key: str, path: Path) -> None:
        from boto3.s3.transfer import S3Transfer  # lazy: see module docstring
        from botocore.exceptions import BotoCoreError, ClientError  # lazy: see module docstring

        try:
            with S3Transfer(self.client) as transfer:
                transfer.download_file(self.bucket, self._key(key), str(path),
                                       extra_args=self._owner() or None)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise FileNotFoundError(self.url(key)) from None
            raise self._fail("download", key, exc) from None
        except BotoCoreError as exc:
            raise self._fail("download", key, exc) from None

    def list(self, prefix: str = "") -> Iterator[str]:
        from botocore.exceptions import BotoCoreError, ClientError  # lazy: see module docstring

        full = self._key(prefix)
        start = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full, **self._owner()):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if key == full or full == "" or key.startswith(full.rstrip("/") + "/"):
                        yield key[start:]
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("list", prefix, exc) from None

    def local_path(self) -> Path | None:
        return None

    def delete(self, keys: Iterable[str]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError  # lazy: see module docstring

        keys = list(keys)
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = keys[start:start + 1000]
            try:
                answer = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self._key(k)} for k in batch], "Quiet": True},
                    **self._owner())
            except (ClientError, BotoCoreError) as exc:
                raise self._fail("delete in", "", exc) from None
            if answer.get("Errors"):
                error = answer["Errors"][0]
                raise StoreError(f"cannot delete s3://{self.bucket}/{error['Key']}: "
                                 f"{error.get('Message', error.get('Code'))}")
