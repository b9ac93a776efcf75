"""What changes masks over time: pruning at init, one-shot and gradual pruning, lottery tickets,
and dynamic sparse training (MEST, MEST+EM, MEST+EM&S, SET, DSR, RigL). Every method follows
`SparsityMethod`'s `step()` contract."""

from slimkit.methods.base import SparsityMethod, select_layers
from slimkit.methods.dst import (
    DSR, MEST, SET, DynamicSparseTraining, Phase, PhasedMEST, RigL, elastic_mutation_phases, soft_memory_bound_phases,
)
from slimkit.methods.fixed import FixedMasks
from slimkit.methods.gradual import GradualMagnitude
from slimkit.methods.prune_once import PruneOnce

__all__ = [
    "DSR", "MEST", "SET", "DynamicSparseTraining", "FixedMasks", "GradualMagnitude", "Phase", "PhasedMEST", "PruneOnce",
    "RigL", "SparsityMethod", "elastic_mutation_phases", "select_layers", "soft_memory_bound_phases",
]
