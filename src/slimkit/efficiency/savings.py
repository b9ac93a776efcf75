"""Training compute and time saved by two-phase training, relative to the same run on all data.

Training FLOPs are estimated as 3 x forward FLOPs per example processed (forward, plus a backward
pass that costs about twice the forward: gradients for inputs and for weights), summed over
epochs. Under a sparsity method the forward FLOPs of each epoch are those of its masks
(`forward_flops` in history.csv); otherwise the dense forward FLOPs. The full-data reference
processes every training example in every epoch with the same per-epoch FLOPs, so the ratio is the
share of examples skipped, weighted by what an example costs in the epoch it was skipped.
Evaluation is not training compute and is left out of both.
"""

from __future__ import annotations

from typing import Any, Sequence

TRAIN_FLOPS_PER_FORWARD = 3  # forward + backward (about 2x forward)


def training_savings(
    history: Sequence[dict[str, Any]], num_examples: int, forward_flops_dense: int
) -> dict[str, float | int]:
    """Examples processed, training FLOPs and time, and the share saved vs full-data training.

    Needs the `examples_global` column `TwoPhaseTraining` logs each epoch. The time saved is an
    estimate: the statistics phase's measured time per example times the examples skipped.
    """
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}")
    rows = [row for row in history if "examples_global" in row]
    if not rows:
        raise ValueError("history has no examples_global column: was TwoPhaseTraining a callback of this run?")
    processed = sum(int(row["examples_global"]) for row in rows)
    full = num_examples * len(rows)
    per_epoch_flops = [float(row.get("forward_flops", forward_flops_dense)) for row in rows]
    flops = TRAIN_FLOPS_PER_FORWARD * sum(f * int(row["examples_global"]) for f, row in zip(per_epoch_flops, rows))
    flops_full = TRAIN_FLOPS_PER_FORWARD * sum(f * num_examples for f in per_epoch_flops)
    phase1 = [row for row in rows if row.get("data_phase", 1) == 1]
    time_per_example = (
        sum(float(row["epoch_time_s"]) for row in phase1) / sum(int(row["examples_global"]) for row in phase1)
        if phase1 else 0.0
    )
    return {
        "train_examples_processed": processed,
        "train_examples_full": full,
        "train_flops_est": flops,
        "train_flops_full_est": flops_full,
        "train_compute_saved": 1.0 - flops / flops_full if flops_full else 0.0,
        "train_time_saved_s_est": time_per_example * (full - processed),
    }
