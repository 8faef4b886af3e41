"""What AWS is asked before a SageMaker job is launched: reads only, before anything is written.

Two facts the configs cannot state and SageMaker would otherwise find out minutes into a job:

- Regions. SageMaker reads channels, writes outputs and checkpoints, and pulls the image only
  in the job's own region. Every bucket the request names (outside its tags, environment and
  hyperparameters, which the job never hands to SageMaker) and the ECR image are compared with
  the job's region; each mismatch is one problem naming the config key that put it there.
- The image's digest. A tag (`:latest`) is resolved with ECR DescribeImages and the job runs
  `repo@sha256:…`, so the request (and the record) say which bytes ran and a rerun gets them
  again. A digest-pinned URI is kept as is; an image outside ECR is not asked about. An image
  ECR does not have is a config problem; one that cannot be looked up (no
  ecr:DescribeImages) runs by its tag, with a warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import aws
from .. import request as request_mod
from ..config import LaunchConfig
from ..errors import ConfigError, format_problem
from . import Job

# Request fields whose S3 URIs SageMaker never reads or writes itself.
NOT_JOB_LOCATIONS = ("Tags", "Environment", "HyperParameters")


def check_regions(job: Job, region: str) -> None:
    """One problem per bucket or image outside the job's region; raises ConfigError."""
    cfg = job.config
    problems = []
    regions: dict[str, str | None] = {}  # one HeadBucket per bucket
    for path, uri in _locations(job.request):
        bucket = uri.removeprefix("s3://").split("/", 1)[0]
        if bucket not in regions:
            regions[bucket] = aws.bucket_region(bucket, cfg.job.profile,
                                                cfg.job.expected_bucket_owner)
        problem = aws.region_mismatch(f"bucket {bucket}", regions[bucket], region)
        if problem:
            key = _config_key(cfg, job.request, path)
            line = format_problem(cfg.where(*key), _dotted(key), problem)
            if line not in problems:
                problems.append(line)
    image = job.request["AlgorithmSpecification"].get("TrainingImage")
    parts = aws.ecr_image(image)
    problem = parts and aws.region_mismatch(f"image {image}", parts["region"], region)
    if problem:
        problems.append(format_problem(cfg.where("image_uri"), "job.image_uri", problem))
    if problems:
        raise ConfigError(problems)


def pin_image(job: Job) -> dict[str, Any]:
    """What the record keeps of the image: `uri` (what the job runs: pinned by digest when
    ECR could resolve it), `digest`, and `tag` when the config named one."""
    image = job.request["AlgorithmSpecification"].get("TrainingImage") or ""
    parts = aws.ecr_image(image)
    if parts is None:
        return {"uri": image, "digest": None}
    if parts["digest"]:
        return {"uri": image, "digest": parts["digest"]}
    # botocore: loaded by the first AWS call
    from botocore.exceptions import BotoCoreError, ClientError

    tag = parts["tag"] or "latest"
    ecr = aws.client("ecr", job.config.job.profile, parts["region"])
    problem = "ECR listed no image for the tag"
    try:
        found = ecr.describe_images(registryId=parts["account"], repositoryName=parts["repo"],
                                    imageIds=[{"imageTag": tag}])["imageDetails"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("RepositoryNotFoundException", "ImageNotFoundException"):
            raise ConfigError.one(
                job.config.where("image_uri"), "job.image_uri",
                f"{image} is not in ECR ({code}): push it with ./build_and_push.sh "
                f"--update-config {job.config.job_path}") from None
        found, problem = [], f"{code}: {exc}"
    except BotoCoreError as exc:
        found, problem = [], str(exc)
    if not found:
        job.echo(f"[sagebook] warning: cannot resolve {image} to its digest ({problem}): the "
                 "job runs the tag as ECR holds it when the job starts, and a rerun may get "
                 "other bytes (ecr:DescribeImages lets sagebook pin it)")
        return {"uri": image, "digest": None, "tag": tag}
    digest = found[0]["imageDigest"]
    repository = image.rsplit(":", 1)[0] if parts["tag"] else image
    return {"uri": f"{repository}@{digest}", "digest": digest, "tag": tag}


def _locations(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple, str]]:
    """(path in the request, URI) of every S3 location the job reads or writes."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not path and key in NOT_JOB_LOCATIONS:
                continue
            yield from _locations(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _locations(item, (*path, index))
    elif isinstance(value, str) and value.startswith("s3://"):
        yield path, value


def _config_key(cfg: LaunchConfig, request: dict[str, Any], path: tuple) -> tuple[str, ...]:
    """The job config key that put the location at `path` of the request there: the request's
    own mapping (`request.config_key`), except for what sagebook uploaded, which names where
    the uploads go."""
    job = cfg.job
    records = ("experiments_uri",)
    uploads = ("uploads_uri",) if job.uploads_uri else records if str(
        job.experiments_uri).startswith("s3://") else ("config_uri",)
    if path[:1] == ("InputDataConfig",):
        channel = request["InputDataConfig"][path[1]]["ChannelName"]
        if channel == "config":
            return ("config_uri",) if job.config_uri else records
        if channel == "code":
            return uploads
        if channel in job.channels:  # a local folder is where it was uploaded to
            return ("channels", channel) if job.channels[channel].uri.startswith(
                "s3://") else uploads
    key = request_mod.config_key(cfg, request, path)[1]
    return tuple(str(part) for part in key) or ("request", *(str(p) for p in path))


def _dotted(key: tuple[str, ...]) -> str:
    return "job." + ".".join(key)
