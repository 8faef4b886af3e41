"""What the whole-model request check adds to a launch: `request.check` against every
constraint of botocore's SageMaker model (apicheck), plus importing the checker.

Measured in fresh processes, as a launch pays it: the launch's own path up to its first write
(`launch.plan`, what `--dry-run` runs) for the local and the cloud example configs, timing the
import of `sagebook.apicheck` (after everything else a launch imports) and each call of
`request.check`. With the model's derived cache in place (every launch after the first), and
with none (the first launch after installing or upgrading botocore), informational.
Target: at most 20 ms added per launch.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from run import Row

REPO = Path(__file__).resolve().parents[1]
REPEATS = 7
TARGET_S = 0.020

CHILD = textwrap.dedent("""
    import json, sys, time
    import sagebook.backends, sagebook.config, sagebook.record, sagebook.stores  # the rest
    start = time.perf_counter()
    import sagebook.apicheck
    imported = time.perf_counter() - start
    from sagebook import launch, request
    checks = []
    original = request.check
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            checks.append(time.perf_counter() - start)
    request.check = timed
    start = time.perf_counter()
    launch.plan(sys.argv[1], sys.argv[2:], echo=lambda line: None)
    planned = time.perf_counter() - start
    print(json.dumps({"import": imported, "check": sum(checks), "plan": planned}))
""")


def _measure(config: Path, overrides: list[str], env: dict[str, str], cold: bool
             ) -> dict[str, float]:
    run_env = dict(env)
    if cold:
        run_env["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="sagebook-bench-cold-")
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, str(config), *overrides],
                             env=run_env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"bench_apicheck: the plan failed:\n{out.stderr[-2000:]}")
        return json.loads(out.stdout)
    finally:
        if cold:
            shutil.rmtree(run_env["XDG_CACHE_HOME"], ignore_errors=True)


def run() -> list[Row]:
    scratch = Path(tempfile.mkdtemp(prefix="sagebook-bench-apicheck-"))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEBOOK_"))},
           "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true",
           "SAGEBOOK_WORK_DIR": str(scratch / "work")}
    cases = {
        "local example": (REPO / "configs/sagemaker_config.local.yaml",
                          [f"job.experiments_uri={scratch / 'records'}"]),
        "cloud example": (REPO / "configs/sagemaker_config.yaml", []),
    }
    rows = []
    try:
        for label, (config, overrides) in cases.items():
            _measure(config, overrides, env, cold=False)  # fills the cache, warms the files
            warm = [_measure(config, overrides, env, cold=False) for _ in range(REPEATS)]
            cold = [_measure(config, overrides, env, cold=True) for _ in range(3)]
            # the plan with the check against the same plan without it, in the same processes
            added = statistics.median(m["import"] + m["check"] for m in warm)
            plan = statistics.median(m["import"] + m["plan"] for m in warm)
            rows.append(Row(f"launch plan with the model check vs without, {label} "
                            f"(+{added * 1000:.0f} ms)", plan, plan - added, "s", "<= +20 ms",
                            added <= TARGET_S))
            cold_added = statistics.median(m["import"] + m["check"] for m in cold)
            cold_plan = statistics.median(m["import"] + m["plan"] for m in cold)
            rows.append(Row(f"  the same, first launch after a botocore upgrade "
                            f"(+{cold_added * 1000:.0f} ms)", cold_plan, cold_plan - cold_added,
                            "s", "informational", True))
        return rows
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
