"""What a SageMaker training run costs, and what it could cost at most.

Cost = billable seconds × instance count × the on-demand price of the instance type in the
job's region. SageMaker bills managed spot training by fewer billable seconds (the saving is
training minus billable time), and a warm pool's retained time at the same rate.

Prices come from a dated table shipped in the package (`training_prices.json`: its source and
date inside), and from a cache that `sagebook prices --refresh` fills from the AWS Price List
API (`pricing:GetProducts`, service code AmazonSageMaker); the cache wins where it has a price.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from . import aws
from .errors import SagebookError
from .paths import cache_folder

TABLE = Path(__file__).with_name("training_prices.json")
PRICING_REGION = "us-east-1"  # the Price List API answers from us-east-1 (and ap-south-1)
_TRAINING_USAGE = re.compile(r"^[A-Z0-9]+-Train:(ml\.[a-z0-9]+\.[a-z0-9]+)$")


@dataclass(frozen=True)
class Price:
    usd_per_hour: float
    source: str  # "table" or "cache"
    date: str

    def describe(self) -> str:
        return f"${self.usd_per_hour:g}/h ({'price list' if self.source == 'cache' else 'table'}" \
               f" of {self.date})"


def cache_path() -> Path:
    return cache_folder() / "training_prices.json"


@cache
def _load(path: Path, stamp: float) -> dict[str, Any]:
    return json.loads(path.read_text())


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return _load(path, path.stat().st_mtime)
    except (OSError, ValueError):
        return None


def price(instance_type: str, region: str | None) -> Price | None:
    """The on-demand training price of `instance_type` in `region`: the refreshed cache's,
    else the shipped table's; None when neither knows it."""
    if not region:
        return None
    for source, data in (("cache", _read(cache_path())), ("table", _read(TABLE))):
        usd = ((data or {}).get("prices", {}).get(region) or {}).get(instance_type)
        if usd is not None:
            return Price(float(usd), source, str(data.get("date", "")))  # type: ignore[union-attr]
    return None


def job_cost(job: dict[str, Any], region: str | None) -> dict[str, Any] | None:
    """The cost of a finished (or running) job from its DescribeTrainingJob / Search answer;
    None without billable time or a price."""
    billable = job.get("BillableTimeInSeconds")
    resources = job.get("ResourceConfig") or {}
    instance_type, count = resources.get("InstanceType"), resources.get("InstanceCount") or 1
    if billable is None or not instance_type:
        return None
    found = price(instance_type, region)
    if found is None:
        return None
    rate = found.usd_per_hour * count / 3600
    training = job.get("TrainingTimeInSeconds") or billable
    warm = (job.get("WarmPoolStatus") or {}).get("ResourceRetainedBillableTimeInSeconds") or 0
    cost = {
        "usd": round((billable + warm) * rate, 4),
        "compute_usd": round(billable * rate, 4),
        "billable_seconds": billable, "training_seconds": training,
        "instance_type": instance_type, "instance_count": count, "region": region,
        "usd_per_hour": found.usd_per_hour, "price_source": found.source,
        "price_date": found.date,
    }
    if warm:
        cost.update(warm_pool_seconds=warm, warm_pool_usd=round(warm * rate, 4))
    if job.get("EnableManagedSpotTraining"):
        cost["spot_saved_usd"] = round(max(training - billable, 0) * rate, 4)
        cost["spot_savings_percent"] = round(100 * (1 - billable / training), 1) if training \
            else 0.0
    return cost


def worst_case(request: dict[str, Any], region: str | None) -> dict[str, Any]:
    """The most a job can cost: its longest possible time (max runtime, or for spot the max
    wait) × hosts × price, plus a warm pool kept alive after it. `usd` is None when no price
    is known for the instance type in that region."""
    resources = request["ResourceConfig"]
    stopping = request["StoppingCondition"]
    seconds = stopping.get("MaxWaitTimeInSeconds") if request.get(
        "EnableManagedSpotTraining") else None
    seconds = seconds or stopping["MaxRuntimeInSeconds"]
    seconds += resources.get("KeepAlivePeriodInSeconds") or 0
    count, instance_type = resources["InstanceCount"], resources["InstanceType"]
    found = price(instance_type, region)
    return {
        "seconds": seconds, "instance_count": count, "instance_type": instance_type,
        "region": region, "price": found,
        "usd": round(seconds * count * found.usd_per_hour / 3600, 4) if found else None,
    }


def describe_worst_case(worst: dict[str, Any]) -> str:
    hours = worst["seconds"] / 3600
    what = (f"{worst['instance_count']} × {worst['instance_type']} × {hours:g} h")
    if worst["price"] is None:
        return (f"worst case: {what}; no price known for {worst['instance_type']} in "
                f"{worst['region'] or 'an unknown region'} (sagebook prices --refresh)")
    return f"worst case: {what} at {worst['price'].describe()} = ${worst['usd']:,.2f}"


# --------------------------------------------------------------------------------------------
# The Price List API


def refresh(regions: list[str], profile: str | None = None) -> tuple[Path, int]:
    """Fetch the on-demand training prices of `regions` from the Price List API into the
    cache; returns the cache's path and how many prices it now holds."""
    from botocore.exceptions import BotoCoreError, ClientError  # only a refresh speaks to AWS

    pricing = aws.client("pricing", profile, PRICING_REGION)
    found: dict[str, dict[str, float]] = {}
    try:
        for region in regions:
            paginator = pricing.get_paginator("get_products")
            for page in paginator.paginate(ServiceCode="AmazonSageMaker", Filters=[
                    {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
                    {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "ML Instance"}]):
                for item in page.get("PriceList", []):
                    parsed = _training_price(json.loads(item) if isinstance(item, str) else item)
                    if parsed:
                        found.setdefault(region, {})[parsed[0]] = parsed[1]
    except (BotoCoreError, ClientError) as exc:
        raise SagebookError(f"cannot read the AWS Price List (pricing:GetProducts): {exc}") \
            from None
    path = cache_path()
    old = _read(path) or {}
    prices = {**old.get("prices", {}), **found}
    data = {
        "what": "SageMaker training, on-demand USD per instance-hour",
        "source": "AWS Price List API (pricing:GetProducts, service code AmazonSageMaker)",
        "date": _dt.date.today().isoformat(),
        "prices": prices,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    temporary.replace(path)
    return path, sum(len(v) for v in prices.values())


def _training_price(product: dict[str, Any]) -> tuple[str, float] | None:
    """(instance type, USD per hour) of a GetProducts item that prices training on demand."""
    attributes = (product.get("product") or {}).get("attributes") or {}
    match = _TRAINING_USAGE.match(attributes.get("usagetype", ""))
    if not match:
        return None
    for term in ((product.get("terms") or {}).get("OnDemand") or {}).values():
        for dimension in (term.get("priceDimensions") or {}).values():
            usd = (dimension.get("pricePerUnit") or {}).get("USD")
            if dimension.get("unit") == "Hrs" and usd is not None and float(usd) > 0:
                return match[1], float(usd)
    return None


def known_regions() -> list[str]:
    """The regions the table or the cache has prices for."""
    regions: set[str] = set()
    for data in (_read(TABLE), _read(cache_path())):
        regions.update((data or {}).get("prices", {}))
    return sorted(regions)


def table(region: str) -> tuple[dict[str, Price], str]:
    """Every known training price in `region`, and where they come from."""
    prices: dict[str, Price] = {}
    sources = []
    for source, data in (("table", _read(TABLE)), ("cache", _read(cache_path()))):
        if not data:
            continue
        sources.append(f"{source}: {data.get('source')} ({data.get('date')})")
        for instance_type, usd in (data.get("prices", {}).get(region) or {}).items():
            prices[instance_type] = Price(float(usd), source, str(data.get("date", "")))
    return prices, "\n".join(sources)
