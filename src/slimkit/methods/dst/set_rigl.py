"""SET and RigL: magnitude drop, with a mutation rate cosine-decayed to zero at `stop`.

- SET (Mocanu et al. 2018): random growth of a fraction zeta of the active weights (as in the
  RigL paper's SET baseline).
- RigL (Evci et al. 2020): growth where the dense gradient is largest, a fraction alpha = 0.3,
  every 100 steps until 75% of training. The only method here that computes a dense gradient,
  and only on update steps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimkit.methods.dst.base import check_fraction
from slimkit.methods.dst.schedules import RateSchedule, cosine_decay
from slimkit.methods.mutation import grow_by_gradient
from slimkit.sparse.masking import masked_layers, original_weight
from slimkit.utils import distributed
from slimkit.utils.renamed import take_renamed


class SET(RateSchedule):
    """SET: drop the smallest magnitudes, grow at random; zeta * (1 + cos(pi t)) / 2 of the active
    weights mutate at training fraction t, until `mutation_stop`."""

    def __init__(self, model: nn.Module, *, sparsity: float, zeta: float = 0.3, mutation_stop: float = 0.75, **kw):
        mutation_stop = take_renamed(kw, "stop", "mutation_stop", mutation_stop, 0.75, type(self).__name__)
        check_fraction("zeta (mutation rate)", zeta)
        self.zeta = zeta
        super().__init__(model, sparsity=sparsity, mutation_stop=mutation_stop, grad_weight=0.0, **kw)

    def rate_at(self, fraction: float) -> float:
        return cosine_decay(self.zeta, fraction, self.mutation_stop)


class RigL(RateSchedule):
    """RigL: drop the smallest magnitudes, grow where |dense gradient| is largest.

    On update steps only, one extra forward/backward pass of the step's batch runs with every
    mask opened: pruned weights are stored as exact zeros, so the network computes the same
    function and the gradient is the true dense gradient of the loss. Extra memory on those
    steps: one dense-shaped gradient per pruned layer (the size of its weight), freed after
    the update. In your own loop, call `observe(inputs, targets)` before `step()`.
    """

    random_growth = False

    def __init__(
        self, model: nn.Module, *, sparsity: float, zeta: float = 0.3, mutation_stop: float = 0.75,
        update_every: int | None = 100, loss_fn: nn.Module | None = None, **kw: Any,
    ) -> None:
        zeta = take_renamed(kw, "alpha", "zeta", zeta, 0.3, "RigL")  # the RigL paper's alpha
        mutation_stop = take_renamed(kw, "stop", "mutation_stop", mutation_stop, 0.75, "RigL")
        check_fraction("zeta (mutation rate)", zeta)
        self.zeta = zeta
        super().__init__(model, sparsity=sparsity, mutation_stop=mutation_stop, grad_weight=0.0,
                         update_every=update_every, **kw)
        self.loss_fn = loss_fn or nn.CrossEntropyLoss()
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._dense_grads: dict[str, torch.Tensor] = {}

    def rate_at(self, fraction: float) -> float:
        return cosine_decay(self.zeta, fraction, self.mutation_stop)

    def observe(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        self._batch = (inputs, targets)

    def on_step_end(self, trainer, step) -> None:
        self.observe(step.inputs, step.targets)
        super().on_step_end(trainer, step)

    def mutate(self, train_sparsity: float, prune_sparsity: float) -> None:
        if self._batch is None:
            raise ValueError("RigL grows by the dense gradient: call observe(inputs, targets) before step()")
        self._dense_grads = self._dense_gradients(*self._batch)
        try:
            super().mutate(train_sparsity, prune_sparsity)
        finally:
            self._dense_grads = {}

    def grow_layer(self, name: str, survivors: torch.Tensor, dropped: torch.Tensor, density: float) -> torch.Tensor:
        return grow_by_gradient(self.scheme, survivors, dropped, density, self._dense_grads[name])

    def _dense_gradients(self, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """d loss / d weight at every position, pruned ones included; leaves no trace (buffers
        such as BatchNorm statistics and masks, and the weights' .grad, are restored)."""
        buffers = {name: b.clone() for name, b in self.model.named_buffers()}
        originals = {name: original_weight(self.layers[name]) for name in self.layers}
        kept_grads = {name: w.grad for name, w in originals.items()}
        try:
            for module in masked_layers(self.model).values():
                module.parametrizations.weight[0].mask.fill_(True)
            loss = self.loss_fn(self.model(inputs), targets)
            grads = torch.autograd.grad(loss, list(originals.values()), allow_unused=True, materialize_grads=True)
            for grad in grads:  # every rank saw a slice of the global batch: average the slices
                distributed.all_reduce_mean_(grad)
        finally:
            with torch.no_grad():
                for name, buffer in self.model.named_buffers():
                    buffer.copy_(buffers[name])
            for name, w in originals.items():
                w.grad = kept_grads[name]
        return dict(zip(originals, grads))
