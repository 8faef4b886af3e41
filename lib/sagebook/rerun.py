"""Orchestration layer (L5): launch a new run from a record (`sagebook rerun`).

A record holds whatever its writer put there, and a rerun runs its code, image and settings
with the reader's credentials. So a rerun of someone else's record says what will run, and
refuses the settings that would hand the reader's credentials or data to that code until the
reader says so. Where today's code is comes from the reader's own job config, never a record.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import inputs, project
from .aws import store_options
from .backends import uploads
from .backends.liveness import work_dir
from .config import JobConfig
from .errors import ArgumentError, SagebookError
from .inputs import DamagedFile, parse_json, parse_yaml_text
from .launch import Recorded, launch
from .printing import cell_text, terminal_text
from .record import Record, user
from .runs.details import flatten
from .runs.lookup import RunNotFound, read_job_settings, read_optional
from .stores import Store

# Where a job writes: its record, outputs, checkpoints, TensorBoard files, uploads, configs.
WRITTEN_LOCATIONS = ("experiments_uri", "output_uri", "checkpoint_uri", "tensorboard_uri",
                     "uploads_uri", "config_uri")
MAX_SHOWN_SETTINGS = 20  # settings listed as differing from the reader's config


class UntrustedRecord(SagebookError):
    """A rerun of someone else's record, refused: the settings named, one a line, would hand
    the reader's credentials or data to the record's code."""

    def __init__(self, heading: str, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join([heading, *(f"  {problem}" for problem in problems)]))


def own_config(store: Store, config: str | os.PathLike[str] | None = None) -> Path | None:
    """The job config of whoever reads `store`: `-c` when given, else the job config of the
    project around this folder that keeps its records in `store`; None when there is none."""
    if config is not None:
        return Path(config)
    folder = project.root()
    if folder is None:
        return None
    stores = {uri.rstrip("/"): path for uri, path in project.record_stores(folder).items()}
    return stores.get(store.uri.rstrip("/"))


def own_settings(path: Path) -> dict[str, Any]:
    """The settings of the reader's job config at `path` as a launch sees them (defaults filled
    in, locations resolved from the config's folder), without its training config: what a
    rerun compares a record's settings with."""
    data = read_job_settings(path)
    data.pop("sweep", None)
    try:
        settings = JobConfig.model_validate(data).model_dump(mode="json")
    except ValidationError:  # an invalid config of the reader's still names its places
        settings = {"source_dir": JobConfig.model_fields["source_dir"].default, **data}
    for key in ("source_dir", "training_config", *WRITTEN_LOCATIONS):
        if isinstance(settings.get(key), str):
            settings[key] = _resolved(settings[key], path.parent)
    channels = settings.get("channels")
    if isinstance(channels, dict):
        settings["channels"] = {
            name: {**channel, "uri": _resolved(channel["uri"], path.parent)}
            if isinstance(channel, dict) and isinstance(channel.get("uri"), str)
            else _resolved(channel, path.parent) if isinstance(channel, str) else channel
            for name, channel in channels.items()}
    return settings


def _resolved(location: str, base: Path) -> str:
    """A location as a launch resolves it: `s3://…` as it is, a local path from `base`."""
    if "://" in location:
        return location
    return str(inputs.absolute(base / Path(location).expanduser()))


def _place(location: str) -> str:
    """What a location belongs to: its bucket (`s3://bucket`), or the local folder itself."""
    if location.startswith("s3://"):
        return "s3://" + location[5:].split("/", 1)[0]
    return str(inputs.absolute(location.removeprefix("file://")))


def _places(settings: dict[str, Any], store: Store) -> set[str]:
    """The buckets and folders the reader's config names, and the store they read."""
    found = {_place(store.uri)}
    channels = settings.get("channels") if isinstance(settings.get("channels"), dict) else {}
    for value in [*(settings.get(key) for key in WRITTEN_LOCATIONS),
                  *(_channel_uri(channel) for channel in channels.values())]:
        if isinstance(value, str):
            found.add(_place(value))
    return found


def _within(location: Any, places: set[str]) -> bool:
    """Whether a location read from a record is in one of `places`: the same bucket, or the
    same local folder or one below it. A relative local path is never: a launch resolves it
    from wherever the record's config is written, not from here."""
    if not isinstance(location, str):
        return False
    if location.startswith("s3://"):
        return _place(location) in places
    path = location.removeprefix("file://")
    if not os.path.isabs(path):
        return False
    place = Path(_place(path))
    return any(not p.startswith("s3://") and (Path(p) == place or Path(p) in place.parents)
               for p in places)


def _channel_uri(channel: Any) -> Any:
    return channel.get("uri") if isinstance(channel, dict) else channel


def _shown(value: Any) -> str:
    """A value read from a record, on one line, as it is (no terminal control), clipped."""
    return cell_text(terminal_text("not set" if value is None else cell_text(value),
                                   one_line=True), 120)


def handed_over(job: dict[str, Any], mine: dict[str, Any], places: set[str],
                changed: set[str], owner: str) -> list[str]:
    """The settings of someone else's job config `job` that would hand the reader's
    credentials or data to its code, one line each: their AWS credentials or profile, a bucket
    or folder the reader's config does not name to write to, a local folder to read. Keys the
    reader set (`-o`, in `changed`) are the reader's own."""
    lines = []
    if job.get("pass_aws_credentials") not in (None, False) and \
            "job.pass_aws_credentials" not in changed:
        lines.append(f"job.pass_aws_credentials: {_shown(job['pass_aws_credentials'])} would "
                     f"give {owner}'s training code your AWS credentials")
    if job.get("profile") not in (None, mine.get("profile")) and "job.profile" not in changed:
        lines.append(f"job.profile: {_shown(job['profile'])} would run it with that AWS "
                     f"profile of yours (your config's: {_shown(mine.get('profile'))})")
    for key in WRITTEN_LOCATIONS:
        value = job.get(key)
        if value is not None and f"job.{key}" not in changed and not _within(value, places):
            lines.append(f"job.{key}: {_shown(value)} is not a bucket or folder your config "
                         f"names: {owner}'s training code would write there with your "
                         "credentials")
    channels = job.get("channels") if isinstance(job.get("channels"), dict) else {}
    for name, channel in channels.items():
        uri = _channel_uri(channel)
        keys = {"job.channels", f"job.channels.{name}", f"job.channels.{name}.uri"}
        if isinstance(uri, str) and uri.startswith("s3://") or keys & changed:
            continue  # S3 data is read with the job's role, as any teammate's job reads it
        if not _within(uri, places):
            lines.append(f"job.channels.{_shown(name)}: {_shown(uri)} is not a folder your "
                         f"config names: {owner}'s training code would read it")
    return lines


def differing_settings(job: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """`key: theirs (yours: …)` for each setting of `job` that differs from the reader's."""
    theirs, yours = (flatten({k: v for k, v in settings.items() if k != "training_config"})
                     for settings in (job, mine))
    return [f"job.{_shown(key)}: {_shown(theirs.get(key))} (yours: {_shown(yours.get(key))})"
            for key in sorted(set(theirs) | set(yours), key=str)
            if theirs.get(key) != yours.get(key)]


def rerun(record: Record, overrides: Iterable[str] = (), *, resume: bool = False,
          code: str = "recorded", trust: bool = False, config: Path | None = None,
          **launch_options: Any) -> Any:
    """Launch a new run from a record: the same configs as launched, and the same code, data
    and image as the parent sent (its content-addressed code package and data uploads, its
    image by digest), with `overrides` on top; so its request equals the parent's but for
    names, ids, run tags and times. `code="current"` runs today's code instead: the
    `source_dir` of the reader's job config `config` (see `own_config`), which is also what the
    recorded code is compared with. With `resume`, the run starts from a copy of the parent's
    checkpoints. The new record names its parent and the commit the parent ran.

    Someone else's record is described first (whose, which code, image and settings), and
    refused (UntrustedRecord) when its settings would hand the reader's credentials or data to
    its code, unless `trust` or an override sets them."""
    job_text = read_optional(record, "sagemaker_config.yaml")
    training_text = read_optional(record, "config/training_config.yaml")
    if job_text is None or training_text is None:
        raise RunNotFound(f"{record.uri} has no sagemaker_config.yaml and "
                          "config/training_config.yaml to re-run from")
    if code not in ("recorded", "current"):
        raise ArgumentError.one("--code", None, f"expected recorded or current, got {code!r}")
    echo = launch_options.get("echo", print)
    overrides = list(overrides)
    changed = {o.partition("=")[0] for o in overrides}
    where = record.url("sagemaker_config.yaml")
    job = parse_yaml_text(job_text, where) or {}
    if not isinstance(job, dict):
        raise DamagedFile(where, "not a job config (a mapping of settings)")
    mine = own_settings(config) if config is not None else {}
    source = Path(mine["source_dir"]) if isinstance(mine.get("source_dir"), str) else None
    if code == "current" and "job.source_dir" not in changed and source is None:
        raise ArgumentError.one("--code current", None, "runs today's code, the source_dir of "
                                "your job config, and no job config of yours keeps its "
                                "records in this store: give yours with -c")
    if record.manifest.get("user") != user():
        _check_trust(record, job, mine, config, changed, code, trust, echo)
    m = record.manifest
    parent = {
        "run_id": record.run_id,
        "experiment": record.experiment,
        "record_uri": record.uri,
        "git_commit": (m.get("git") or {}).get("commit"),
        "git_dirty": (m.get("git") or {}).get("dirty"),
        "image_uri": m.get("image_uri"),
        "config_digest": (m.get("config") or {}).get("digest"),
        "overrides": list(overrides),
    }
    recorded = _recorded(record, job, overrides, code, echo, source)
    parent["code"] = "recorded" if recorded.code_dir else "current"
    if code == "current" and "job.source_dir" not in changed:
        overrides = [f"job.source_dir={source}", *overrides]
    if resume:  # first, so that an explicit -o job.resume_from=… still wins
        overrides = [f"job.resume_from={record.experiment}/{record.run_id}", *overrides]
    # The record keeps the job config next to `config/training_config.yaml`; the config loader
    # wants it next to the job config, as `training_config: training_config.yaml` says.
    with tempfile.TemporaryDirectory(prefix=f"sagebook-rerun-{record.run_id}-") as folder:
        job_path = Path(folder, "sagemaker_config.yaml")
        job_path.write_text(job_text)
        Path(folder, "training_config.yaml").write_text(training_text)
        return launch(job_path, list(overrides), extra_manifest={"parent": parent},
                      recorded=recorded, **launch_options)


def _check_trust(record: Record, job: dict[str, Any], mine: dict[str, Any],
                 config: Path | None, changed: set[str], code: str, trust: bool,
                 echo: Callable[[str], None]) -> None:
    """Say what a rerun of someone else's record runs; refuse what it would hand over."""
    owner = _shown(record.manifest.get("user") or "an unknown user")
    package = _code_package(record)
    request = _request(record)
    image = (request.get("AlgorithmSpecification") or {}).get("TrainingImage") \
        if isinstance(request.get("AlgorithmSpecification"), dict) else None
    lines = [f"run {record.experiment}/{record.run_id} is {owner}'s record, not yours: a "
             f"rerun runs {owner}'s code with your credentials",
             "  code:  " + ("today's, the source_dir of your job config (--code current)"
                            if code == "current" else
                            f"{owner}'s code package {package['digest']}" if package else
                            "the image's own (the record has no code package)"),
             "  image: " + (_shown(image or record.manifest.get("image_uri"))
                            if image or record.manifest.get("image_uri") else
                            "none (instance_type local: a process on this machine)"
                            if job.get("instance_type") == "local" else "not recorded")]
    if config is None:
        lines.append("  no job config of yours keeps its records in this store, to compare "
                     "its settings with (give yours with -c)")
    else:
        differ = differing_settings(job, mine)
        lines.append(f"  settings that differ from your {config}:" if differ else
                     f"  its settings are those of your {config}")
        lines += [f"    {row}" for row in differ[:MAX_SHOWN_SETTINGS]]
        if len(differ) > MAX_SHOWN_SETTINGS:
            lines.append(f"    … and {len(differ) - MAX_SHOWN_SETTINGS} more")
    for line in lines:
        echo(f"[sagebook] {line}")
    refused = handed_over(job, mine, _places(mine, record.store), changed, owner)
    if refused and not trust:
        raise UntrustedRecord(
            f"rerun of {owner}'s record {record.experiment}/{record.run_id} refused: these "
            "settings would hand your credentials or data to its code (--trust-record runs "
            "it as recorded; -o KEY=VALUE sets one yourself)", refused)


def _code_package(record: Record) -> dict[str, Any] | None:
    """The record's code upload (channel, digest, uri), its digest checked: it becomes a
    folder name."""
    entries = record.manifest.get("uploads")
    package = next((e for e in entries if isinstance(e, dict) and e.get("kind") == "code"),
                   None) if isinstance(entries, list) else None
    if package is not None:
        inputs.checked_name("digest", package.get("digest"), record.url("manifest.json"))
    return package


def _request(record: Record) -> dict[str, Any]:
    """The record's CreateTrainingJob request, {} when it has none."""
    name = "request.json"
    request = parse_json(read_optional(record, name) or "{}", record.url(name))
    return request if isinstance(request, dict) else {}


def _recorded(record: Record, job: dict[str, Any], overrides: list[str], code: str,
              echo: Callable[[str], None], source: Path | None) -> Any:
    """What of the parent's record the rerun sends again: whatever an override does not
    change. Says when today's code (`source`, the source_dir of the reader's job config)
    differs from the code the parent ran."""
    changed = {o.partition("=")[0] for o in overrides}
    entries = record.manifest.get("uploads")
    entries = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    options = store_options(job)
    channels = {e["channel"]: {**e, "reused_from": f"{record.experiment}/{record.run_id}"}
                for e in entries if e.get("kind") == "data" and isinstance(e.get("channel"), str)
                and not changed & {"job.channels", f"job.channels.{e['channel']}"}}
    image = None if "job.image_uri" in changed else (
        _request(record).get("AlgorithmSpecification") or {}).get("TrainingImage")
    package = _code_package(record)
    if package is None or "job.source_dir" in changed:
        return Recorded(channels=channels, image_uri=image)
    today = uploads.code_digest(source) if source is not None and source.is_dir() else None
    if today != package["digest"]:
        what = (f"the training code in {source} differs from the code run {record.run_id} ran"
                if today else
                f"{source}, your job config's source_dir, is not a folder" if source else
                "no job config of yours keeps its records in this store (give yours with -c), "
                f"so today's code is not compared with the code run {record.run_id} ran")
        echo(f"[sagebook] note: {what}; "
             + ("this rerun runs the recorded code (--code current runs today's)"
                if code == "recorded" else "--code current: this rerun runs today's"))
    if code == "current":
        return Recorded(channels=channels, image_uri=image)
    try:
        code_dir = uploads.unpack_code(package.get("uri"), package["digest"], work_dir("_code"),
                                       options, record.url("manifest.json"))
    except FileNotFoundError as exc:
        raise RunNotFound(f"run {record.experiment}/{record.run_id}'s code package is gone "
                          f"({exc}): rerun with --code current to run today's code") from None
    except DamagedFile as exc:
        raise DamagedFile(exc.where, f"{exc.reason}; run {record.experiment}/{record.run_id}'s "
                          "code package cannot be used (--code current runs today's code)"
                          ) from None
    return Recorded(code_dir=code_dir, channels=channels, image_uri=image,
                    git={**(record.manifest.get("git") or {}),
                         "note": f"the code run {record.run_id} ran, from its code package"})
