"""AWS access in one place: sessions, clients, and where a job, a bucket or an image lives.

Everything that speaks to AWS (the S3 store, the SageMaker backend and its status refresh,
uploads, doctor, the price list) resolves profile and region here, so they cannot disagree:
boto3's standard chain (environment, `AWS_PROFILE` or the config's `profile:`, SSO, instance
role), endpoints from the standard `AWS_ENDPOINT_URL*` variables (the tests point them at a
local moto server), botocore's standard retry mode. Sessions and clients are botocore's, the
core boto3 wraps: boto3's own session adds resources and S3 transfer methods a launch does not
use, for ~40 ms of imports and setup; the S3 store takes boto3's transfers where it moves
files. botocore is imported on first use, so a command that never reaches AWS never pays for
it.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError, SagebookError, StoreError
from .paths import cache_folder

_sessions: dict[tuple[Any, ...], Any] = {}
_clients: dict[tuple[Any, ...], Any] = {}
_lock = threading.RLock()

NO_CREDENTIALS = ("no AWS credentials found: run `aws configure` or `aws sso login`, set "
                  "AWS_PROFILE, or give a `profile:` in the job config")
NO_REGION = ("no AWS region: set `region:` in the job config, or AWS_DEFAULT_REGION, or a "
             "region in the AWS profile")

ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/"
    r"(?P<repo>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def session(profile: str | None = None) -> Any:
    """One botocore session per profile and AWS_* environment, reused: every new session sets
    up botocore's endpoint tables and models again (~40 ms each). Regions are the clients'."""
    import botocore.session  # on first use: a command that never reaches AWS never pays it

    key = (profile, _aws_environment())
    with _lock:
        if key not in _sessions:
            try:
                aws = botocore.session.Session(profile=profile)
                aws.get_scoped_config()  # a profile this machine lacks fails here, not later
            except Exception as exc:  # botocore's ProfileNotFound and friends
                raise StoreError(f"AWS session: {exc}") from None
            aws.get_component("data_loader").file_loader = _model_file_loader()
            _sessions[key] = aws
        return _sessions[key]


class NoCredentials(SagebookError):
    """This machine has no AWS credentials for the profile a command needs."""


def require_credentials(profile: str | None = None) -> None:
    """NoCredentials, saying how to get some, unless boto's chain finds credentials for
    `profile`: asked before a command's first AWS call, so that a missing login is named as
    such rather than as the first call's failure (an ECR permission, a record not written).
    The session keeps what it found, so the calls that follow do not look again."""
    if session(profile).get_credentials() is None:
        raise NoCredentials(NO_CREDENTIALS)


def _model_file_loader() -> Any:
    """botocore's JSON file loader, with the large files it reads kept decoded on disk.

    Every client parses its service's model, and botocore its endpoint tables: megabytes of
    JSON, about 100 ms of a launch (SageMaker's model alone is 2 MB). Kept as `marshal` data
    (plain values only, so a cache file cannot run code) they load several times faster. A
    cache entry is named by the model file's path, then its size and mtime and the
    interpreter's version, so a botocore upgrade reads the new files and its new entry replaces
    the old one for that path; an unusable cache is only a slower load, never an error.
    """
    from botocore.loaders import JSONFileLoader  # botocore: on first use, as in session()

    folder = cache_folder() / "botocore"

    class CachedJSONFileLoader(JSONFileLoader):
        def _load_file(self, full_path: str, open_method: Any) -> Any:
            try:
                info = os.stat(full_path)
            except OSError:
                return None
            if info.st_size < 16_384:  # small files parse faster than a cache lookup pays
                return super()._load_file(full_path, open_method)
            path = hashlib.sha256(full_path.encode()).hexdigest()[:16]
            version = f"{info.st_size}\0{info.st_mtime_ns}\0{sys.version}"
            cached = folder / f"{path}-{hashlib.sha256(version.encode()).hexdigest()[:16]}.marshal"
            try:
                return marshal.loads(cached.read_bytes())
            except Exception:  # absent, or unreadable: parse the model again
                pass
            with open_method(full_path, "rb") as source:
                data = json.loads(source.read().decode("utf-8"))
            try:
                folder.mkdir(parents=True, exist_ok=True)
                partial = cached.with_name(f".{cached.name}.{os.getpid()}")
                partial.write_bytes(marshal.dumps(data))
                os.replace(partial, cached)
                for stale in folder.glob(f"{path}-*.marshal"):  # this file before an upgrade
                    if stale != cached:
                        stale.unlink(missing_ok=True)
            except OSError:
                pass
            return data

    return CachedJSONFileLoader()


def _aws_environment() -> tuple[tuple[str, str], ...]:
    """The AWS_* variables: endpoints, credentials, retries. A change makes new sessions."""
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))


def client(service: str, profile: str | None = None, region: str | None = None,
           **settings: Any) -> Any:
    """A client that retries throttling, 5xx answers, resets and timeouts with backoff.

    botocore's own variables tune it (`AWS_RETRY_MODE`, `AWS_MAX_ATTEMPTS`; default: standard
    mode, 8 attempts), and `SAGEBOOK_AWS_TIMEOUT` the seconds to wait for an answer (60).
    `settings` are further botocore `Config` options (`s3={...}`).
    A service that needs a region and finds none is a config problem (`job.region`).
    """
    from botocore.config import Config  # botocore: on first use, as in session()
    from botocore.exceptions import NoRegionError  # botocore on first use (module docstring)

    retries = {"mode": os.environ.get("AWS_RETRY_MODE", "standard"),
               "total_max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", "8"))}
    timeout = float(os.environ.get("SAGEBOOK_AWS_TIMEOUT", "60"))
    aws = session(profile)
    region = region or aws.get_config_variable("region")
    # One client per profile, region, environment, service and settings: clients are
    # thread-safe, and each new one costs ~15 ms (a launch asks S3 from its preflight and from
    # its record store).
    key = (profile, region, _aws_environment(), service, timeout, repr(sorted(settings.items())))
    try:
        with _lock:  # a botocore session creates clients one at a time
            if key not in _clients:
                config = Config(retries=retries, connect_timeout=min(10.0, timeout),
                                read_timeout=timeout, **settings)
                _clients[key] = aws.create_client(service, region_name=region, config=config)
            return _clients[key]
    except NoRegionError:
        raise ConfigError.one("job.region", None, NO_REGION) from None


def region(profile: str | None = None, region: str | None = None) -> str | None:
    """The region the chain resolves for this profile (and explicit region), or None."""
    return region or session(profile).get_config_variable("region")


def usable_profile(name: str | None) -> str | None:
    """`name` when this machine has a profile of that name, else None (the default chain): a
    record names the launcher's profile, which a teammate's laptop may not have."""
    if not name:
        return None
    return name if name in session().available_profiles else None


def region_from_arn(arn: str | None) -> str | None:
    """`arn:aws:sagemaker:eu-west-1:…` → `eu-west-1`."""
    parts = str(arn or "").split(":")
    return parts[3] if len(parts) > 4 and parts[3] else None


def job_location(run: Mapping[str, Any],
                 fallback: Mapping[str, Any] | None = None) -> tuple[str | None, str | None]:
    """(region, profile) where a run's SageMaker job lives.

    `run` is a manifest (`aws: {region, profile}`) or an index entry (`aws_region`,
    `aws_profile`); the region is the one recorded at launch, else the job ARN's, else
    `fallback`'s (the job config's settings); the profile only if this machine has it.
    """
    aws = run.get("aws") or {}
    region_name = aws.get("region") or run.get("aws_region") or region_from_arn(
        run.get("job_arn"))
    profile = aws.get("profile") or run.get("aws_profile")
    if fallback and not (aws or run.get("aws_region") or run.get("aws_profile")):
        region_name = region_name or fallback.get("region")
        profile = fallback.get("profile")
    return region_name, usable_profile(profile)


def ecr_image(uri: str | None) -> dict[str, str | None] | None:
    """The parts of an ECR image URI (account, region, repo, tag, digest), or None when the
    image is not in ECR."""
    match = ECR_IMAGE.match(uri or "")
    if not match:
        return None
    return {k: match[k] for k in ("account", "region", "repo", "tag", "digest")}


def region_mismatch(what: str, where: str | None, region: str | None) -> str | None:
    """Why `what` (a bucket, an image) in region `where` cannot serve a job in `region`, if it
    cannot: SageMaker reads data, writes outputs and pulls images only in its own region."""
    if where and region and where != region:
        return (f"{what} is in {where}, but the job runs in {region}: SageMaker uses S3 and ECR "
                f"only in its own region; move it to {region}, or set region: {where}")
    return None


def bucket_region(bucket: str, profile: str | None = None,
                  expected_owner: str | None = None) -> str | None:
    """The region a bucket lives in (HeadBucket's `x-amz-bucket-region`), or None when S3 does
    not say (no access, no such bucket)."""
    from botocore.exceptions import BotoCoreError, ClientError  # on first use, as above

    s3 = client("s3", profile)
    owner = {"ExpectedBucketOwner": expected_owner} if expected_owner else {}
    try:
        answer = s3.head_bucket(Bucket=bucket, **owner)
    except ClientError as exc:  # a 301/403 still names the region in its headers
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return headers.get("x-amz-bucket-region")
    except BotoCoreError:
        return None
    headers = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    return answer.get("BucketRegion") or headers.get("x-amz-bucket-region")


def store_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The AWS options of a store opened for a job's records, from its job settings: the one
    mapping of job-config keys to store options, for a validated config
    (`JobConfig.store_options`) and for raw settings, as commands that only read records and
    a recorded config's readers have them (neither validates a whole config to open a store)."""
    return {"profile": settings.get("profile"), "region": settings.get("region"),
            "kms_key": settings.get("s3_kms_key"),
            "expected_owner": settings.get("expected_bucket_owner")}
