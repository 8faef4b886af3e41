"""Run in the SDK venv (which has mlflow) by test_mlflow_export.py: what an MLflow tracking
server holds, read back through the MLflow client, as JSON on stdout."""

import json
import sys

from mlflow.tracking import MlflowClient

client = MlflowClient(tracking_uri=sys.argv[1])
found = {}
for experiment in client.search_experiments():
    for run in client.search_runs([experiment.experiment_id]):
        found[run.data.tags.get("sagebook.run_id", run.info.run_id)] = {
            "experiment": experiment.name,
            "status": run.info.status, "start_time": run.info.start_time,
            "end_time": run.info.end_time, "params": run.data.params, "tags": run.data.tags,
            "metrics": {key: [(m.step, m.value, m.timestamp)
                              for m in client.get_metric_history(run.info.run_id, key)]
                        for key in run.data.metrics},
            "artifacts": sorted(a.path for folder in ("sagebook", "sagebook/config")
                                for a in client.list_artifacts(run.info.run_id, folder)),
        }
print(json.dumps(found))
