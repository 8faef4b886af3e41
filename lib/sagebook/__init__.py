"""sagebook: launch SageMaker training jobs from configs and notebooks, and keep a record of each.

The package is imported by the CLI on every call, so this module stays import-free: the heavy
parts (boto3, papermill, pydantic) load only in the modules that need them.
"""

__version__ = "0.1.0"
