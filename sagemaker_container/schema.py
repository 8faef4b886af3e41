"""Every option of the example training script, with its default and meaning.

This module is the single reference for the training config: `train.py` validates the
`config` channel against it inside the container, and the launcher validates the user's
`training_config.yaml` against the same model on the laptop, so a typo fails before a job is
paid for. Field descriptions double as help text in the config form.

It imports only pydantic and the standard library so that the launcher can load it without
pulling in the training stack (scikit-learn, numpy).
"""

# No `from __future__ import annotations`: annotations are evaluated at class creation, so the
# models build even when this file is loaded by path without being registered in sys.modules.
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Optimizer = Literal["adam", "sgd"]


class DataOptions(BaseModel):
    """Where the training script finds its data inside the input channels."""

    model_config = ConfigDict(extra="forbid")

    train_file: str = Field(
        default="train.csv",
        description=(
            "CSV file inside the `train` channel, with a header row. Every column except "
            "the target column is a numeric feature."
        ),
    )
    validation_file: str = Field(
        default="validation.csv",
        description=(
            "CSV file inside the `validation` channel, same columns as the training file. "
            "Only read when a `validation` channel is present."
        ),
    )
    validation_fraction: float = Field(
        default=0.2,
        gt=0,
        lt=1,
        description=(
            "Share of the training rows held out for validation when there is no "
            "`validation` channel (the split is fixed by `seed`)."
        ),
    )

    @field_validator("train_file", "validation_file")
    @classmethod
    def _stay_inside_channel(cls, value: str) -> str:
        """A channel is a folder SageMaker fills from S3; a path outside it cannot be there."""
        path = PurePosixPath(value)
        if not value or path.is_absolute() or ".." in path.parts:
            raise ValueError(
                "must be a file name relative to its channel folder (no absolute path, no '..')"
            )
        return value


class TrainingConfig(BaseModel):
    """Options of the example training script (a small neural network on the digits data)."""

    model_config = ConfigDict(extra="forbid")

    hidden_units: int = Field(
        default=64,
        ge=0,
        le=4096,
        description=(
            "Width of the single hidden layer (ReLU). 0 removes the hidden layer, which makes "
            "the model a multinomial logistic regression."
        ),
    )
    optimizer: Optimizer = Field(
        default="adam",
        description=(
            "Gradient method: `adam` (adaptive step sizes) or `sgd` (stochastic gradient "
            "descent with Nesterov momentum 0.9)."
        ),
    )
    epochs: int = Field(
        default=10,
        ge=1,
        description=(
            "Total number of passes over the training data. When the run resumes from a "
            "checkpoint, training continues up to this epoch."
        ),
    )
    batch_size: int = Field(
        default=64,
        ge=1,
        description="Rows per gradient step.",
    )
    learning_rate: float = Field(
        default=0.001,
        gt=0,
        allow_inf_nan=False,
        description="Initial step size of the optimizer (kept constant for `sgd`).",
    )
    alpha: float = Field(
        default=0.0001,
        ge=0,
        allow_inf_nan=False,
        description="Strength of the L2 penalty on the weights; 0 turns regularisation off.",
    )
    seed: int = Field(
        default=0,
        description=(
            "Seed for the weight initialisation, the minibatch order and the train/validation "
            "split; the same seed and data give the same model."
        ),
    )
    target_column: str = Field(
        default="label",
        min_length=1,
        description="Name of the CSV column that holds the class label (whole numbers).",
    )
    checkpoint_every: int = Field(
        default=1,
        ge=1,
        description=(
            "Save a checkpoint every this many epochs (and always after the last one), so a "
            "stopped or interrupted Spot job resumes where it left off. A checkpoint only "
            "resumes a run whose other options, apart from `epochs`, are unchanged."
        ),
    )
    data: DataOptions = Field(
        default_factory=DataOptions,
        description="Input files inside the channels.",
    )
