"""Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language Models").

The score of weight W_ij is |W_ij| · ‖X_j‖₂, where X_j is the j-th input feature over every
calibration token (for Conv2d, the j-th column of the unfolded patches). Large language models
have a few input features with very large activations; weighting |W| by them keeps the weights
that carry those features. The paper compares scores **per output row** (each row keeps the same
count), which `slimkit.lm.prune_oneshot` does; as a registered criterion the scores plug into any
scheme and allocation like the other criteria. No weight update, no second-order information: one
forward pass with hooks on the scored layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slimkit.importance.activations import InputStatistics, run_calibration
from slimkit.importance.registry import Scores, ScoringInputs, register_criterion
from slimkit.importance.scorer import check_layers


def wanda_scores(weight: Tensor, column_norms: Tensor) -> Tensor:
    """|W| · ‖X_j‖₂ broadcast over the rows of ``weight.reshape(out, -1)``, in weight's shape and dtype."""
    flat = weight.detach().reshape(weight.shape[0], -1)
    if column_norms.shape != (flat.shape[1],):
        raise ValueError(f"column_norms must have {flat.shape[1]} entries for weight {tuple(weight.shape)}, "
                         f"got {tuple(column_norms.shape)}")
    scores = flat.abs().to(column_norms.dtype) * column_norms[None, :]
    return scores.reshape(weight.shape).to(weight.dtype if weight.is_floating_point() else torch.float32)


def collect_input_norms(
    model: nn.Module, layers: dict[str, nn.Module], inputs: ScoringInputs
) -> dict[str, Tensor]:
    """‖X_j‖₂ (float64) of every layer's input features over the first ``inputs.num_batches`` batches."""
    with InputStatistics(layers, "sumsq") as stats:
        run_calibration(
            model, inputs.batches, num_batches=inputs.num_batches, desc="wanda calibration", progress=inputs.progress
        )
    return stats.column_norms()


@register_criterion("wanda", needs=("batches",))
def wanda(model: nn.Module, layers: dict[str, nn.Module], inputs: ScoringInputs) -> Scores:
    """|W_ij| · ‖X_j‖₂ with input-feature norms from one calibration pass (eval mode, no grad).

    Scores use the effective weight (a masked weight scores its zeros as 0). The model is run as
    it is, so in a sequential (layer-by-layer) recipe the caller decides which pruned layers the
    calibration data has already gone through.
    """
    check_layers(model, layers)
    norms = collect_input_norms(model, layers, inputs)
    return {name: wanda_scores(layer.weight, norms[name].to(layer.weight.device)) for name, layer in layers.items()}
