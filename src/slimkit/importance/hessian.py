"""Optimal Brain Damage: second-order saliency from the Hessian diagonal (Hutchinson or Fisher)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slimkit.importance.registry import LossFn, Scores, ScoringInputs, register_criterion
from slimkit.importance.scorer import Scorer, detached, gradients, hessian_vector_product
from slimkit.utils.progress import Progress

ESTIMATORS = ("hutchinson", "fisher")


@register_criterion("obd", needs=("batches",))
def obd(
    model: nn.Module, layers: dict[str, nn.Module], inputs: ScoringInputs, *, estimator: str = "hutchinson",
    samples: int = 8,
) -> Scores:
    """Optimal Brain Damage saliency ½ h_ii w² (LeCun et al. 1990).

    At a minimum of the loss, deleting w_i raises it by ≈ ½ h_ii w_i² if the Hessian is taken as
    diagonal. The diagonal h_ii is estimated with

    * ``"hutchinson"`` (default): mean of z ⊙ Hz over `samples` Rademacher vectors z per batch
      (drawn from ``inputs.generator``), Hz by double backprop; unbiased for the Hessian of the loss.
    * ``"fisher"``: the empirical Fisher, mean over examples of squared per-example gradients; a
      positive semi-definite Gauss-Newton-like stand-in for H near a minimum.

    Estimates of h_ii below 0 (noise, or negative curvature away from a minimum, where OBD's
    premise fails) are clamped to 0: removing such a weight is not predicted to cost anything.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be 'hutchinson' or 'fisher', got {estimator!r}")
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    scorer = Scorer(model, layers)
    data = scorer.batches(inputs.batches, inputs.num_batches)
    if estimator == "hutchinson":
        with Progress(len(data) * samples, "obd hessian", mode=inputs.progress, unit="hvps") as task:
            diagonal = _hutchinson_diagonal(scorer, data, inputs.loss_fn, samples, inputs.generator, task)
    else:
        examples = sum(batch_inputs.shape[0] for batch_inputs, _ in data)
        with Progress(examples, "obd fisher", mode=inputs.progress, unit="examples") as task:
            diagonal = _fisher_diagonal(scorer, data, inputs.loss_fn, task)
    with torch.no_grad():
        weights = [layer.weight for layer in scorer.layers.values()]
    return scorer.scores(0.5 * h.clamp(min=0) * w.square() for h, w in zip(diagonal, weights))


def _hutchinson_diagonal(
    scorer: Scorer, data: list[tuple[Tensor, Tensor]], loss_fn: LossFn | None, samples: int,
    generator: torch.Generator | None, task: Progress,
) -> list[Tensor]:
    """diag(H) ≈ mean of z ⊙ Hz over Rademacher z (Hutchinson 1989; Bekas et al. 2007), `samples` per batch."""
    total: list[Tensor] = []
    for inputs, targets in data:
        loss, weights = scorer.loss(inputs, targets, loss_fn)
        first = gradients(loss, weights, create_graph=True)
        total = total or [torch.zeros_like(w) for w in detached(weights)]
        for _ in range(samples):
            z = [_rademacher(w, generator) for w in total]
            for acc, zi, hz in zip(total, z, hessian_vector_product(first, weights, z)):
                acc += zi * hz
            task.update()
    return [acc / (len(data) * samples) for acc in total]


def _rademacher(like: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else like.device
    signs = torch.randint(0, 2, like.shape, generator=generator, device=device)
    return (2 * signs - 1).to(device=like.device, dtype=like.dtype)


def _fisher_diagonal(
    scorer: Scorer, data: list[tuple[Tensor, Tensor]], loss_fn: LossFn | None, task: Progress
) -> list[Tensor]:
    """Empirical Fisher diagonal: mean over examples of the squared per-example gradient.

    Per-example gradients come from one forward/backward per example (a batch of one), which
    works for any model and loss; in train mode a BatchNorm then normalises each example alone.
    """
    total: list[Tensor] = []
    count = 0
    for inputs, targets in data:
        for i in range(inputs.shape[0]):
            loss, weights = scorer.loss(inputs[i : i + 1], targets[i : i + 1], loss_fn)
            squares = [grad.square() for grad in gradients(loss, weights)]
            total = squares if not total else [acc + square for acc, square in zip(total, squares)]
            count += 1
            task.update()
    if count == 0:
        raise ValueError("the calibration batches hold no examples")
    return [acc / count for acc in total]
