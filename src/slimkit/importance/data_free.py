"""Criteria that need no data: magnitude, random, and SynFlow (one all-ones input)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slimkit.importance.registry import Scores, ScoringInputs, register_criterion
from slimkit.importance.scorer import Scorer, check_layers, detached, gradients


def absolute(weight: Tensor, grad: Tensor | None = None) -> Tensor:
    """|w|, magnitude's rule for one tensor (the gradient is not used)."""
    return weight.abs()


@register_criterion("magnitude", per_tensor=absolute)
def magnitude(model: nn.Module, layers: dict[str, nn.Module], inputs: ScoringInputs) -> Scores:
    """|w|: the classic baseline (Han et al. 2015), small weights change the output least."""
    check_layers(model, layers)
    with torch.no_grad():
        return {name: absolute(layer.weight.detach()) for name, layer in layers.items()}


@register_criterion("random")
def random_scores(model: nn.Module, layers: dict[str, nn.Module], inputs: ScoringInputs) -> Scores:
    """Uniform scores in [0, 1): the random-pruning control (e.g. Liu et al. 2019, Frankle et al. 2021).

    Drawn from ``inputs.generator`` (the global RNG if None), layer by layer in the order of
    `layers`, so a seeded generator gives reproducible scores.
    """
    check_layers(model, layers)
    generator = inputs.generator
    scores = {}
    for name, layer in layers.items():
        weight = layer.weight
        device = generator.device if generator is not None else weight.device
        values = torch.rand(weight.shape, generator=generator, device=device, dtype=weight.dtype)
        scores[name] = values.to(weight.device)
    return scores


def synflow_schedule(final_density: float, iterations: int, start_density: float = 1.0) -> list[float]:
    """SynFlow's exponential schedule, k = 1..iterations:
    start_density ** (1 - k / iterations) * final_density ** (k / iterations).

    It starts from `start_density`, the highest density the scheme can hold (1 for unstructured;
    4/9 for patterns, which never keep more taps), so no step asks for a density that cannot be
    allocated; with the default 1 it is final_density ** (k / iterations), as in the paper."""
    if not 0.0 < final_density <= 1.0:
        raise ValueError(f"final_density must be in (0, 1], got {final_density}")
    if not final_density <= start_density <= 1.0:
        raise ValueError(f"start_density must be in [final_density, 1] = [{final_density}, 1], got {start_density}")
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    return [start_density ** (1 - k / iterations) * final_density ** (k / iterations) for k in range(1, iterations + 1)]


@register_criterion("synflow", needs=("input_shape",))
def synflow(model: nn.Module, layers: dict[str, nn.Module], inputs: ScoringInputs) -> Scores:
    """One SynFlow scoring pass (Tanaka et al. 2020): |θ ⊙ dR/dθ|, R = Σ f_|θ|(1), data-free.

    Following the reference implementation, every floating-point parameter and buffer (BatchNorm
    running statistics included) is replaced by its absolute value, the network runs in eval mode
    and float64 (R is a product over layers and overflows float32 in deep nets) on one all-ones
    input of shape (1, *inputs.input_shape), and R is the sum of the output. For a parametrized
    weight the stored original is made positive, so a non-negative elementwise mask gives
    |effective weight|. This is done on a copy, so the signs of the caller's model never change.
    Scores are float64. The iterative schedule (re-scoring after each pruning step, see
    `synflow_schedule`) is the caller's job.
    """
    input_shape = inputs.input_shape
    if not input_shape or any(int(size) < 1 for size in input_shape):
        raise ValueError(f"input_shape must be a non-empty tuple of positive sizes, got {input_shape!r}")
    scorer = Scorer(model, layers, dtype=torch.float64)
    scorer.model.eval()
    with torch.no_grad():
        for tensor in scorer.model.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    ones = torch.ones((1, *input_shape), dtype=torch.float64, device=scorer.device)
    output, weights = scorer.forward(ones)
    grads = gradients(output.sum(), weights)
    return scorer.scores((w * g).abs() for w, g in zip(detached(weights), grads))
