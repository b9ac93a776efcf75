"""Dynamic sparse training: the network is sparse from the first step to the last, and its
connectivity mutates during training (prune the least important weights, grow new ones).

- `base`: `DynamicSparseTraining`, the shared init / update / settle loop;
- `schedules`: when and how much mutates (`Phase`, `elastic_mutation_phases`,
  `soft_memory_bound_phases`, cosine decay);
- `mest`: MEST, MEST+EM and MEST+EM&S (`MEST`, `PhasedMEST`);
- `set_rigl`: SET (random growth) and RigL (dense-gradient growth);
- `dsr`: DSR (global threshold, cross-layer reallocation).

All variants respect the sparsity scheme (the mutation engine is `slimkit.methods.mutation`) and
draw growth from a generator seeded identically everywhere, so the same seed gives the same masks.
"""

from slimkit.methods.dst.base import DynamicSparseTraining
from slimkit.methods.dst.dsr import DSR
from slimkit.methods.dst.mest import MEST, PhasedMEST
from slimkit.methods.dst.schedules import Phase, RateSchedule, elastic_mutation_phases, soft_memory_bound_phases
from slimkit.methods.dst.set_rigl import SET, RigL

__all__ = [
    "DSR", "MEST", "SET", "DynamicSparseTraining", "Phase", "PhasedMEST", "RateSchedule", "RigL",
    "elastic_mutation_phases", "soft_memory_bound_phases",
]
