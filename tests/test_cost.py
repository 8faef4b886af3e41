"""Cost per run: billable seconds × instances × the on-demand price, spot savings, warm pools;
prices from the shipped table or a cache refreshed from the Price List API; the worst case
in --dry-run, and max_cost refusing a launch before anything is uploaded."""

from __future__ import annotations

import json

import pytest
from fake_pricing import FakePricing

from sagebook import cli, prices
from sagebook.stores import open_store

from conftest import ROLE, add_run, sagebook

# DescribeTrainingJob answers as SageMaker gives them (the fields cost reads)
ON_DEMAND = {"TrainingJobName": "a", "BillableTimeInSeconds": 3600, "TrainingTimeInSeconds": 3600,
             "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2}}
SPOT = {"TrainingJobName": "b", "EnableManagedSpotTraining": True,
        "BillableTimeInSeconds": 1200, "TrainingTimeInSeconds": 3000,
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1}}
WARM_POOL = {"TrainingJobName": "c", "BillableTimeInSeconds": 1800,
             "TrainingTimeInSeconds": 1800,
             "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                                "KeepAlivePeriodInSeconds": 900},
             "WarmPoolStatus": {"Status": "Terminated",
                                "ResourceRetainedBillableTimeInSeconds": 900}}


@pytest.fixture(autouse=True)
def no_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_cost_of_on_demand_spot_and_warm_pool_jobs():
    cost = prices.job_cost(ON_DEMAND, "us-east-1")
    assert cost["usd"] == pytest.approx(2 * 0.23, abs=1e-4) and cost["price_source"] == "table"
    assert cost["price_date"] == "2026-09-24" and "spot_saved_usd" not in cost
    spot = prices.job_cost(SPOT, "us-east-1")
    assert spot["usd"] == pytest.approx(1200 / 3600 * 1.408, abs=1e-4)
    assert spot["spot_saved_usd"] == pytest.approx(1800 / 3600 * 1.408, abs=1e-4)
    assert spot["spot_savings_percent"] == 60.0
    warm = prices.job_cost(WARM_POOL, "ap-south-1")
    assert warm["compute_usd"] == pytest.approx(0.5 * 0.242, abs=1e-4)
    assert warm["warm_pool_usd"] == pytest.approx(0.25 * 0.242, abs=1e-4)
    assert warm["usd"] == pytest.approx(0.75 * 0.242, abs=1e-4)
    assert prices.job_cost(ON_DEMAND, "eu-north-1") is None  # no price: no invented cost
    assert prices.job_cost({**ON_DEMAND, "BillableTimeInSeconds": None}, "us-east-1") is None


def test_the_shipped_table_names_its_source_and_date():
    table = json.loads(prices.TABLE.read_text())
    assert "AmazonSageMaker" in table["source"] and table["date"] == "2026-09-24"
    assert all(t.startswith("ml.") and usd > 0 for region in table["prices"].values()
               for t, usd in region.items())


def test_refresh_reads_the_price_list_api_and_its_cache_wins(aws, monkeypatch, capsys):
    with FakePricing() as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", fake.url)
        code = cli.main(["prices", "--refresh", "--region", "us-east-1", "--region",
                         "eu-west-1"])
        out = capsys.readouterr()
    assert code == 0, out.err
    # one paginated query per region, for SageMaker's ML instances
    queries = [c for c in fake.calls if c["target"].endswith("GetProducts")]
    assert len(queries) >= 4 and {c["ServiceCode"] for c in queries} == {"AmazonSageMaker"}
    assert {f["Value"] for c in queries for f in c["Filters"] if f["Field"] == "regionCode"} \
        == {"us-east-1", "eu-west-1"}
    cached = json.loads(prices.cache_path().read_text())
    assert cached["prices"] == {  # training prices only: not notebooks, hosting, processing
        "us-east-1": {"ml.m5.xlarge": 0.25, "ml.p4d.24xlarge": 37.688},
        "eu-west-1": {"ml.m5.xlarge": 0.257, "ml.g5.xlarge": 1.582}}
    assert prices.price("ml.m5.xlarge", "us-east-1").source == "cache"  # cache over table
    assert prices.price("ml.m5.large", "us-east-1").source == "table"  # the table fills in
    assert prices.job_cost(ON_DEMAND, "eu-west-1")["usd"] == pytest.approx(2 * 0.257, abs=1e-4)
    assert "ml.p4d.24xlarge" in out.out and "price list of" in out.out


@pytest.mark.slow
def test_cost_is_recorded_listed_totalled_and_shown(cloud_config, fake, bucket, capsys):
    fake.script({"status": "Completed", "secondary": "Completed", "after": 5,
                 "billable": 1800})
    result = sagebook("launch", str(cloud_config(instance_count=2)), "--wait")
    assert result.returncode == 0, result.stderr
    assert "cost $0.12" in result.stdout  # 1800 s × 2 × $0.115/h
    store = open_store(f"s3://{bucket}/records")
    add_run(store, "digits-mlp", status="Completed")  # a local run: no cost
    code = cli.main(["list", "--store", store.uri])
    out = capsys.readouterr()
    assert code == 0 and "COST" in out.out.splitlines()[0] and "$0.12" in out.out
    assert "cost: $0.12 over 1 runs with a known cost (digits-mlp $0.12 in 1)" in out.err
    code = cli.main(["list", "--store", store.uri, "--json", "--where", "cost>0.1"])
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["cost"] == pytest.approx(0.115, abs=1e-4)
    code = cli.main(["show", row["run_id"], "--store", store.uri])
    assert "cost:        $0.12 (1800 s billable × 2 × ml.m5.large at $0.115/h in us-east-1, " \
           "table of 2026-09-24)" in capsys.readouterr().out


def test_dry_run_prints_the_worst_case(cloud_config, fake, bucket):
    config = cloud_config(spot=True, max_runtime="2h", max_wait="3h", instance_count=2,
                          checkpoint_uri=f"s3://{bucket}/ckpt")
    result = sagebook("launch", str(config), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "worst case: 2 × ml.m5.large × 3 h at $0.115/h (table of 2026-09-24) = $0.69" \
        in result.stderr


def test_max_cost_refuses_before_anything_is_uploaded(cloud_config, fake, bucket, s3, tmp_path):
    source = tmp_path / "data"
    source.mkdir()
    (source / "train.csv").write_text("a,b\n1,2\n")
    config = cloud_config(max_cost=1.0, max_runtime="10h", instance_count=2,
                          channels={"train": str(source)}, role_arn=ROLE)
    result = sagebook("launch", str(config))
    assert result.returncode == 2
    assert ("job.max_cost: worst case: 2 × ml.m5.large × 10 h at $0.115/h (table of "
            "2026-09-24) = $2.30, above max_cost $1.00") in result.stderr
    assert "Traceback" not in result.stderr
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # no record, no upload
    assert fake.created == []
    assert sagebook("launch", str(cloud_config(max_cost=3.0, max_runtime="10h",
                                               instance_count=2)), "--dry-run").returncode == 0
