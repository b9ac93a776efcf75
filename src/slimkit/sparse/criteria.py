"""Saliency criteria for unstructured pruning: how important is each weight of each Conv/Linear layer.

Conventions shared by every criterion
-------------------------------------
* ``layers`` maps names to the Conv/Linear modules whose ``.weight`` is scored. Each criterion
  returns ``{name: scores}``, every score tensor shaped like that layer's weight, and **a higher
  score means more important, i.e. keep**. GraSP is the one criterion whose paper score has the
  opposite sign; `grasp` returns its negation (see there).
* Scores refer to the *effective* weight, ``module.weight`` as the network uses it: for a weight
  masked through ``torch.nn.utils.parametrize`` that is the masked tensor, not
  ``parametrizations.weight.original``, and gradients are taken with respect to it.
* The data-driven criteria (snip, grasp, synflow, obd, taylor) work on a deep copy of the model,
  differentiating w.r.t. the effective weight tensors its forward pass computes with (see
  `_Scorer`). The caller's parameters, buffers (BatchNorm running statistics), ``.grad`` fields,
  ``requires_grad`` flags and train/eval modes are therefore never touched, at the cost of one
  extra copy of the model in memory. Apart from synflow (always eval), the copy keeps the model's
  modes: in train mode BatchNorm uses batch statistics and dropout is active, as when SNIP and
  GraSP score a freshly initialised network; put a trained model in eval mode first if that is
  what should be measured.
* ``batches`` yields ``(inputs, targets)`` or ``(inputs, targets, indices)`` tuples; the first
  ``num_batches`` are used (all of them if the iterable is shorter, at least one is required).
  ``loss_fn(outputs, targets)`` defaults to cross-entropy and should average over the batch.
* ``progress`` ("auto", "bar", "log", "none"; see `slimkit.utils.progress`) shows the passes
  over the batches (and OBD's Hessian-vector products) of the data-driven criteria.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvTransposeNd
from torch.nn.utils import parametrize

from slimkit.utils.progress import Progress

Scores = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
Criterion = Callable[..., Scores]

# ----------------------------------------------------------------------------------------------
# shared helpers


def _check_layers(model: nn.Module, layers: dict[str, nn.Module]) -> None:
    """Every scored layer must be a submodule of `model` with a weight tensor."""
    if not layers:
        raise ValueError("layers is empty: nothing to score")
    submodules = {id(module) for module in model.modules()}
    for name, layer in layers.items():
        if id(layer) not in submodules:
            raise ValueError(f"layer {name!r} is not a submodule of the model")
        if not isinstance(getattr(layer, "weight", None), Tensor):
            raise ValueError(f"layer {name!r} ({type(layer).__name__}) has no weight tensor to score")


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _take_batches(
    batches: Iterable[Sequence[Tensor]], num_batches: int, device: torch.device
) -> list[tuple[Tensor, Tensor]]:
    """The first `num_batches` (inputs, targets) pairs, moved to `device` (indices are dropped)."""
    if not isinstance(num_batches, int) or num_batches < 1:
        raise ValueError(f"num_batches must be a positive integer, got {num_batches!r}")
    taken = []
    for batch in batches:
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise ValueError("a batch must be (inputs, targets) or (inputs, targets, indices)")
        taken.append((batch[0].to(device), batch[1].to(device)))
        if len(taken) == num_batches:
            break
    if not taken:
        raise ValueError("batches is empty: data-driven criteria need at least one batch")
    return taken


class _Scorer:
    """A deep copy of the model to differentiate, and the scored layers inside it.

    Working on a copy keeps the caller's model exactly as it was. In the copy only the parameters
    that the scored weights are computed from require grad, so backward passes build no more than
    the scores need. Gradients are taken w.r.t. the *effective* weights: inside
    ``parametrize.cached()`` a parametrized weight is computed once and that very tensor is the one
    the forward pass uses, so d(loss)/d(that tensor) is the gradient w.r.t. the masked weight, and
    for a plain layer it is simply the weight parameter. (Removing the copy's parametrizations
    instead is not an option: that edits the parametrized class, which the copy shares with the
    caller's model.)
    """

    def __init__(self, model: nn.Module, layers: dict[str, nn.Module], *, dtype: torch.dtype | None = None) -> None:
        _check_layers(model, layers)
        memo: dict[int, object] = {}
        self.model = copy.deepcopy(model, memo)  # memo maps id(original object) -> its copy
        if dtype is not None:
            self.model.to(dtype)
        for param in self.model.parameters():
            param.requires_grad_(False)
            param.grad = None
        self.layers = {name: memo[id(layer)] for name, layer in layers.items()}
        for layer in self.layers.values():
            for param in _weight_sources(layer):
                param.requires_grad_(True)
        self.device = _model_device(model)

    def forward(self, inputs: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The output, and the effective weights (in `layers` order) this forward pass computed with."""
        with parametrize.cached():
            weights = [layer.weight for layer in self.layers.values()]
            return self.model(inputs), weights

    def loss(
        self, inputs: Tensor, targets: Tensor, loss_fn: LossFn | None, temperature: float = 1.0
    ) -> tuple[Tensor, list[Tensor]]:
        outputs, weights = self.forward(inputs)
        if temperature != 1.0:
            outputs = outputs / temperature
        return (loss_fn or F.cross_entropy)(outputs, targets), weights

    def mean_gradients(
        self, data: list[tuple[Tensor, Tensor]], loss_fn: LossFn | None, temperature: float = 1.0,
        task: Progress | None = None,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """(dL/dw averaged over the batches, the weights w); one `task` step per batch."""
        total: list[Tensor] = []
        for inputs, targets in task.iterate(data) if task is not None else data:
            loss, weights = self.loss(inputs, targets, loss_fn, temperature)
            grads = _grads(loss, weights)
            total = grads if not total else [acc + grad for acc, grad in zip(total, grads)]
        return [acc / len(data) for acc in total], _detached(weights)

    def scores(self, values: Iterable[Tensor]) -> Scores:
        return {name: value.detach() for name, value in zip(self.layers, values)}


def _weight_sources(layer: nn.Module) -> list[Tensor]:
    """The leaf parameters a layer's effective weight is computed from."""
    if parametrize.is_parametrized(layer, "weight"):
        return list(layer.parametrizations.weight.parameters())
    return [layer.weight]


def _detached(tensors: Iterable[Tensor]) -> list[Tensor]:
    return [tensor.detach() for tensor in tensors]


def _grads(
    output: Tensor, weights: list[Tensor], *, create_graph: bool = False, retain_graph: bool | None = None
) -> list[Tensor]:
    """d output / d weights, with zeros for weights the output does not depend on."""
    if not output.requires_grad:
        return [torch.zeros_like(w) for w in weights]
    return list(
        torch.autograd.grad(
            output, weights, create_graph=create_graph, retain_graph=retain_graph,
            allow_unused=True, materialize_grads=True,
        )
    )


def _hessian_vector_product(grads: list[Tensor], weights: list[Tensor], vectors: list[Tensor]) -> list[Tensor]:
    """H v by double backprop (Pearlmutter 1994): d(g . v)/dw, with g built with create_graph=True."""
    dot = sum((g * v).sum() for g, v in zip(grads, vectors))
    return _grads(dot, weights, retain_graph=True)


# ----------------------------------------------------------------------------------------------
# data-free criteria


def magnitude(model: nn.Module, layers: dict[str, nn.Module], **_: object) -> Scores:
    """|w|: the classic baseline (Han et al. 2015), small weights change the output least."""
    _check_layers(model, layers)
    with torch.no_grad():
        return {name: layer.weight.detach().abs() for name, layer in layers.items()}


def random_scores(
    model: nn.Module, layers: dict[str, nn.Module], *, generator: torch.Generator | None = None, **_: object
) -> Scores:
    """Uniform scores in [0, 1): the random-pruning control (e.g. Liu et al. 2019, Frankle et al. 2021).

    Drawn from `generator` (the global RNG if None), layer by layer in the order of `layers`, so a
    seeded generator gives reproducible scores.
    """
    _check_layers(model, layers)
    scores = {}
    for name, layer in layers.items():
        weight = layer.weight
        device = generator.device if generator is not None else weight.device
        values = torch.rand(weight.shape, generator=generator, device=device, dtype=weight.dtype)
        scores[name] = values.to(weight.device)
    return scores


# ----------------------------------------------------------------------------------------------
# gradient criteria


def snip(
    model: nn.Module, layers: dict[str, nn.Module], batches: Iterable[Sequence[Tensor]], *,
    loss_fn: LossFn | None = None, num_batches: int = 1, progress: str = "auto", **_: object,
) -> Scores:
    """SNIP connection sensitivity |g ⊙ w| (Lee et al. 2019), g = dL/dw averaged over the batches.

    |dL/dc| for a multiplicative mask c = 1 on each weight equals |g ⊙ w|: how much the loss
    reacts to removing the connection, measured at initialisation on a few batches.
    """
    scorer = _Scorer(model, layers)
    data = _take_batches(batches, num_batches, scorer.device)
    with Progress(len(data), "snip scores", mode=progress, unit="batches") as task:
        grads, weights = scorer.mean_gradients(data, loss_fn, task=task)
    return scorer.scores((g * w).abs() for g, w in zip(grads, weights))


def taylor(
    model: nn.Module, layers: dict[str, nn.Module], batches: Iterable[Sequence[Tensor]], *,
    loss_fn: LossFn | None = None, num_batches: int = 1, progress: str = "auto", **_: object,
) -> Scores:
    """First-order Taylor importance of a trained model (Molchanov et al. 2019): mean over batches of |g_b ⊙ w|.

    The loss change from zeroing w is ≈ -g ⊙ w to first order. Unlike SNIP, the magnitude is
    taken per batch before averaging, so gradients of opposite sign in different batches (common
    near a minimum, where the mean gradient is ~0) do not cancel. Molchanov et al. average the
    square (g_b ⊙ w)²; we average its square root |g_b ⊙ w|, which ranks identically for a
    single batch and is less dominated by outlier batches.
    """
    scorer = _Scorer(model, layers)
    data = _take_batches(batches, num_batches, scorer.device)
    total: list[Tensor] = []
    with Progress(len(data), "taylor scores", mode=progress, unit="batches") as task:
        for inputs, targets in task.iterate(data):
            loss, weights = scorer.loss(inputs, targets, loss_fn)
            terms = [(g * w).abs() for g, w in zip(_grads(loss, weights), _detached(weights))]
            total = terms if not total else [acc + term for acc, term in zip(total, terms)]
    return scorer.scores(acc / len(data) for acc in total)


def grasp(
    model: nn.Module, layers: dict[str, nn.Module], batches: Iterable[Sequence[Tensor]], *,
    loss_fn: LossFn | None = None, num_batches: int = 1, temperature: float = 200.0, progress: str = "auto",
    **_: object,
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
    scorer = _Scorer(model, layers)
    data = _take_batches(batches, num_batches, scorer.device)
    with Progress(2 * len(data), "grasp scores", mode=progress, unit="passes") as task:  # gradient, then Hg
        grad, theta = scorer.mean_gradients(data, loss_fn, temperature, task=task)
        grad = _detached(grad)
        hg = [torch.zeros_like(w) for w in theta]
        for inputs, targets in task.iterate(data):
            loss, weights = scorer.loss(inputs, targets, loss_fn, temperature)
            first = _grads(loss, weights, create_graph=True)
            for acc, value in zip(hg, _hessian_vector_product(first, weights, grad)):
                acc += value / len(data)
    return scorer.scores(w * v for w, v in zip(theta, hg))


def synflow_schedule(final_density: float, iterations: int) -> list[float]:
    """Densities final_density ** (k / iterations), k = 1..iterations: SynFlow's exponential schedule."""
    if not 0.0 < final_density <= 1.0:
        raise ValueError(f"final_density must be in (0, 1], got {final_density}")
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
    return [final_density ** (k / iterations) for k in range(1, iterations + 1)]


def synflow(model: nn.Module, layers: dict[str, nn.Module], input_shape: tuple[int, ...], **_: object) -> Scores:
    """One SynFlow scoring pass (Tanaka et al. 2020): |θ ⊙ dR/dθ|, R = Σ f_|θ|(1), data-free.

    Following the reference implementation, every floating-point parameter and buffer (BatchNorm
    running statistics included) is replaced by its absolute value, the network runs in eval mode
    and float64 (R is a product over layers and overflows float32 in deep nets) on one all-ones
    input of shape (1, *input_shape), and R is the sum of the output. For a parametrized weight the
    stored original is made positive, so a non-negative elementwise mask gives |effective weight|.
    This is done on a copy, so the signs of the caller's model never change. Scores are float64.
    The iterative schedule (re-scoring after each pruning step, see `synflow_schedule`) is the
    caller's job.
    """
    if not input_shape or any(int(size) < 1 for size in input_shape):
        raise ValueError(f"input_shape must be a non-empty tuple of positive sizes, got {input_shape!r}")
    scorer = _Scorer(model, layers, dtype=torch.float64)
    scorer.model.eval()
    with torch.no_grad():
        for tensor in scorer.model.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    ones = torch.ones((1, *input_shape), dtype=torch.float64, device=scorer.device)
    output, weights = scorer.forward(ones)
    grads = _grads(output.sum(), weights)
    return scorer.scores((w * g).abs() for w, g in zip(_detached(weights), grads))


def _hutchinson_diagonal(
    scorer: _Scorer, data: list[tuple[Tensor, Tensor]], loss_fn: LossFn | None, samples: int,
    generator: torch.Generator | None, task: Progress,
) -> list[Tensor]:
    """diag(H) ≈ mean of z ⊙ Hz over Rademacher z (Hutchinson 1989; Bekas et al. 2007), `samples` per batch."""
    total: list[Tensor] = []
    for inputs, targets in data:
        loss, weights = scorer.loss(inputs, targets, loss_fn)
        first = _grads(loss, weights, create_graph=True)
        total = total or [torch.zeros_like(w) for w in _detached(weights)]
        for _ in range(samples):
            z = [_rademacher(w, generator) for w in total]
            for acc, zi, hz in zip(total, z, _hessian_vector_product(first, weights, z)):
                acc += zi * hz
            task.update()
    return [acc / (len(data) * samples) for acc in total]


def _rademacher(like: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else like.device
    signs = torch.randint(0, 2, like.shape, generator=generator, device=device)
    return (2 * signs - 1).to(device=like.device, dtype=like.dtype)


def _fisher_diagonal(
    scorer: _Scorer, data: list[tuple[Tensor, Tensor]], loss_fn: LossFn | None, task: Progress
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
            squares = [grad.square() for grad in _grads(loss, weights)]
            total = squares if not total else [acc + square for acc, square in zip(total, squares)]
            count += 1
            task.update()
    if count == 0:
        raise ValueError("the calibration batches hold no examples")
    return [acc / count for acc in total]


def obd(
    model: nn.Module, layers: dict[str, nn.Module], batches: Iterable[Sequence[Tensor]], *,
    loss_fn: LossFn | None = None, num_batches: int = 1, estimator: str = "hutchinson", samples: int = 8,
    generator: torch.Generator | None = None, progress: str = "auto", **_: object,
) -> Scores:
    """Optimal Brain Damage saliency ½ h_ii w² (LeCun et al. 1990).

    At a minimum of the loss, deleting w_i raises it by ≈ ½ h_ii w_i² if the Hessian is taken as
    diagonal. The diagonal h_ii is estimated with

    * ``"hutchinson"`` (default): mean of z ⊙ Hz over `samples` Rademacher vectors z per batch
      (drawn from `generator`), Hz by double backprop; unbiased for the Hessian of the loss.
    * ``"fisher"``: the empirical Fisher, mean over examples of squared per-example gradients; a
      positive semi-definite Gauss-Newton-like stand-in for H near a minimum.

    Estimates of h_ii below 0 (noise, or negative curvature away from a minimum, where OBD's
    premise fails) are clamped to 0: removing such a weight is not predicted to cost anything.
    """
    if estimator not in ("hutchinson", "fisher"):
        raise ValueError(f"estimator must be 'hutchinson' or 'fisher', got {estimator!r}")
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    scorer = _Scorer(model, layers)
    data = _take_batches(batches, num_batches, scorer.device)
    if estimator == "hutchinson":
        with Progress(len(data) * samples, "obd hessian", mode=progress, unit="hvps") as task:
            diagonal = _hutchinson_diagonal(scorer, data, loss_fn, samples, generator, task)
    else:
        examples = sum(inputs.shape[0] for inputs, _ in data)
        with Progress(examples, "obd fisher", mode=progress, unit="examples") as task:
            diagonal = _fisher_diagonal(scorer, data, loss_fn, task)
    with torch.no_grad():
        weights = [layer.weight for layer in scorer.layers.values()]
    return scorer.scores(0.5 * h.clamp(min=0) * w.square() for h, w in zip(diagonal, weights))


# ----------------------------------------------------------------------------------------------
# BatchNorm scaling factors


def _out_channels(layer: nn.Module) -> int:
    for attr in ("out_channels", "out_features"):
        if isinstance(getattr(layer, attr, None), int):
            return getattr(layer, attr)
    return layer.weight.shape[0]


def _matches(layer: nn.Module, bn: nn.Module) -> bool:
    return isinstance(bn, _BatchNorm) and bn.affine and bn.num_features == _out_channels(layer)


def _bn_pairs_traced(model: nn.Module, layers: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """Pairs (layer, BN) where the BN's input is the layer's output in the torch.fx graph."""
    graph = torch.fx.Tracer().trace(model)
    modules = dict(model.named_modules())
    qualified = {id(module): name for name, module in modules.items()}
    scored = {qualified[id(layer)]: name for name, layer in layers.items()}
    pairs: dict[str, nn.Module] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not node.args:
            continue
        source = node.args[0]
        if not isinstance(source, torch.fx.Node) or source.op != "call_module" or source.target not in scored:
            continue
        name, bn = scored[source.target], modules[node.target]
        if name not in pairs and _matches(layers[name], bn):
            pairs[name] = bn
    return pairs


def _bn_pairs_registered(model: nn.Module, layers: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """Pairs (layer, BN) where the BN is the next computing module registered after the layer."""
    scored = {id(layer): name for name, layer in layers.items()}
    units = []  # leaf-like modules in registration order; containers and parametrization internals skipped
    for qualified, module in model.named_modules():
        if "parametrizations" in qualified.split("."):
            continue
        children = [child for child, _ in module.named_children() if child != "parametrizations"]
        if id(module) in scored or isinstance(module, _BatchNorm) or not children:
            units.append(module)
    pairs = {}
    for module, following in zip(units, units[1:]):
        name = scored.get(id(module))
        if name is not None and _matches(module, following):
            pairs[name] = following
    return pairs


def _following_batchnorms(model: nn.Module, layers: dict[str, nn.Module]) -> dict[str, nn.Module]:
    try:
        return _bn_pairs_traced(model, layers)
    except Exception:  # noqa: BLE001 - fx raises many error types on untraceable Python control flow
        return _bn_pairs_registered(model, layers)


def _broadcast_channels(values: Tensor, layer: nn.Module) -> Tensor:
    """Spread one value per output channel over every weight feeding that channel."""
    weight = layer.weight
    trailing = [1] * (weight.dim() - 2)
    if isinstance(layer, _ConvTransposeNd):  # weight is (in, out // groups, *kernel)
        inputs, per_group = weight.shape[0], weight.shape[1]
        group = torch.arange(inputs, device=values.device) // (inputs // layer.groups)
        channel = group[:, None] * per_group + torch.arange(per_group, device=values.device)[None, :]
        return values[channel].reshape(inputs, per_group, *trailing).expand(weight.shape).clone()
    return values.reshape(-1, 1, *trailing).expand(weight.shape).clone()


def bn_gamma(model: nn.Module, layers: dict[str, nn.Module], **_: object) -> Scores:
    """|γ| of the BatchNorm right after each layer, per output channel (Network Slimming, Liu et al. 2017).

    A channel whose BN scale γ is ~0 is switched off whatever its weights are, so |γ| ranks the
    channel's importance; every weight feeding a channel gets that channel's |γ|. The BN is the
    one consuming the layer's output directly in the torch.fx graph; if the model cannot be
    traced, it is the BN registered right after the layer with matching num_features. Layers with
    no such (affine) BN fall back to magnitude scores |w|, which are on another scale: compare
    scores across such layers only with layer-wise (not global) thresholds.
    """
    _check_layers(model, layers)
    pairs = _following_batchnorms(model, layers)
    scores = magnitude(model, layers)
    with torch.no_grad():
        for name, bn in pairs.items():
            scores[name] = _broadcast_channels(bn.weight.detach().abs(), layers[name])
    return scores


# ----------------------------------------------------------------------------------------------
# registry

CRITERIA: dict[str, Criterion] = {
    "magnitude": magnitude,
    "random": random_scores,
    "snip": snip,
    "grasp": grasp,
    "synflow": synflow,
    "obd": obd,
    "taylor": taylor,
    "bn_gamma": bn_gamma,
}


def get_criterion(name: str) -> Criterion:
    """The criterion registered as `name` in CRITERIA."""
    try:
        return CRITERIA[name]
    except KeyError:
        raise ValueError(f"unknown criterion {name!r}; choose one of {', '.join(sorted(CRITERIA))}") from None
