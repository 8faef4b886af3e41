"""moto, made to run out of SageMaker capacity where a test says so.

moto implements Service Quotas for `vpc` only, and every training job it creates finds
instances. `FakeCapacity` patches its in-process backends (as fake_sagemaker.py does) so that:

- ListServiceQuotas for `sagemaker` answers the quotas a test sets (`quotas`, by instance
  type, named as AWS names them: "ml.X for training job usage"), or AccessDenied (`deny`);
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


class FakeCapacity:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, sagemaker: FakeSageMaker):
        from moto.core.exceptions import JsonRESTError
        from moto.sagemaker.models import SageMakerModelBackend
        from moto.servicequotas.responses import ServiceQuotasResponse

        self.quotas: dict[str, float] = {}
        self.deny = False
        self.over_limit: set[str] = set()
        self.over_limit_creates: int | None = None
        self.no_capacity: set[str] = set()
        self.refused: list[str] = []  # the instance type of each create refused
        self.quota_calls = 0
        fake = self

        def list_service_quotas(response: Any) -> str:
            fake.quota_calls += 1
            if fake.deny:
                raise JsonRESTError("AccessDeniedException", "User is not authorized to perform "
                                    "servicequotas:ListServiceQuotas")
            if json.loads(response.body).get("ServiceCode") != "sagemaker":
                raise JsonRESTError("NoSuchResourceException", "no such service")
            return json.dumps({"Quotas": [{
                "ServiceCode": "sagemaker", "QuotaCode": f"L-FAKE{index:04d}",
                "QuotaName": f"{itype} for training job usage", "Value": value,
            } for index, (itype, value) in enumerate(sorted(fake.quotas.items()))]})

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

        monkeypatch.setattr(ServiceQuotasResponse, "list_service_quotas", list_service_quotas,
                            raising=False)
        monkeypatch.setattr(SageMakerModelBackend, "create_training_job", create)
        monkeypatch.setattr(sagemaker, "_advance", advance_or_fail)
