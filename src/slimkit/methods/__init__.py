"""What changes masks over time: pruning at init, one-shot and gradual pruning (and, later,
dynamic sparse training). Every method follows `SparsityMethod`'s `step()` contract."""

from slimkit.methods.base import SparsityMethod, select_layers
from slimkit.methods.fixed import FixedMasks
from slimkit.methods.gradual import GradualMagnitude
from slimkit.methods.prune_once import PruneOnce

__all__ = ["FixedMasks", "GradualMagnitude", "PruneOnce", "SparsityMethod", "select_layers"]
