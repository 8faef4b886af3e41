"""Names read from a store never become paths outside their folder, and a code package read
from a store is unpacked within bounds: a run id, experiment or digest of `../../victim`, a
manifest that names another run, a package that is a bomb, has `../` members, links, devices,
random bytes or a torn gzip, a cached copy that is not what its digest says. Each refusal is one
line naming the record and why, exit 1, nothing created, changed or removed outside the record's
folders (sentinel files), nothing left behind. `sagebook rerun` runs in a child under a file-size
and address-space limit with a SIGKILL timeout, so a regression fails the test, not the box;
over a local folder and over S3 on the local endpoint."""

from __future__ import annotations

import getpass
import gzip
import hashlib
import io
import json
import os
import resource
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from sagebook.launch import launch
from sagebook.record import Record

from conftest import add_run, listed, run_cli, sagebook

FILE_LIMIT = 32 << 20  # no file the child writes may be larger: a bomb would be killed by it
MEMORY_LIMIT = 1 << 30  # address space of the child: imports take ~300 MB
BOUND = 4 << 20  # SAGEBOOK_MAX_CODE_BYTES in these tests


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def rerun_limited(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`sagebook rerun ARGS` in a child that cannot write a file past FILE_LIMIT nor map more
    than MEMORY_LIMIT, killed (SIGKILL) when it outlives the timeout."""
    return subprocess.run([sys.executable, "-m", "sagebook.cli", "rerun", *args],
                          capture_output=True, text=True, timeout=120, preexec_fn=_limited,
                          env={**os.environ, "SAGEBOOK_MAX_CODE_BYTES": str(BOUND),
                               "SAGEBOOK_MAX_CODE_FILES": "100", **env})


class _Tee(io.RawIOBase):
    """A tar stream on its way into gzip, hashed as sagebook names a package (its digest)."""

    def __init__(self, target: Any):
        self.target, self.hash = target, hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.hash.update(data)
        return self.target.write(data)


def package(members: list[tuple[tarfile.TarInfo, bytes]]) -> tuple[bytes, str]:
    """A gzipped tar of these members, written as sagebook writes packages, and its digest."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as zipped:
        tee = _Tee(zipped)
        with tarfile.open(fileobj=tee, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for info, data in members:
                info.size = len(data) if info.isreg() else 0
                tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue(), tee.hash.hexdigest()[:32]


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3  # /dev/null
    return info


@pytest.fixture(scope="module")
def bomb() -> tuple[bytes, str]:
    """About 1 MB of gzip that unpacks to one file of 1 GiB of zeros, with its true digest:
    gzip members of 1 MiB of zeros each, which gzip readers join into one stream."""
    info = tarfile.TarInfo("weights.bin")
    info.size = 1 << 30
    header, chunk, end = info.tobuf(tarfile.PAX_FORMAT), bytes(1 << 20), bytes(1024)
    digest = hashlib.sha256(header)
    for _ in range(1024):
        digest.update(chunk)
    digest.update(end)
    zipped_chunk = gzip.compress(chunk, mtime=0)
    data = b"".join([gzip.compress(header, mtime=0), zipped_chunk * 1024,
                     gzip.compress(end, mtime=0)])
    assert len(data) < 1_200_000
    return data, digest.hexdigest()[:32]


def hostile_package(kind: str, bomb: tuple[bytes, str]) -> tuple[bytes, str]:
    code = b"print('code')\n"
    if kind == "bomb":
        return bomb
    if kind == "too many files":
        return package([(member(f"m{i:03d}.py"), b"") for i in range(101)])
    if kind == "dot-dot member":
        return package([(member("train.py"), code), (member("../../escape.py"), code)])
    if kind == "absolute symlink":
        return package([(member("train.py"), code), (member("data", tarfile.SYMTYPE,
                                                            "/etc/passwd"), b"")])
    if kind == "hard link out":
        return package([(member("train.py"), code), (member("data", tarfile.LNKTYPE,
                                                            "/etc/passwd"), b"")])
    if kind == "device":
        return package([(member("train.py"), code), (member("null", tarfile.CHRTYPE), b"")])
    if kind == "random bytes":
        return os.urandom(4096), "0123456789abcdef0123456789abcdef"
    if kind == "truncated gzip":
        data, digest = package([(member("train.py"), os.urandom(20_000))])
        return data[: len(data) // 2], digest
    data, _ = package([(member("train.py"), code)])  # a package, not the one it is named by
    return data, "0123456789abcdef0123456789abcdef"


REASONS = {
    "bomb": f"unpacks to more than {BOUND >> 20}.0 MB (SAGEBOOK_MAX_CODE_BYTES)",
    "too many files": "holds more than 100 files and folders (SAGEBOOK_MAX_CODE_FILES)",
    "dot-dot member": "holds '../../escape.py', a name that is not a plain path inside the "
                      "package",
    "absolute symlink": "holds 'data', a symbolic link: a code package holds only files and "
                        "folders",
    "hard link out": "holds 'data', a hard link: a code package holds only files and folders",
    "device": "holds 'null', a character device: a code package holds only files and folders",
    "random bytes": "not a code package (a gzipped tar)",
    "truncated gzip": "not a code package (a gzipped tar)",
    "wrong digest": "does not hold the code it is named by (0123456789abcdef0123456789abcdef)",
}


def with_package(store: Any, data: bytes, digest: str, tmp_path: Path, **fields: Any) -> Record:
    """A run of this user's whose code upload is `data`, stored under `digest`."""
    record = add_run(store, user=getpass.getuser())
    archive = tmp_path / "package.tar.gz"
    archive.write_bytes(data)
    store.put_file(f"_uploads/code/{digest}/sourcedir.tar.gz", archive)
    record.update(uploads=[{"channel": "code", "kind": "code", "source": str(tmp_path / "code"),
                            "digest": digest, "uri": store.url(f"_uploads/code/{digest}") + "/",
                            "bytes": len(data), "files": 1, **fields}])
    return record


def files_below(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) \
        if folder.exists() else []


@pytest.mark.parametrize("kind", list(REASONS))
def test_a_hostile_code_package_is_refused_in_one_line_and_leaves_nothing_behind(
        store, tmp_path, monkeypatch, bomb, kind):
    work = tmp_path / "work"
    monkeypatch.setenv("SAGEBOOK_WORK_DIR", str(work))
    data, digest = hostile_package(kind, bomb)
    record = with_package(store, data, digest, tmp_path)
    before = files_below(tmp_path)

    result = rerun_limited(f"{record.experiment}/{record.run_id}", "--store", store.uri)
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr and len(lines) == 2, result.stderr
    assert lines[1].startswith("sagebook: ") and REASONS[kind] in lines[1], lines[1]
    assert f"run {record.experiment}/{record.run_id}'s code package cannot be used" in lines[1]
    assert files_below(work) == ["_code"]  # no partial package, no unpacked folder, no cache
    assert set(files_below(tmp_path)) == {*before, "work", "work/_code"}
    assert len(listed_runs(store)) == 1  # nothing launched


def listed_runs(store: Any) -> list[dict[str, Any]]:
    result = sagebook("list", "--store", store.uri, "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_sagebook_max_code_bytes_must_be_a_number(store, tmp_path, monkeypatch):
    monkeypatch.setenv("SAGEBOOK_WORK_DIR", str(tmp_path / "work"))
    data, digest = package([(member("train.py"), b"print(1)\n")])
    record = with_package(store, data, digest, tmp_path)
    result = rerun_limited(record.run_id, "--store", store.uri, SAGEBOOK_MAX_CODE_BYTES="2G")
    assert result.returncode == 2
    assert result.stderr.splitlines()[1:] == [
        "sagebook: invalid configuration:",
        "  SAGEBOOK_MAX_CODE_BYTES: expected a whole number above 0, got '2G'"]


def test_a_digest_that_climbs_out_of_the_work_folder_is_a_damaged_field(store, tmp_path,
                                                                       monkeypatch):
    work = tmp_path / "work"
    monkeypatch.setenv("SAGEBOOK_WORK_DIR", str(work))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "sourcedir.tar.gz").write_bytes(b"the victim's file")
    (victim / "src").mkdir()
    (victim / "src" / "keep.txt").write_text("keep")
    record = add_run(store, user=getpass.getuser())
    record.update(uploads=[{"channel": "code", "kind": "code", "source": "/",
                            "digest": "../../victim", "uri": store.url("_uploads/code/x/")}])
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    result = rerun_limited(record.run_id, "--store", store.uri)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[1:] == [
        f"sagebook: {record.url('manifest.json')}: '../../victim' is not a valid digest"]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not work.exists()


def tiny_project(make_config: Any, tmp_path: Path, store: Any) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("print('the recorded code ran')\n")
    return make_config(source_dir=str(code), training_schema=None, metric_definitions=[],
                       experiments_uri=store.uri)


@pytest.mark.slow
def test_a_cached_copy_is_used_only_when_it_holds_its_digest_and_source_is_never_walked(
        store, make_config, tmp_path, monkeypatch):
    work = tmp_path / "work"
    monkeypatch.setenv("SAGEBOOK_WORK_DIR", str(work))
    path = tiny_project(make_config, tmp_path, store)
    parent = launch(path, echo=lambda _: None)
    assert parent.outcome.status == "Completed"
    [package_entry] = parent.record.manifest["uploads"]
    digest = package_entry["digest"]
    # The record now says its code came from "/"; and this machine's cache holds other code
    # under the package's digest: a planted folder and a planted archive.
    parent.record.update(uploads=[{**package_entry, "source": "/"}])
    cached = work / "_code" / digest
    (cached / "src").mkdir(parents=True)
    (cached / "src" / "train.py").write_text("print('planted code ran')\n")
    planted, _ = package([(member("train.py"), b"print('planted archive ran')\n")])
    (cached / "sourcedir.tar.gz").write_bytes(planted)

    result = rerun_limited(parent.record.run_id, "--store", store.uri, "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert "the recorded code ran" in result.stdout
    assert "planted" not in result.stdout
    assert "the training code in" not in result.stdout  # today's code is the recorded code
    assert "/, where" not in result.stdout
    assert (cached / "src" / "train.py").read_text() == "print('the recorded code ran')\n"
    assert (cached / "sourcedir.tar.gz").read_bytes() != planted


@pytest.mark.slow
def test_a_package_repaired_in_the_store_reruns_since_no_bad_copy_was_kept(
        store, make_config, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SAGEBOOK_WORK_DIR", str(tmp_path / "work"))
    path = tiny_project(make_config, tmp_path, store)
    parent = launch(path, echo=lambda _: None)
    [entry] = parent.record.manifest["uploads"]
    key = f"_uploads/code/{entry['digest']}/sourcedir.tar.gz"
    genuine = tmp_path / "genuine.tar.gz"
    store.get_file(key, genuine)
    torn = tmp_path / "torn.tar.gz"
    torn.write_bytes(genuine.read_bytes()[:40])
    import shutil

    shutil.rmtree(tmp_path / "work" / "_code")  # a reader on another machine: nothing cached
    store.put_file(key, torn)
    failed = rerun_limited(parent.record.run_id, "--store", store.uri)
    assert failed.returncode == 1 and "not a code package" in failed.stderr
    assert files_below(tmp_path / "work" / "_code") == []  # no bad copy kept
    store.put_file(key, genuine)
    again = rerun_limited(parent.record.run_id, "--store", store.uri)
    assert again.returncode == 0, again.stderr
    assert "the recorded code ran" in again.stdout


# --------------------------------------------------------------------------------------------
# Names in the index and in manifests


def test_index_entries_whose_names_are_paths_are_skipped_and_named(store, capsys):
    kept = add_run(store)
    planted = {"_index/events/exp-a/evil1.000001.json": ("../../victim", "exp-a"),
               "_index/events/exp-a/evil2.000001.json": ("20260101-000000-aaaaaa", ".."),
               "_index/events/bad name/evil3.000001.json": ("20260101-000000-bbbbbb", "exp-a")}
    for key, (run_id, experiment) in planted.items():
        store.write_text(key, json.dumps({"run_id": run_id, "experiment": experiment,
                                          "revision": 1, "status": "Completed"}))
    code, out, err = run_cli(capsys, "list", "--store", store.uri, "--json")
    assert code == 0
    assert [json.loads(line)["run_id"] for line in out.splitlines()] == [kept.run_id]
    assert f"skipped {store.url('_index/events/exp-a/evil1.000001.json')}: '../../victim' " \
           "is not a valid run id" in err
    assert "evil2.000001.json: '..' is not a valid experiment" in err
    assert "evil3.000001.json: 'bad name' is not a valid experiment" in err
    assert "Traceback" not in err
    code, out, err = run_cli(capsys, "show", "victim", "--store", store.uri)
    assert code == 1 and "no run 'victim'" in err


def test_a_manifest_that_names_another_run_is_damaged(store, capsys):
    mine, other = add_run(store), add_run(store)
    raw = json.loads(store.read_text(f"{mine.prefix}/manifest.json"))
    store.write_text(f"{mine.prefix}/manifest.json",
                     json.dumps({**raw, "run_id": other.run_id, "revision": 99}))
    code, out, err = run_cli(capsys, "show", f"exp-a/{mine.run_id}", "--store", store.uri)
    assert code == 1
    assert err.strip() == (f"sagebook: {store.url(mine.prefix)}/manifest.json: its run_id "
                           f"'{other.run_id}' is not its folder's ('{mine.run_id}') "
                           "(`sagebook fsck` says what to do)")
    code, out, err = run_cli(capsys, "fsck", "--store", store.uri)
    assert code == 1 and f"its run_id '{other.run_id}' is not its folder's" in out
    code, out, err = run_cli(capsys, "list", "--store", store.uri, "--reindex", "--json")
    assert sorted(r["run_id"] for r in map(json.loads, out.splitlines())) == sorted(
        [mine.run_id, other.run_id])  # the index keeps what it had; the bad manifest adds none
    assert "its run_id" in err


@pytest.mark.parametrize("ref", ["exp-a/..", "../exp-a", "exp a/20260101-000000-aaaaaa"])
def test_a_run_typed_as_a_path_is_no_run(store, capsys, ref):
    add_run(store)
    code, out, err = run_cli(capsys, "show", ref, "--store", store.uri)
    assert code == 1 and err.startswith(f"sagebook: no run {ref!r}: ") and "valid" in err


def test_every_id_sagebook_writes_passes(store, capsys):
    from sagebook.inputs import checked_name
    from sagebook.record import new_run_id
    from sagebook.sweeps.record import new_sweep_id

    assert checked_name("run id", new_run_id(), "here")
    assert checked_name("run id", f"{new_sweep_id()}-003-0a1b2c3d", "here")
    run = add_run(store, "a-b-c1")
    assert [r["run_id"] for r in listed(capsys, store)] == [run.run_id]


def test_a_record_folder_named_like_no_experiment_is_named_by_fsck_and_never_indexed(store,
                                                                                     capsys):
    kept = add_run(store)
    raw = json.loads(store.read_text(f"{kept.prefix}/manifest.json"))
    bad = f"bad name!/{kept.run_id}/manifest.json"
    store.write_text(bad, json.dumps({**raw, "experiment": "bad name!"}))
    code, out, err = run_cli(capsys, "fsck", "--store", store.uri)
    assert code == 1 and f"{store.url(bad)}: 'bad name!' is not a valid experiment" in out
    code, out, err = run_cli(capsys, "list", "--store", store.uri, "--reindex", "--json")
    assert [json.loads(line)["experiment"] for line in out.splitlines()] == ["exp-a"]
    assert f"not indexed: {store.url(bad)}: 'bad name!' is not a valid experiment" in err
    assert not [k for k in store.list("_index") if "bad name" in k]
