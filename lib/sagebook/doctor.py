"""`sagebook doctor`: check, before a first cloud launch, everything AWS must grant it.

A first SageMaker launch usually fails on something outside the code: no credentials, no
region, a role SageMaker cannot assume, a bucket the user cannot write, an image that was never
pushed. Each check here makes one cheap read-only call (and one small write-then-delete in the
record store) and says what to do when it fails.
"""

from __future__ import annotations

import json
import secrets as _random
from collections.abc import Callable
from dataclasses import dataclass

from . import aws
from .config import JobConfig, LaunchConfig


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code", type(exc).__name__)


def run_checks(cfg: LaunchConfig) -> list[Check]:
    """Every check for this job config, in the order a user would fix them."""
    job = cfg.job
    checks: list[Check] = []

    def check(name: str, probe: Callable[[], str]) -> bool:
        try:
            checks.append(Check(name, True, probe()))
            return True
        except DoctorFinding as finding:
            checks.append(Check(name, False, str(finding)))
        except Exception as exc:  # any AWS or network failure is a finding, not a crash
            checks.append(Check(name, False, f"{_error_code(exc)}: {exc}"))
        return False

    if job.instance_type == "local":
        check("local /opt/ml", lambda: _local_opt_ml(cfg))
        if not _s3_locations(job):
            return checks  # a local run of local data needs nothing from AWS
    if not check("credentials", lambda: _credentials(job)):
        return checks
    if not check("region", lambda: _region(job)):
        return checks
    if job.role_arn:
        check("execution role", lambda: _role(job))
    for label, uri in _s3_locations(job):
        check(label, lambda uri=uri, label=label: _bucket(job, uri, write=label == "record store"))
    if job.image_uri and job.is_cloud:
        check("training image", lambda: _image(job))
    return checks


class DoctorFinding(Exception):
    """A check failed in a way we can explain."""


def _local_opt_ml(cfg: LaunchConfig) -> str:
    from pathlib import Path

    from .backends import namespace

    mode = namespace.support()
    problem = None if mode.available else namespace.fallback_problem(
        Path(cfg.job.source_dir), mode.detail)
    if problem:
        raise DoctorFinding(problem)
    return namespace.host_environment_note()


def _credentials(job: JobConfig) -> str:
    session = aws.session(job.profile, job.region)
    if session.get_credentials() is None:
        raise DoctorFinding(
            "no AWS credentials found: run `aws configure` or `aws sso login`, set AWS_PROFILE, "
            "or give a `profile:` in the job config")
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


def _s3_locations(job: JobConfig) -> list[tuple[str, str]]:
    found = [("record store", job.experiments_uri), ("config upload", job.config_uri),
             ("outputs", job.output_uri), ("checkpoints", job.checkpoint_uri)]
    found += [(f"channel {name}", c.uri) for name, c in job.channels.items()]
    return [(label, uri) for label, uri in found if uri and uri.startswith("s3://")]


def _bucket(job: JobConfig, uri: str, write: bool) -> str:
    from .stores import open_store

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
    if not write:
        s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1, **owner)
        return f"{uri} readable"
    store = open_store(uri, **job.store_options())
    probe = f"_doctor/{_random.token_hex(4)}"
    try:
        store.write_text(probe, "sagebook doctor write check\n")
        store.delete([probe])
    except Exception as exc:
        raise DoctorFinding(f"cannot write to {uri}: your identity needs s3:PutObject and "
                            f"s3:DeleteObject there ({exc})") from None
    return f"{uri} readable and writable"


def _image(job: JobConfig) -> str:
    assert job.image_uri
    match = aws.ecr_image(job.image_uri)
    if not match:
        return f"{job.image_uri} is not in ECR: not checked (SageMaker pulls only from ECR)"
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
    return "\n".join(f"{'ok ' if c.ok else 'FAIL'} {c.name:<{width}}  {c.detail}" for c in checks)


def diagnose(config_path: str) -> tuple[str, bool]:
    """The report for a job config, and whether every check passed."""
    from .config import load

    checks = run_checks(load(config_path))
    return render(checks), all(c.ok for c in checks)

