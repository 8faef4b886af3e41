"""moto, made to run out of SageMaker capacity where a test says so.

moto implements Service Quotas for `vpc` only, and every training job it creates finds
instances. `FakeCapacity` patches its in-process backends (as fake_sagemaker.py does) so that:

- ListServiceQuotas for `sagemaker` answers the quotas a test sets (`quotas.values`, by
  instance type, named as AWS names them: "ml.X for training job usage"), or AccessDenied
  (`quotas.deny`); `answer_quotas` alone (no quotas) is what every AWS test gets;
- CreateTrainingJob on a type in `over_limit` fails with ResourceLimitExceeded, as when the
  account's quota is used up (the first `over_limit_creates` creates only, when that is set);
- a job on a type in `no_capacity` fails at its first describe with SageMaker's
  `CapacityError: Unable to provision requested ML compute capacity` reason.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from fake_sagemaker import FakeSageMaker

CAPACITY_REASON = ("CapacityError: Unable to provision requested ML compute capacity. Please "
                   "retry using a different ML instance type.")


class Quotas:
    """What ListServiceQuotas answers for `sagemaker`: `values` by instance type, or
    AccessDenied (`deny`); `calls` counts the calls."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.deny = False
        self.calls = 0


def answer_quotas(monkeypatch: pytest.MonkeyPatch) -> Quotas:
    """moto's Service Quotas answering for `sagemaker` too (every AWS test has it: a launch
    and `doctor` ask it)."""
    from moto.core.exceptions import JsonRESTError
    from moto.servicequotas.responses import ServiceQuotasResponse

    quotas = Quotas()

    def list_service_quotas(response: Any) -> str:
        quotas.calls += 1
        if quotas.deny:
            raise JsonRESTError("AccessDeniedException", "User is not authorized to perform "
                                "servicequotas:ListServiceQuotas")
        if json.loads(response.body).get("ServiceCode") != "sagemaker":
            raise JsonRESTError("NoSuchResourceException", "no such service")
        return json.dumps({"Quotas": [{
            "ServiceCode": "sagemaker", "QuotaCode": f"L-FAKE{index:04d}",
            "QuotaName": f"{itype} for training job usage", "Value": value,
        } for index, (itype, value) in enumerate(sorted(quotas.values.items()))]})

    monkeypatch.setattr(ServiceQuotasResponse, "list_service_quotas", list_service_quotas,
                        raising=False)
    return quotas


class FakeCapacity:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, sagemaker: FakeSageMaker):
        from moto.core.exceptions import JsonRESTError
        from moto.sagemaker.models import SageMakerModelBackend

        self.quotas = answer_quotas(monkeypatch)
        self.over_limit: set[str] = set()
        self.over_limit_creates: int | None = None
        self.no_capacity: set[str] = set()
        self.refused: list[str] = []  # the instance type of each create refused
        fake = self

        created = SageMakerModelBackend.create_training_job  # FakeSageMaker's

        def create(backend: Any, training_job_name: str, **kwargs: Any) -> Any:
            itype = kwargs["resource_config"]["InstanceType"]
            if itype in fake.over_limit and (fake.over_limit_creates is None
                                             or len(fake.refused) < fake.over_limit_creates):
                fake.refused.append(itype)
                raise JsonRESTError("ResourceLimitExceeded", (
                    f"The account-level service limit '{itype} for training job usage' is 1 "
                    "Instances, with current utilization of 1 Instances and a request delta of "
                    "1 Instances. Please use AWS Service Quotas to request an increase."))
            return created(backend, training_job_name, **kwargs)

        advance = sagemaker._advance

        def advance_or_fail(backend: Any, job: Any) -> None:
            if job.resource_config["InstanceType"] in fake.no_capacity and \
                    job.training_job_status == "InProgress":
                sagemaker._apply(backend, job, {
                    "status": "Failed", "secondary": "Failed", "failure_reason": CAPACITY_REASON,
                    "message": "Training job failed", "billable": 0})
                return
            advance(backend, job)

        monkeypatch.setattr(SageMakerModelBackend, "create_training_job", create)
        monkeypatch.setattr(sagemaker, "_advance", advance_or_fail)
