"""The record store interface, over a local folder and over S3 on the local endpoint."""

from __future__ import annotations

import base64
import hashlib

import pytest

from sagebook.stores import StoreExistsError, open_store


def test_write_read_list_and_urls(store, tmp_path):
    store.write_text("exp/run-1/manifest.json", "{}")
    store.write_text("exp/run-1/logs/algo-1.log", "line\n")
    source = tmp_path / "model.bin"
    source.write_bytes(b"\0" * 1000)
    seen = []
    store.put_file("exp/run-2/model.bin", source, progress=seen.append)
    assert sum(seen) == 1000
    assert store.read_text("exp/run-1/manifest.json") == "{}"
    assert list(store.list("exp/run-1")) == ["exp/run-1/logs/algo-1.log",
                                             "exp/run-1/manifest.json"]
    assert sorted(store.list("exp")) == ["exp/run-1/logs/algo-1.log",
                                         "exp/run-1/manifest.json", "exp/run-2/model.bin"]
    assert list(store.list("ex")) == []  # a prefix is a folder, not a string prefix
    assert store.url("exp/run-1").endswith("/exp/run-1")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("exp/nope.json")
    assert not store.exists("exp/nope.json") and store.exists("exp/run-1/manifest.json")


def test_create_only_write_refuses_to_replace(store):
    store.write_text("exp/run/manifest.json", "first", create_only=True)
    with pytest.raises(StoreExistsError):
        store.write_text("exp/run/manifest.json", "second", create_only=True)
    assert store.read_text("exp/run/manifest.json") == "first"
    store.write_text("exp/run/manifest.json", "third")
    assert store.read_text("exp/run/manifest.json") == "third"


def test_delete_removes_keys_and_ignores_missing_ones(store):
    for name in ("a", "b", "c"):
        store.write_text(f"exp/{name}.json", name)
    store.delete(["exp/a.json", "exp/c.json", "exp/never-there.json"])
    assert list(store.list("exp")) == ["exp/b.json"]
    store.delete([])


def test_trees_round_trip(store, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("bb")
    assert store.upload_tree(src, "data") == 3
    dest = tmp_path / "dest"
    assert store.child("data").download_tree("", dest) == 3
    assert (dest / "sub" / "b.txt").read_text() == "bb"


def test_local_store_refuses_keys_outside_its_folder(tmp_path):
    store = open_store(str(tmp_path / "store"))
    with pytest.raises(Exception, match="outside the store"):
        store.write_text("../escape.txt", "x")


def test_uploads_use_sse_kms_and_the_expected_bucket_owner(bucket, monkeypatch, tmp_path):
    import boto3

    from sagebook import aws

    sent: list[tuple[str, dict]] = []
    real_client = aws.client

    def recording_client(*args, **kwargs):
        client = real_client(*args, **kwargs)
        client.meta.events.register(
            "provide-client-params.s3.*",
            lambda params, model, **_: sent.append((model.name, dict(params))))
        return client

    monkeypatch.setattr(aws, "client", recording_client)
    key = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    store = open_store(f"s3://{bucket}/records", kms_key=key, expected_owner="123456789012")
    store.write_text("exp/run/manifest.json", "{}", create_only=True)
    source = tmp_path / "f.bin"
    source.write_bytes(b"x" * 10)
    store.put_file("exp/run/f.bin", source)
    store.put_files([("exp/run/g.bin", source, hashlib.sha256(b"x" * 10).hexdigest())])
    store.read_text("exp/run/manifest.json")
    head = boto3.client("s3").head_object(Bucket=bucket, Key="records/exp/run/manifest.json")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == key
    writes = [p for name, p in sent if name in ("PutObject", "CreateMultipartUpload")]
    assert len(writes) == 3
    assert all(p["SSEKMSKeyId"] == key and p["ExpectedBucketOwner"] == "123456789012"
               for p in writes)
    assert all(p.get("ExpectedBucketOwner") == "123456789012" for name, p in sent)


def test_put_files_sends_each_digest_as_the_objects_checksum(bucket, tmp_path):
    """S3 checks the bytes against the digest the upload is named by, and botocore does not hash
    them a second time (unsigned payload; the signed checksum header binds them)."""
    import boto3

    store = open_store(f"s3://{bucket}/uploads")
    headers: dict[str, dict] = {}
    store._checked_client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: headers.update({request.url.rsplit("/", 1)[1]: request.headers}))
    files = []
    for name in ("a.bin", "b.bin", "c.bin"):
        content = name.encode() * 1000
        (tmp_path / name).write_bytes(content)
        digest = None if name == "c.bin" else hashlib.sha256(content).hexdigest()
        files.append((f"data/{name}", tmp_path / name, digest))
    seen: list[int] = []
    store.put_files(files, seen.append)
    assert sum(seen) == 3 * 5000
    assert sorted(headers) == ["a.bin", "b.bin"]  # c.bin, without a digest, went the usual way
    for key, path, sha256 in files:
        if sha256:
            sent = headers[path.name]
            assert sent["x-amz-checksum-sha256"].decode() == \
                base64.b64encode(bytes.fromhex(sha256)).decode()
            assert sent["X-Amz-Content-SHA256"].decode() == "UNSIGNED-PAYLOAD"
        body = boto3.client("s3").get_object(Bucket=bucket, Key=f"uploads/{key}")["Body"]
        assert body.read() == path.read_bytes()
