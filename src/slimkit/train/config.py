"""Training hyperparameters, validated strictly: an unknown key, a wrong type or an out-of-range
value is rejected with the key's name before any work starts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StrictModel(BaseModel):
    """Base of every settings section: unknown keys, loose types and non-finite floats (inf, nan,
    which no setting means and which would only surface later as a diverged run) are rejected."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True, allow_inf_nan=False)


class TrainConfig(StrictModel):
    epochs: int = Field(10, ge=1, description="number of training epochs")
    batch_size: int = Field(128, ge=1, description="examples per step (per process under DDP)")
    eval_batch_size: int = Field(1000, ge=1, description="examples per evaluation batch")
    optimizer: Literal["sgd", "adam", "adamw"] = Field("sgd", description="optimizer")
    lr: float = Field(0.05, gt=0, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    nesterov: bool = Field(False, description="Nesterov momentum (SGD)")
    weight_decay: float = Field(5e-4, ge=0, description="L2 weight decay (decoupled for adamw)")
    schedule: Literal["cosine", "step", "constant"] = Field("cosine", description="learning-rate schedule")
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up length in epochs")
    milestones: list[float] = Field([0.5, 0.75], description="step schedule: fractions of training where lr *= gamma")
    gamma: float = Field(0.1, gt=0, le=1, description="step schedule decay factor")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cross-entropy label smoothing")
    augment: bool = Field(True, description="the dataset's light augmentation (random crop / flip)")
    seed: int = Field(0, ge=0, description="seed for init, data order and augmentation")
    device: str = Field("cpu", description="torch device, e.g. cpu or cuda")
    progress: Literal["auto", "bar", "log", "none"] = Field(
        "auto", description="progress display: bar on a TTY, log lines otherwise"
    )

    @field_validator("milestones")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0 < m < 1 for m in value) or value != sorted(value):
            raise ValueError("milestones must be increasing fractions of training in (0, 1)")
        return value
