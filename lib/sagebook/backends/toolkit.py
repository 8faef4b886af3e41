"""The `SM_*` variables of the sagemaker-training toolkit, computed as it computes them.

Framework images run training code through the toolkit, which exports what
`sagemaker_training.environment.Environment().to_env_vars()` returns. The local backend sets
the same names with the same values for the same job, so code that reads them runs unchanged;
`tests/test_toolkit_parity.py` compares the two, name by name, with the toolkit installed. The
toolkit itself is not used here: it waits for every cluster host name to resolve and
pip-installs a code folder's requirements when it runs.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

GROUP = "homogeneousCluster"


def variables(base: str, hyperparameters: dict[str, str], input_data_config: dict[str, Any],
              resource_config: dict[str, Any], job_name: str, gpus: int = 0) -> dict[str, str]:
    """What `Environment().to_env_vars()` gives a job with these config files under `base`
    (and TRAINING_JOB_NAME set, as SageMaker sets it)."""
    hps = {k: _decoded(v) for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
    framework = {k: _decoded(v) for k, v in hyperparameters.items() if k.startswith("sagemaker_")}
    log_level = framework.pop("sagemaker_container_log_level", logging.INFO)
    for key in ("sagemaker_program", "sagemaker_submit_directory", "sagemaker_region",
                "sagemaker_job_name", "sagemaker_s3_output"):
        framework.pop(key, None)
    hosts = resource_config["hosts"]
    groups = resource_config.get("instance_groups", [])
    current_group = resource_config.get("current_group_name", GROUP)
    channels = {name: f"{base}/input/data/{name}" for name in input_data_config}
    entry_point = _decoded(hyperparameters["sagemaker_program"]) \
        if "sagemaker_program" in hyperparameters else None
    paths = {
        "input_dir": f"{base}/input",
        "input_config_dir": f"{base}/input/config",
        "model_dir": f"{base}/model",
        "module_dir": str(_decoded(hyperparameters.get("sagemaker_submit_directory",
                                                       f"{base}/code"))),
        "output_dir": f"{base}/output",
        "output_data_dir": f"{base}/output/data",
        "output_intermediate_dir": f"{base}/output/intermediate",
    }
    common = {
        "hosts": hosts,
        "network_interface_name": resource_config.get("network_interface_name", "eth0"),
        "current_host": resource_config["current_host"],
        "current_instance_type": resource_config.get("current_instance_type", "local"),
        "current_instance_group": current_group,
        "current_instance_group_hosts": next(
            (g["hosts"] for g in groups if g["instance_group_name"] == current_group), []),
        "instance_groups": [g["instance_group_name"] for g in groups],
        "instance_groups_dict": {g["instance_group_name"]: g for g in groups},
        # distribution over instance groups comes from framework hyperparameters
        # (sagemaker_mpi_enabled, …) that sagebook jobs do not send
        "distribution_instance_groups": [],
        "is_hetero": len(groups) > 1,
        "module_name": str(entry_point),
        "log_level": log_level,
        "framework_module": os.environ.get("SAGEMAKER_TRAINING_MODULE"),
        "num_cpus": os.cpu_count() or 1,
        "num_gpus": gpus,
        "num_neurons": 0,
        **paths,
    }
    training_env = {
        **common,
        "additional_framework_parameters": framework,
        "channel_input_dirs": channels,
        "distribution_hosts": [] if groups else list(hosts),
        "hyperparameters": hps,
        "input_data_config": input_data_config,
        "is_master": resource_config["current_host"] == hosts[0],
        "is_modelparallel_enabled": None,
        "is_smddpmprun_installed": False,
        "is_smddprun_installed": False,
        "job_name": job_name,
        "master_hostname": hosts[0],
        "resource_config": resource_config,
        "topology": resource_config.get("topology", []),
        "user_entry_point": entry_point,
    }
    env: dict[str, Any] = {
        **common,
        "hps": hps,
        "user_entry_point": entry_point,
        "framework_params": framework,
        "resource_config": resource_config,
        "input_data_config": input_data_config,
        "channels": sorted(channels),
        "training_env": training_env,
        "user_args": _command_line(hps),
    }
    env.update({f"channel_{name}": path for name, path in channels.items()})
    env.update({f"hp_{key}": value for key, value in hps.items()})
    return {f"SM_{key.upper()}": _text(value) for key, value in env.items()}


def _decoded(value: Any) -> Any:
    """Hyperparameter values are JSON when they can be read as JSON, else the string."""
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _command_line(hps: dict[str, Any]) -> list[str]:
    """SM_USER_ARGS: `--key value` per hyperparameter, sorted, values as Python prints them."""
    args: list[str] = []
    for key in sorted(hps):
        value = hps[key]
        args.append(f"--{key}" if len(key) > 1 else f"-{key}")
        if isinstance(value, dict):
            args.append(",".join(f"{k}={v}" for k, v in sorted(value.items())))
        else:
            args.append("" if value is None else str(value))
    return args
