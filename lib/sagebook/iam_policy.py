"""`sagebook iam-policy`: the IAM policies SageMaker jobs need, filled in for a job config.

Each policy is written once, in `policies/<kind>.json` with `BUCKET`, `ACCOUNT` and `REGION`
as placeholders. README's policy blocks are those texts (tests/test_walkthrough.py compares
them) and the walk-through's `aws iam` steps take this command's output, so the policy a
user reads, the one the tests check and the one applied to the role cannot drift apart.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .config import JobConfig, load
from .errors import ArgumentError, ConfigError

POLICIES = Path(__file__).with_name("policies")
KINDS = ("execution", "launcher", "trust")
PLACEHOLDER = re.compile(r"\b(BUCKET|ACCOUNT|REGION)\b")
ROLE_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/")
# S3's and AWS's own rules for the names that go into the policy's ARNs
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REGION_NAME = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")


def template(kind: str) -> str:
    """The policy as README shows it, placeholders and all."""
    return (POLICIES / f"{kind}.json").read_text()


def policy(kind: str, config: str | None) -> tuple[str, list[str]]:
    """The `kind` policy with the config's bucket, account and region in place of the
    placeholders, and a note for each S3 location of the config it does not let SageMaker
    read (a bucket or prefix outside the example layout), so the gap is seen before a job
    fails on it."""
    text = template(kind)
    if not PLACEHOLDER.search(text):
        return text, []
    if config is None:
        raise ArgumentError.one("iam-policy", None, f"the {kind} policy names your bucket, "
                              "account and region: give the job config with -c CONFIG")
    loaded = load(config)
    values = _values(loaded.job, str(loaded.job_path))

    def fill(policy_text: str) -> str:
        return PLACEHOLDER.sub(lambda m: values[m[1]], policy_text)

    readable = _readable_prefixes(fill(template("execution")))
    notes = [f"{loaded.where(*key)}: {'.'.join(key)}: {uri} is outside what the execution "
             f"role may read ({', '.join(readable)}): add it to the policy"
             for key, uri in _locations(loaded.job)
             if not any(uri.startswith(prefix) for prefix in readable)]
    return fill(text), notes


def _values(job: JobConfig, where: str) -> dict[str, str]:
    """BUCKET (the record store's, or the first s3:// location's), ACCOUNT (the execution
    role's) and REGION (the job's), each refused with the key to set when missing."""
    problems = []
    buckets = [uri.removeprefix("s3://").split("/")[0] for _, uri in _locations(job)]
    if not buckets:
        problems.append("experiments_uri: no s3:// location in this config: the policy's "
                        "bucket is the record store's (experiments_uri: s3://BUCKET/…)")
    elif not BUCKET_NAME.match(buckets[0]):
        problems.append(f"experiments_uri: {buckets[0]!r} is not an S3 bucket name")
    account = ROLE_ACCOUNT.match(job.role_arn or "")
    if account is None:
        problems.append("role_arn: the account comes from the execution role's ARN "
                        "(arn:aws:iam::ACCOUNT:role/NAME): set role_arn")
    if not job.region:
        problems.append("region: the policy names the job's region: set region")
    elif not REGION_NAME.match(job.region):
        problems.append(f"region: {job.region!r} is not an AWS region name")
    if problems:
        raise ConfigError([f"{where}: {problem}" for problem in problems])
    return {"BUCKET": buckets[0], "ACCOUNT": account[1], "REGION": job.region}


def _locations(job: JobConfig) -> list[tuple[tuple[str, ...], str]]:
    """The config's s3:// locations by key, the record store first."""
    named = [(("experiments_uri",), job.experiments_uri), (("config_uri",), job.config_uri),
             (("output_uri",), job.output_uri), (("uploads_uri",), job.uploads_uri),
             (("checkpoint_uri",), job.checkpoint_uri)]
    named += [(("channels", name, "uri"), channel.uri) for name, channel in job.channels.items()]
    return [(key, str(uri)) for key, uri in named if uri and str(uri).startswith("s3://")]


def _readable_prefixes(execution_policy: str) -> list[str]:
    """The s3:// prefixes the execution policy lets SageMaker read (`s3:GetObject` on
    `arn:aws:s3:::BUCKET/prefix/*`)."""
    prefixes = []
    for statement in json.loads(execution_policy)["Statement"]:
        actions = statement["Action"]
        if "s3:GetObject" not in (actions if isinstance(actions, list) else [actions]):
            continue
        resources = statement["Resource"]
        for resource in resources if isinstance(resources, list) else [resources]:
            if resource.startswith("arn:aws:s3:::") and resource.endswith("*"):
                prefixes.append("s3://" + resource.removeprefix("arn:aws:s3:::")[:-1])
    return prefixes
