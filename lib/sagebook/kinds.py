"""Which instance types sagebook runs, and what each needs: the one registry of instance kinds.

    local                  the training code as local processes under the container contract
    local-docker|local-gpu the built image under Docker, as SageMaker runs it
    ml.*                   SageMaker, through boto3

A leaf (layer 0): every rule about an instance type lives in its entry here — which backend
runs it (named as `module:Class`, imported only when a job runs), whether the job is remote,
whether it needs an image and a role, how many hosts it can run — and config validation, the
form, the record views and doctor ask this registry without loading any backend. Which `ml.*`
types exist is the SageMaker service model's to say (its enum, checked with every request).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Local hosts are processes (or containers) on one machine, which they share: a few are enough
# to rehearse a distributed job's wiring.
LOCAL_MAX_HOSTS = 8


@dataclass(frozen=True)
class InstanceKind:
    """A family of instance types and what sagebook needs to run a job on one."""

    name: str
    pattern: re.Pattern[str]
    backend: str  # module:Class
    remote: bool  # the job runs elsewhere and outlives the launching process
    needs_image: bool
    needs_role: bool
    max_hosts: int | None  # None: as many as SageMaker allows (the service model's limit)
    label: str  # how a message or the form names the types it serves
    # The listed SageMaker type a request for a local type is checked as: a local run
    # rehearses the cloud request, its instance type aside.
    checked_as: str | None = None

    def serves(self, instance_type: str) -> bool:
        return bool(self.pattern.search(instance_type))


_KINDS: list[InstanceKind] = [
    InstanceKind("local", re.compile(r"^local$"), "sagebook.backends.local:LocalBackend",
                 remote=False, needs_image=False, needs_role=False, max_hosts=LOCAL_MAX_HOSTS,
                 label="local", checked_as="ml.m5.large"),
    InstanceKind("local-docker", re.compile(r"^local-docker$"),
                 "sagebook.backends.docker:DockerBackend", remote=False, needs_image=True,
                 needs_role=False, max_hosts=LOCAL_MAX_HOSTS, label="local-docker",
                 checked_as="ml.m5.large"),
    InstanceKind("local-gpu", re.compile(r"^local-gpu$"), "sagebook.backends.docker:DockerBackend",
                 remote=False, needs_image=True, needs_role=False, max_hosts=1,
                 label="local-gpu", checked_as="ml.g5.xlarge"),
    InstanceKind("sagemaker", re.compile(r"^ml\."), "sagebook.backends.sagemaker:SageMakerBackend",
                 remote=True, needs_image=True, needs_role=True, max_hosts=None,
                 label="ml.<family>.<size>"),
]


def kind_of(instance_type: str) -> InstanceKind | None:
    """The registry's entry for `instance_type`, or None when no backend runs it."""
    for kind in _KINDS:
        if kind.serves(instance_type):
            return kind
    return None


def is_remote(instance_type: str) -> bool:
    """Whether a run on this type is a cloud job (one that `list`, `attach` and `stop` ask
    SageMaker about), rather than a process on the launching machine."""
    kind = kind_of(instance_type)
    return bool(kind and kind.remote)


def register(kind: InstanceKind) -> None:
    """Add a kind of instance type (checked before the built-in ones)."""
    _KINDS.insert(0, kind)


def offered_types() -> list[str]:
    """What the form offers for `instance_type`: each local kind, then every SageMaker type
    the service model lists."""
    from .apicheck import allowed_values  # the service model's check: only the form asks

    return [kind.label for kind in _KINDS if not kind.remote] + allowed_values(
        "CreateTrainingJob", ("ResourceConfig", "InstanceType"))


def describe_kinds() -> str:
    """The instance types sagebook runs, for a message: `local, local-docker, …, ml.<…>`."""
    return ", ".join(kind.label for kind in _KINDS)
