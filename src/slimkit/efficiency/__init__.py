"""Data efficiency: example forgetting statistics (Toneva et al. 2019) and two-phase training that
drops the least-forgotten examples after a statistics phase (MEST's data-efficient mode)."""

from slimkit.efficiency.build import efficiency_callbacks
from slimkit.efficiency.forgetting import NEVER_LEARNED, ForgettingTracker
from slimkit.efficiency.outputs import (
    FORGETTING_FILE, GRID_FILE, HISTOGRAM_FILE, save_forgetting_npz, write_efficiency_outputs,
)
from slimkit.efficiency.savings import training_savings
from slimkit.efficiency.subset import select_removed
from slimkit.efficiency.two_phase import TwoPhaseTraining

__all__ = [
    "FORGETTING_FILE", "GRID_FILE", "HISTOGRAM_FILE", "NEVER_LEARNED", "ForgettingTracker", "TwoPhaseTraining",
    "efficiency_callbacks", "save_forgetting_npz", "select_removed", "training_savings", "write_efficiency_outputs",
]
