"""Several hosts on one machine: `instance_count: N` under `local` runs algo-1…algo-N, each with
its own /opt/ml, reaching the master on the loopback; a sharded channel is split as SageMaker
splits it; logs are kept per host; one failing host fails the job and stops the others.
(`local-docker`'s container per host is in test_docker_backend.py.)"""

from __future__ import annotations

import json
import os
import tarfile
import textwrap
from pathlib import Path

import pytest

from conftest import manifest, runs, sagebook

# Each host sends rank+1 to the master, which sums and answers; every host checks the sum.
ALL_REDUCE = textwrap.dedent("""\
    import json, os, socket, sys, time
    base = '/opt/ml/'
    host, hosts = os.environ['SM_CURRENT_HOST'], json.loads(os.environ['SM_HOSTS'])
    rank, count = int(os.environ['SM_CURRENT_HOST_RANK']), int(os.environ['SM_HOST_COUNT'])
    master = (os.environ['SM_MASTER_ADDR'], int(os.environ['SM_MASTER_PORT']))
    config = json.load(open(base + 'input/config/resourceconfig.json'))
    assert config['current_host'] == host and config['hosts'] == hosts, config
    if json.load(open(base + 'input/config/hyperparameters.json')).get('fail_on') == host:
        open(base + 'output/failure', 'w').write(f'{host} gave up')
        sys.exit(3)
    if rank == 0:
        server = socket.create_server(master)
        peers = [server.accept()[0] for _ in range(count - 1)]
        total = 1 + sum(int(p.recv(64)) for p in peers)
        for p in peers:
            p.sendall(str(total).encode())
    else:
        for _ in range(200):  # the master may not listen yet
            try:
                conn = socket.create_connection(master)
                break
            except OSError:
                time.sleep(0.05)
        conn.sendall(str(rank + 1).encode())
        total = int(conn.recv(64))
    assert total == count * (count + 1) // 2, total
    print(f'{host} all-reduce total={total}', flush=True)
    shard = sorted(os.listdir(base + 'input/data/shards'))
    open(base + f'model/{host}.json', 'w').write(json.dumps(
        {'total': total, 'shard': shard, 'cpus': sorted(os.sched_getaffinity(0))}))
    open(base + 'output/data/' + host, 'w').write('done')
""")


@pytest.fixture
def cluster_config(make_config, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(ALL_REDUCE)
    shards = tmp_path / "shards"
    shards.mkdir()
    for n in range(7):
        (shards / f"part-{n}.csv").write_text(f"{n}\n")

    def make(count, **changes):
        changes.setdefault("channels", {"shards": {"uri": str(shards),
                                                   "distribution": "ShardedByS3Key"}})
        return make_config(source_dir=str(code), training_schema=None, instance_count=count,
                           **changes)
    return make


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.slow
def test_hosts_exchange_data_and_each_keeps_its_log(cluster_config, tmp_path, count):
    result = sagebook("launch", str(cluster_config(count)), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Completed"
    hosts = [f"algo-{n}" for n in range(1, count + 1)]
    expected = count * (count + 1) // 2
    for host in hosts:
        assert f"{host} all-reduce total={expected}" in (run / f"logs/{host}.log").read_text()
        assert f"[{host}] {host} all-reduce total={expected}" in result.stdout  # live, prefixed
    # the model of every host in one archive, as SageMaker aggregates them
    with tarfile.open(m["model_artifact"]) as tar:
        seen = {name.removesuffix(".json"): json.load(tar.extractfile(name))
                for name in tar.getnames()}
    assert sorted(seen) == hosts and {s["total"] for s in seen.values()} == {expected}
    with tarfile.open(m["output_artifact"]) as tar:
        assert sorted(tar.getnames()) == hosts
    # each host on its own share of this machine's CPUs, as on an instance of its own
    ours = sorted(os.sched_getaffinity(0))
    assert {h: s["cpus"] for h, s in seen.items()} == m["host_cpus"]
    assert sorted(c for s in seen.values() for c in s["cpus"]) == (
        ours if len(ours) >= count else sorted(ours[n % len(ours)] for n in range(count)))
    if count == 3:  # the sharded channel, file by file: the sorted keys dealt out in turn
        assert {h: s["shard"] for h, s in seen.items()} == {
            "algo-1": ["part-0.csv", "part-3.csv", "part-6.csv"],
            "algo-2": ["part-1.csv", "part-4.csv"],
            "algo-3": ["part-2.csv", "part-5.csv"]}


@pytest.mark.slow
def test_a_failing_host_fails_the_job_and_stops_the_others(cluster_config, tmp_path):
    # algo-1 waits for a peer that never comes, algo-3 for a master that never answers:
    # only the launcher stopping them ends the run.
    result = sagebook("launch", str(cluster_config(3)), "-o", "training.fail_on=algo-2",
                      timeout=90)
    assert result.returncode == 1, result.stdout + result.stderr
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    assert m["status"] == "Failed" and m["exit_code"] == 3
    assert m["failure_reason"] == "algo-2 gave up" and m["failed_host"] == "algo-2"
    assert "algo-2 failed (exit code 3" in result.stdout and "stopping the others" in result.stdout
    assert {p.name for p in (run / "logs").iterdir()} == {"algo-1.log", "algo-2.log",
                                                          "algo-3.log"}



@pytest.mark.slow
def test_the_example_trains_data_parallel_with_results_shaped_as_on_one_host(make_config,
                                                                             tmp_path):
    result = sagebook("launch", str(make_config(instance_count=2)), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = runs(tmp_path / "experiments")
    m = manifest(run)
    logs = {h: (run / f"logs/{h}.log").read_text() for h in ("algo-1", "algo-2")}
    assert "host=algo-1 of 2" in logs["algo-1"] and "host=algo-2 of 2" in logs["algo-2"]

    def validation_lines(log):
        return [" ".join(w for w in line.split() if not w.startswith("train_loss"))
                for line in log.splitlines() if line.startswith("epoch=")]
    # parameters averaged every epoch: both hosts hold one model, so validate alike
    assert validation_lines(logs["algo-1"]) == validation_lines(logs["algo-2"])
    assert len(validation_lines(logs["algo-1"])) == 2
    with tarfile.open(m["model_artifact"]) as tar:  # what one host writes, once
        assert sorted(tar.getnames()) == ["metrics.json", "model.joblib", "training_config.json"]
    assert m["final_metrics"]["val_accuracy"] > 0.8


def test_dry_run_and_doctor_warn_about_hosts_that_would_pay_twice(make_config, cluster_config):
    replicated = make_config(name="replicated.yaml", instance_count=3)
    dry = sagebook("launch", str(replicated), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "warning: 3 hosts, distribution: none, and every channel FullyReplicated" in dry.stderr
    doctor = sagebook("doctor", str(replicated))
    assert doctor.returncode == 0  # a warning passes: the code may split the work itself
    assert "warn hosts" in doctor.stdout and "pays 3 times" in doctor.stdout
    for fine in (cluster_config(2), make_config(name="torch.yaml", instance_count=2,
                                                distribution="torchrun")):
        assert "warning" not in sagebook("launch", str(fine), "--dry-run").stderr
    assert "ok   hosts" in sagebook("doctor", str(cluster_config(2))).stdout


@pytest.mark.slow
def test_an_s3_channel_is_sharded_by_key_across_hosts(cluster_config, bucket, s3, tmp_path):
    for n in range(5):
        s3.put_object(Bucket=bucket, Key=f"parts/{n % 2}/part-{n}.csv", Body=f"{n}\n".encode())
    path = cluster_config(2, channels={"shards": {"uri": f"s3://{bucket}/parts/",
                                                  "distribution": "ShardedByS3Key"}})
    result = sagebook("launch", str(path), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    work = manifest(runs(tmp_path / "experiments")[0])["work_dir"]

    def shard(host):
        folder = f"{work}/{host}/opt_ml/input/data/shards"
        return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*")
                      if p.is_file())
    # keys sorted: 0/part-0, 0/part-2, 0/part-4, 1/part-1, 1/part-3, dealt out in turn
    assert shard("algo-1") == ["0/part-0.csv", "0/part-4.csv", "1/part-3.csv"]
    assert shard("algo-2") == ["0/part-2.csv", "1/part-1.csv"]


# The first host moves the checkpoint on by one; the others leave their restored copy as it is.
ONE_STEP = textwrap.dedent("""\
    import os, pathlib
    state = pathlib.Path(os.environ.get('SAGEMAKER_BASE_DIR', '/opt/ml')) / 'checkpoints/step'
    step = int(state.read_text()) if state.is_file() else 0
    if os.environ['SM_CURRENT_HOST_RANK'] == '0':
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(str(step + 1))
    print(f"step {step + 1}", flush=True)
""")


@pytest.mark.slow
def test_a_restored_checkpoint_left_alone_does_not_overwrite_a_newer_one(make_config, tmp_path):
    code = tmp_path / "one-step"
    code.mkdir()
    (code / "train.py").write_text(ONE_STEP)
    saved = tmp_path / "checkpoints"
    path = make_config(source_dir=str(code), training_schema=None, instance_count=3,
                       checkpoint_uri=str(saved))
    first = sagebook("launch", str(path), timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    [run1] = runs(tmp_path / "experiments")
    assert (saved / run1.name / "step").read_text() == "1"
    second = sagebook("launch", str(path), "-o", f"job.resume_from={run1.name}", timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    [run2] = [r for r in runs(tmp_path / "experiments") if r != run1]
    assert (saved / run2.name / "step").read_text() == "2"  # algo-1's, not algo-3's copy of 1
    assert (saved / run1.name / "step").read_text() == "1"
