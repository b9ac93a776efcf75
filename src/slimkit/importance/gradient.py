"""Criteria from loss gradients on calibration batches: SNIP, first-order Taylor, GraSP."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slimkit.importance.registry import Scores, ScoringInputs, register_criterion
from slimkit.importance.scorer import Scorer, detached, gradients, hessian_vector_product
from slimkit.utils.progress import Progress


def weight_times_gradient(weight: Tensor, grad: Tensor | None) -> Tensor:
    """|g ⊙ w|, the first-order estimate of the loss change from zeroing w (Taylor's rule for one tensor)."""
    if grad is None:
        raise ValueError("the taylor criterion needs the weight's gradient")
    return (grad * weight).abs()


@register_criterion("snip", needs=("batches",))
def snip(model: nn.Module, layers: dict[str, nn.Module], inputs: ScoringInputs) -> Scores:
    """SNIP connection sensitivity |g ⊙ w| (Lee et al. 2019), g = dL/dw averaged over the batches.

    |dL/dc| for a multiplicative mask c = 1 on each weight equals |g ⊙ w|: how much the loss
    reacts to removing the connection, measured at initialisation on a few batches.
    """
    scorer = Scorer(model, layers)
    data = scorer.batches(inputs.batches, inputs.num_batches)
    with Progress(len(data), "snip scores", mode=inputs.progress, unit="batches") as task:
        grads, weights = scorer.mean_gradients(data, inputs.loss_fn, task=task)
    return scorer.scores(weight_times_gradient(w, g) for g, w in zip(grads, weights))


@register_criterion("taylor", needs=("batches",), per_tensor=weight_times_gradient)
def taylor(model: nn.Module, layers: dict[str, nn.Module], inputs: ScoringInputs) -> Scores:
    """First-order Taylor importance of a trained model (Molchanov et al. 2019): mean over batches of |g_b ⊙ w|.

    The loss change from zeroing w is ≈ -g ⊙ w to first order. Unlike SNIP, the magnitude is
    taken per batch before averaging, so gradients of opposite sign in different batches (common
    near a minimum, where the mean gradient is ~0) do not cancel. Molchanov et al. average the
    square (g_b ⊙ w)²; we average its square root |g_b ⊙ w|, which ranks identically for a
    single batch and is less dominated by outlier batches.
    """
    scorer = Scorer(model, layers)
    data = scorer.batches(inputs.batches, inputs.num_batches)
    total: list[Tensor] = []
    with Progress(len(data), "taylor scores", mode=inputs.progress, unit="batches") as task:
        for batch_inputs, targets in task.iterate(data):
            loss, weights = scorer.loss(batch_inputs, targets, inputs.loss_fn)
            terms = [weight_times_gradient(w, g) for g, w in zip(gradients(loss, weights), detached(weights))]
            total = terms if not total else [acc + term for acc, term in zip(total, terms)]
    return scorer.scores(acc / len(data) for acc in total)


@register_criterion("grasp", needs=("batches",))
def grasp(
    model: nn.Module, layers: dict[str, nn.Module], inputs: ScoringInputs, *, temperature: float = 200.0
) -> Scores:
    """GraSP (Wang et al. 2020), returned as θ ⊙ Hg so that higher = keep.

    GraSP keeps the weights whose removal least reduces the gradient norm (gradient flow) at
    initialisation. The paper's score is S = -θ ⊙ Hg, with g the loss gradient and H its Hessian
    (here both w.r.t. the scored weights only, like the reference implementation), and it removes
    the weights with the *highest* S. We return -S = θ ⊙ Hg, so removing the lowest scores is the
    paper's rule. As in the reference code, the logits are divided by `temperature` in both
    passes, g is the mean gradient over the batches, and Hg (by double backprop) is averaged over
    the same batches. The reference's normalisation by |ΣS| is a positive factor and is omitted.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    scorer = Scorer(model, layers)
    data = scorer.batches(inputs.batches, inputs.num_batches)
    loss_fn = inputs.loss_fn
    with Progress(2 * len(data), "grasp scores", mode=inputs.progress, unit="passes") as task:  # gradient, then Hg
        grad, theta = scorer.mean_gradients(data, loss_fn, temperature, task=task)
        grad = detached(grad)
        hg = [torch.zeros_like(w) for w in theta]
        for batch_inputs, targets in task.iterate(data):
            loss, weights = scorer.loss(batch_inputs, targets, loss_fn, temperature)
            first = gradients(loss, weights, create_graph=True)
            for acc, value in zip(hg, hessian_vector_product(first, weights, grad)):
                acc += value / len(data)
    return scorer.scores(w * v for w, v in zip(theta, hg))
