"""The run-config section of data-efficient training: forgetting statistics and two-phase training."""

from __future__ import annotations

from pydantic import Field, model_validator

from slimkit.train.config import StrictModel


class DataEfficiencySettings(StrictModel):
    """Two-phase training (statistics, then a subset) or statistics over the whole run."""

    data_efficient: bool = Field(
        False, description="two-phase training: forgetting statistics for stats_epochs on all data, then the "
        "remaining epochs without the least-forgotten examples (remove_forgetting_le or remove_fraction)",
    )
    stats_epochs: int | None = Field(None, ge=1, description="data_efficient: epochs of the statistics phase")
    remove_forgetting_le: int | None = Field(
        None, ge=0, description="data_efficient: drop learned examples forgotten at most this many times"
    )
    remove_fraction: float | None = Field(
        None, gt=0, lt=1, description="data_efficient: drop this fraction of the least-forgotten examples"
    )
    forgetting_stats: bool = Field(
        False, description="record forgetting statistics over the whole run and remove nothing (Toneva 'all epochs')"
    )


    @model_validator(mode="after")
    def _rules_are_consistent(self) -> DataEfficiencySettings:
        """The data-efficiency mistakes visible from these keys alone (RunConfig checks the rest)."""
        rules = {"stats_epochs": self.stats_epochs, "remove_forgetting_le": self.remove_forgetting_le,
                 "remove_fraction": self.remove_fraction}
        if not self.data_efficient:
            given = [key for key, value in rules.items() if value is not None]
            if given:
                raise ValueError(f"{', '.join(given)} only apply with data_efficient (--data-efficient)")
            return self
        if self.forgetting_stats:
            raise ValueError("data_efficient and forgetting_stats exclude each other: data_efficient already "
                             "records statistics during its stats_epochs; forgetting_stats records the whole run")
        if self.stats_epochs is None:
            raise ValueError("data_efficient needs stats_epochs (e.g. --stats-epochs 10)")
        if (self.remove_forgetting_le is None) == (self.remove_fraction is None):
            raise ValueError("data_efficient needs exactly one of remove_forgetting_le and remove_fraction")
        most = self.stats_epochs // 2  # a forgetting event needs a correct and a later incorrect presentation
        if self.remove_forgetting_le is not None and self.remove_forgetting_le >= most:
            raise ValueError(
                f"remove_forgetting_le ({self.remove_forgetting_le}) would remove every learned example: in "
                f"stats_epochs={self.stats_epochs} epochs an example is forgotten at most {most} times; "
                f"use a threshold below {most} or a longer statistics phase"
            )
        return self
