"""`sagebook doctor`: check, before a launch, what this job config needs from outside the code.

The checks follow the config. A local run needs its training code, schema and data, and a way to
give the code `/opt/ml`; it needs AWS only where the config names an `s3://` location. A
SageMaker job needs what AWS must grant: credentials, a region, a role SageMaker can assume,
buckets in the job's region that the launcher can write where the launch writes (records,
training configs, uploads) and read where the job reads (a channel with no objects is a warning),
and the image in ECR in the job's region. Each check makes one cheap call (a write check writes
and deletes one small object) and says what to do when it fails.
"""

from __future__ import annotations

import json
import secrets as _random
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from . import aws
from .backends import capacity, contract, namespace, stall
from .config import (
    RUN_ID_PLACEHOLDER,
    JobConfig,
    LaunchConfig,
    load,
    replicated_hosts_warning,
)
from .stores import open_store


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # passes, but the launch will probably not do what was meant


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code", type(exc).__name__)


def run_checks(cfg: LaunchConfig) -> list[Check]:
    """Every check this job config needs, in the order a user would fix them."""
    job = cfg.job
    checks: list[Check] = []

    def check(name: str, probe: Callable[[], str]) -> bool:
        try:
            checks.append(Check(name, True, probe()))
            return True
        except DoctorWarning as warning:
            checks.append(Check(name, True, str(warning), warning=True))
            return True
        except DoctorFinding as finding:
            checks.append(Check(name, False, str(finding)))
        except Exception as exc:  # any AWS or network failure is a finding, not a crash
            checks.append(Check(name, False, f"{_error_code(exc)}: {exc}"))
        return False

    check("training code", lambda: _training_code(cfg))
    check("environment", lambda: contract.describe_environment(job.image_environment))
    if job.stall_timeout or job.notify:
        check("watch", lambda: stall.describe(job))
    if not job.is_cloud:
        if job.instance_type == "local":
            check("local /opt/ml", lambda: _local_opt_ml(cfg))
        else:
            check("docker", _docker)
    if job.instance_count > 1:
        check("hosts", lambda: _hosts(job))
    for name, channel in job.channels.items():
        if "://" not in channel.uri:
            check(f"channel {name}", lambda uri=channel.uri: _local_channel(job, uri))
    locations = _s3_locations(job)
    if not job.is_cloud and not locations:
        return checks  # a local run of local data needs nothing from AWS
    if not check("credentials", lambda: _credentials(job)):
        return checks
    if not check("region", lambda: _region(job)):
        return checks
    if job.role_arn and job.is_cloud:
        check("execution role", lambda: _role(job))
    for label, uri, access in locations:
        check(label, lambda uri=uri, access=access: _bucket(job, uri, access))
    if job.image_uri and job.is_cloud:
        check("training image", lambda: _image(job))
    if job.is_cloud:
        check("capacity", lambda: _capacity(cfg))
    return checks


class DoctorFinding(Exception):
    """A check failed in a way we can explain."""


class DoctorWarning(Exception):
    """A check passed, but what it found is probably not what was meant."""


def _training_code(cfg: LaunchConfig) -> str:
    """Loading the config already found the code and validated the training config against
    its schema (a failure there is a config error, exit 2): say what was checked."""
    job = cfg.job
    schema = (f"; {cfg.training_path.name} fits {job.training_schema}" if job.training_schema
              else "; no training_schema: training options are not checked")
    return f"{Path(job.source_dir) / job.entry_point}{schema}"


def _capacity(cfg: LaunchConfig) -> str:
    """The quota of each type the run may use against the instances in use, as the launch
    checks them before uploading; quotas that cannot be read are a warning there too."""
    job = cfg.job
    plan = capacity.describe(cfg)
    try:
        found = capacity.measure(cfg, aws.client("sagemaker", job.profile, job.region))
    except Exception as exc:  # boto3's and SageMaker's refusals alike: the launch only warns
        raise DoctorWarning(f"{plan}; quotas not checked: {capacity.unchecked_reason(exc)}") \
            from None
    over = [capacity.over_quota(t, f, job.instance_count) for t, f in found.items() if f["over"]]
    if over and len(over) == len(found) and not job.wait_for_capacity:
        raise DoctorFinding("over quota: " + "; ".join(over))
    quotas = ", ".join(f"{t}: {f['in_use']} in use of {f['quota']:g}" if f["quota"] is not None
                       else f"{t}: no quota found" for t, f in found.items())
    return f"{plan}; {quotas}"


def _hosts(job: JobConfig) -> str:
    paying_twice = replicated_hosts_warning(job)
    if paying_twice:
        raise DoctorWarning(paying_twice)
    sharded = [n for n, c in job.channels.items() if c.distribution == "ShardedByS3Key"]
    how = (f"{job.distribution}, {job.processes_per_host} per host" if job.distribution != "none"
           else f"channel {', '.join(sharded)} sharded")
    return f"{job.instance_count} hosts: {how}"


def _docker() -> str:
    docker = shutil.which("docker")
    if not docker:
        raise DoctorFinding("no `docker` on PATH: install Docker to run the image locally, or "
                            "use instance_type: local")
    return docker


def _local_channel(job: JobConfig, uri: str) -> str:
    path = Path(uri)
    if not path.exists():
        raise DoctorFinding(f"{uri} does not exist")
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    if not files:
        raise DoctorWarning(f"{uri} holds no files: the training code will find no data")
    size = sum(p.stat().st_size for p in files)
    where = "uploaded, content-addressed, at launch" if job.is_cloud else "linked into the run"
    return f"{uri}: {len(files)} file(s), {size:,} bytes ({where})"


def _local_opt_ml(cfg: LaunchConfig) -> str:
    mode = namespace.support()
    problem = None if mode.available else namespace.fallback_problem(
        Path(cfg.job.source_dir), mode.detail)
    if problem:
        raise DoctorFinding(problem)
    return namespace.host_environment_note()


def _credentials(job: JobConfig) -> str:
    session = aws.session(job.profile)
    if session.get_credentials() is None:
        raise DoctorFinding(aws.NO_CREDENTIALS)
    identity = aws.client("sts", job.profile, job.region).get_caller_identity()
    return f"{identity['Arn']} (account {identity['Account']})"


def _region(job: JobConfig) -> str:
    region = aws.region(job.profile, job.region)
    if not region:
        raise DoctorFinding("no AWS region: add `region:` to the job config or set "
                            "AWS_DEFAULT_REGION")
    return region


def _role(job: JobConfig) -> str:
    assert job.role_arn
    name = job.role_arn.rsplit("/", 1)[-1]
    iam = aws.client("iam", job.profile, job.region)
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except Exception as exc:
        code = _error_code(exc)
        if code == "NoSuchEntity":
            raise DoctorFinding(f"role {name} does not exist in this account: create it (see "
                                "the README's execution role policy) or fix role_arn") from None
        if code in ("AccessDenied", "AccessDeniedException"):
            return (f"{job.role_arn} (could not read it: your identity lacks iam:GetRole, "
                    "which launching does not need)")
        raise
    trust = role.get("AssumeRolePolicyDocument", {})
    if isinstance(trust, str):
        trust = json.loads(trust)
    if "sagemaker.amazonaws.com" not in json.dumps(trust):
        raise DoctorFinding(f"role {name} does not trust sagemaker.amazonaws.com: add it to "
                            "the role's trust policy, or SageMaker cannot assume it")
    return f"{role['Arn']} trusts sagemaker.amazonaws.com"


def _s3_locations(job: JobConfig) -> list[tuple[str, str, str]]:
    """(label, uri, access) of every S3 location: "write" where the launch (this process)
    writes, "read" where the job reads, "job" where only SageMaker's role writes."""
    job_writes = "job" if job.is_cloud else "write"  # local runs write outputs themselves
    checkpoints = (job.checkpoint_uri or "").split(RUN_ID_PLACEHOLDER)[0]  # runs' prefixes' base
    found = [("record store", job.experiments_uri, "write"),
             ("config upload", job.config_uri, "write"),
             ("uploads", job.uploads_uri, "write"),
             ("outputs", job.output_uri, job_writes),
             ("checkpoints", checkpoints, job_writes),
             ("tensorboard", job.tensorboard_uri, job_writes)]
    found += [(f"channel {name}", c.uri, "read") for name, c in job.channels.items()]
    return [(label, uri, access) for label, uri, access in found
            if uri and uri.startswith("s3://")]


def _bucket(job: JobConfig, uri: str, access: str) -> str:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = aws.client("s3", job.profile, job.region)
    owner = {"ExpectedBucketOwner": job.expected_bucket_owner} if job.expected_bucket_owner \
        else {}
    try:
        s3.head_bucket(Bucket=bucket, **owner)
    except Exception as exc:
        code = _error_code(exc)
        if code in ("404", "NoSuchBucket"):
            raise DoctorFinding(f"bucket {bucket} does not exist: create it or fix {uri}") \
                from None
        if code in ("403", "AccessDenied"):
            raise DoctorFinding(f"no access to bucket {bucket}: your identity needs "
                                "s3:ListBucket on it (and the bucket's owner must be "
                                f"{job.expected_bucket_owner or 'as expected'})") from None
        raise
    if job.is_cloud:
        _same_region(job, f"bucket {bucket}", aws.bucket_region(bucket, job.profile,
                                                                  job.expected_bucket_owner))
    if access == "write":
        store = open_store(uri, **job.store_options())
        probe = f"_doctor/{_random.token_hex(4)}"
        try:
            store.write_text(probe, "sagebook doctor write check\n")
            store.delete([probe])
        except Exception as exc:
            raise DoctorFinding(f"cannot write to {uri}: your identity needs s3:PutObject and "
                                f"s3:DeleteObject there ({exc})") from None
        return f"{uri} readable and writable"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1, **owner)
    if access == "read" and not listed.get("KeyCount"):
        raise DoctorWarning(f"{uri} holds no objects: the job would start and find no data "
                            f"(sagebook upload <folder> {uri})")
    return f"{uri} readable" + (" (SageMaker writes here with the execution role)"
                                if access == "job" else "")


def _same_region(job: JobConfig, what: str, where: str | None) -> None:
    """SageMaker reads data and pulls images only in the job's own region."""
    problem = aws.region_mismatch(what, where, aws.region(job.profile, job.region))
    if problem:
        raise DoctorFinding(problem)


def _image(job: JobConfig) -> str:
    assert job.image_uri
    match = aws.ecr_image(job.image_uri)
    if not match:
        return f"{job.image_uri} is not in ECR: not checked (SageMaker pulls only from ECR)"
    _same_region(job, f"image {job.image_uri}", match["region"])
    ecr = aws.client("ecr", job.profile, match["region"])
    image_id = {"imageDigest": match["digest"]} if match["digest"] else {
        "imageTag": match["tag"] or "latest"}
    try:
        found = ecr.describe_images(registryId=match["account"], repositoryName=match["repo"],
                                    imageIds=[image_id])["imageDetails"]
    except Exception as exc:
        code = _error_code(exc)
        if code in ("RepositoryNotFoundException", "ImageNotFoundException"):
            raise DoctorFinding(f"{job.image_uri} is not in ECR ({code}): push it with "
                                "./build_and_push.sh --update-config <this config>") from None
        raise
    if not found:
        raise DoctorFinding(f"{job.image_uri} is not in ECR: push it with ./build_and_push.sh")
    return f"{job.image_uri} found ({found[0].get('imageDigest', '?')[:19]}…)"


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)

    def mark(c: Check) -> str:
        return "FAIL" if not c.ok else "warn" if c.warning else "ok  "

    return "\n".join(f"{mark(c)} {c.name:<{width}}  {c.detail}" for c in checks)


def diagnose(config_path: str, overrides: Iterable[str] = ()) -> tuple[str, bool]:
    """The report for a job config (with overrides, as `launch -o` takes them), and whether
    every check passed (warnings pass)."""
    checks = run_checks(load(config_path, overrides))
    return render(checks), all(c.ok for c in checks)

