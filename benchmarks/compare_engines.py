"""The index's JSON pages and their columns against Parquet (pyarrow) and DuckDB on the same
100,000-run store: what chose the index layout (README, "The run index, and how it scales").
Not a `make bench` module: pyarrow and DuckDB are not sagebook's dependencies (`pip install
pyarrow duckdb`).

    python benchmarks/compare_engines.py [RUNS]

Builds the store as `bench_list.write_store` does (set-up, not timed), writes the same
summaries as one Parquet file (metrics and parameters as columns of their own, what a
columnar snapshot would hold), copies both into S3 (moto), and times in fresh processes:
importing the engine, reading every run, and `val_accuracy > 0.9` with the parameters, each
with the process's own peak memory. DuckDB reads S3 only through its httpfs extension, which
it downloads on first use: not measured here, as nothing here may reach the network.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEAK = "[l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]"

JSON_ALL = """
from sagebook import index
from sagebook.stores import open_store
rows = sum(1 for _ in index.entries(open_store(URI), compact_after=False))
"""
JSON_WHERE = """
from sagebook import index
from sagebook.stores import open_store
rows = sum(1 for e in index.entries(open_store(URI), compact_after=False)
           if (e.get("final_metrics") or {}).get("val_accuracy", 0) > 0.9)
"""
COLUMNS_ALL = """
from sagebook import index
from sagebook.stores import open_store
rows = sum(1 for _ in index.scan(open_store(URI), fields=["created"], compact_after=False))
"""
COLUMNS_WHERE = """
from sagebook import index
from sagebook.stores import open_store
rows = sum(1 for e in index.scan(open_store(URI), fields=["final_metrics.val_accuracy"],
                                 compact_after=False)
           if (e.get("final_metrics") or {}).get("val_accuracy", 0) > 0.9)
"""
PARQUET_ALL = """
import pyarrow.parquet as pq
rows = pq.read_table(SOURCE, filesystem=FS).num_rows
"""
PARQUET_WHERE = """
import pyarrow.parquet as pq
rows = pq.read_table(SOURCE, filesystem=FS, filters=[("m.val_accuracy", ">", 0.9)],
                     columns=["run_id", "experiment", "status", "created", "m.val_accuracy",
                              "p.learning_rate", "p.optimizer", "p.epochs"]).num_rows
"""
DUCKDB_ALL = """
import duckdb
rows = duckdb.sql(f"SELECT count(*) FROM read_parquet('{SOURCE}')").fetchall()[0][0]
"""
DUCKDB_WHERE = """
import duckdb
rows = len(duckdb.sql(f'SELECT run_id, "p.learning_rate", "p.optimizer" FROM '
                      f'read_parquet(\\'{SOURCE}\\') WHERE "m.val_accuracy" > 0.9').fetchall())
"""
DUCKDB_JSON = """
import duckdb
rows = duckdb.sql(f"SELECT count(*) FROM read_json(['{SOURCE}/*/*.jsonl', '{SOURCE}/*/*.part'], "
                  "format='newline_delimited', ignore_errors=true, union_by_name=true) "
                  "WHERE run_id IS NOT NULL").fetchall()[0][0]
"""


def s3_fs() -> str:
    return ("import pyarrow.fs, os; FS = pyarrow.fs.S3FileSystem(endpoint_override="
            "os.environ['AWS_ENDPOINT_URL'], scheme='http', access_key='b', secret_key='b', "
            "region='us-east-1')")


def timed(setup: str, body: str) -> tuple[float, float, int, float]:
    """(import seconds, query seconds, rows, own peak MB) of `setup` + `body` in a fresh
    process: the import is what `list` would pay before reading anything."""
    probe = (f"import time; t0 = time.perf_counter()\n{setup}\nt1 = time.perf_counter()\n"
             f"{body}\nt2 = time.perf_counter()\n"
             f"print(t1 - t0, t2 - t1, rows, int({PEAK}) / 1024)")
    runs = []
    for _ in range(3):
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(result.stderr[-2000:])
        out = result.stdout.split()
        runs.append((float(out[0]), float(out[1]), int(out[2]), float(out[3])))
    return min(runs, key=lambda r: r[0] + r[1])


def to_parquet(root: Path, target: Path) -> float:
    """Every summary of the index as one Parquet file; the seconds it took (what a
    compaction writing a columnar snapshot would pay each time)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, str(HERE.parent / "lib"))
    from sagebook import index
    from sagebook.stores import open_store

    start = time.perf_counter()
    rows = []
    for entry in index.entries(open_store(str(root)), compact_after=False):
        row = {k: v for k, v in entry.items() if not isinstance(v, dict | list)}
        row.update({f"m.{k}": v for k, v in (entry.get("final_metrics") or {}).items()})
        row.update({f"p.{k}": str(v) for k, v in (entry.get("params") or {}).items()})
        row["rest"] = json.dumps({k: v for k, v in entry.items() if isinstance(v, dict | list)})
        rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows), target)
    return time.perf_counter() - start


def size(path: Path, *suffixes: str) -> int:
    """Bytes of the files below `path` whose names end in one of `suffixes`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.name.endswith(suffixes))


def main() -> None:
    from moto.server import ThreadedMotoServer

    sys.path.insert(0, str(HERE))
    import bench_list

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    count = int(sys.argv[1]) if len(sys.argv) > 1 else bench_list.HUGE
    scratch = Path(tempfile.mkdtemp(prefix="sagebook-engines-"))
    root, parquet = scratch / "store", scratch / "runs.parquet"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "b",
                       "AWS_SECRET_ACCESS_KEY": "b", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                       "AWS_EC2_METADATA_DISABLED": "true"})
    import boto3

    boto3.client("s3").create_bucket(Bucket="bench")
    picked = bench_list.write_store(root, count)
    subprocess.run([sys.executable, "-m", "sagebook.cli", "list", "--store", str(root),
                    "--no-refresh", "--limit", "1"], check=True, capture_output=True)
    converted = to_parquet(root, parquet)
    bench_list.upload(root, "s3://bench/store", picked)
    boto3.client("s3").upload_file(str(parquet), "bench", "runs.parquet")
    local = f"URI = {str(root)!r}"
    s3 = "URI = 's3://bench/store'"
    cases = [
        ("JSON pages (sagebook)", "local", "all", local + "\nimport sagebook.index", JSON_ALL),
        ("JSON pages (sagebook)", "local", "where", local + "\nimport sagebook.index",
         JSON_WHERE),
        ("JSON pages (sagebook)", "S3", "all", s3 + "\nimport sagebook.index, boto3", JSON_ALL),
        ("JSON pages (sagebook)", "S3", "where", s3 + "\nimport sagebook.index, boto3",
         JSON_WHERE),
        ("JSON columns (sagebook's list)", "local", "all", local + "\nimport sagebook.index",
         COLUMNS_ALL),
        ("JSON columns (sagebook's list)", "local", "where", local + "\nimport sagebook.index",
         COLUMNS_WHERE),
        ("JSON columns (sagebook's list)", "S3", "all", s3 + "\nimport sagebook.index, boto3",
         COLUMNS_ALL),
        ("JSON columns (sagebook's list)", "S3", "where",
         s3 + "\nimport sagebook.index, boto3", COLUMNS_WHERE),
        ("Parquet (pyarrow)", "local", "all",
         f"SOURCE, FS = {str(parquet)!r}, None\nimport pyarrow.parquet", PARQUET_ALL),
        ("Parquet (pyarrow)", "local", "where",
         f"SOURCE, FS = {str(parquet)!r}, None\nimport pyarrow.parquet", PARQUET_WHERE),
        ("Parquet (pyarrow)", "S3", "all",
         f"SOURCE = 'bench/runs.parquet'\n{s3_fs()}\nimport pyarrow.parquet", PARQUET_ALL),
        ("Parquet (pyarrow)", "S3", "where",
         f"SOURCE = 'bench/runs.parquet'\n{s3_fs()}\nimport pyarrow.parquet", PARQUET_WHERE),
        ("DuckDB over the Parquet file", "local", "all",
         f"SOURCE = {str(parquet)!r}\nimport duckdb", DUCKDB_ALL),
        ("DuckDB over the Parquet file", "local", "where",
         f"SOURCE = {str(parquet)!r}\nimport duckdb", DUCKDB_WHERE),
        ("DuckDB over the JSON pages", "local", "all",
         f"SOURCE = {str(root / '_index/pages')!r}\nimport duckdb", DUCKDB_JSON),
    ]
    pages = root / "_index/pages"
    print(f"{count:,} runs; index pages {size(pages, '.jsonl', '.part') / 1e6:.1f} MB, "
          f"their columns {size(pages, '.cols') / 1e6:.1f} MB, "
          f"Parquet {parquet.stat().st_size / 1e6:.1f} MB (written in {converted:.1f} s)")
    print("| engine | store | query | import | query time | rows | own peak |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for engine, where, query, setup, body in cases:
        imported, seconds, rows, peak = timed(setup, body)
        print(f"| {engine} | {where} | {query} | {imported * 1000:.0f} ms | {seconds:.2f} s | "
              f"{rows:,} | {peak:.0f} MB |", flush=True)
    server.stop()


if __name__ == "__main__":
    main()
