"""Perplexity of a causal language model on token blocks: exp(mean next-token NLL).

Every block of seq_len tokens contributes seq_len - 1 predictions (token t+1 from tokens ≤ t);
the mean is over all predicted tokens of all blocks (per-batch sums in float32, added in
float64). The model is any module that maps (batch, seq_len) token ids to logits: a tensor, an
HF output with ``.logits`` (`LlamaForCausalLM` and the like), or a tuple whose first item is the
logits. A non-finite loss (a NaN or inf from a broken or overflowing model) is an error naming the
batch, never a result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.lm.blocks import as_batches


def logits_of(output: object) -> Tensor:
    """The logits in a model's output: a tensor, ``output.logits``, or ``output[0]``."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}")


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@dataclass(frozen=True)
class NLL:
    """Summed negative log-likelihood (nats) over `tokens` predicted tokens."""

    total: float
    tokens: int

    @property
    def mean(self) -> float:
        return self.total / self.tokens

    @property
    def perplexity(self) -> float:
        return math.exp(self.mean)


def token_nll(model: nn.Module, blocks: Tensor, batch_size: int = 8) -> NLL:
    """Summed next-token NLL of `blocks` (count, seq_len), in eval mode without gradients."""
    if blocks.dim() != 2 or blocks.shape[1] < 2 or blocks.shape[0] == 0:
        raise ValueError(f"blocks must be (count >= 1, seq_len >= 2) token ids, got shape {tuple(blocks.shape)}")
    device, total, count = _device_of(model), 0.0, 0
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            for index, (inputs, _) in enumerate(as_batches(blocks, batch_size)):
                inputs = inputs.to(device)
                logits = logits_of(model(inputs))
                if logits.shape[:2] != inputs.shape:
                    raise ValueError(f"logits of shape {tuple(logits.shape)} do not match inputs {tuple(inputs.shape)}")
                loss = F.cross_entropy(
                    logits[:, :-1].reshape(-1, logits.shape[-1]).float(), inputs[:, 1:].reshape(-1), reduction="sum"
                )
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite loss ({float(loss)}) in batch {index} (blocks {index * batch_size}.."
                        f"{index * batch_size + inputs.shape[0] - 1}): the model's logits are not finite"
                    )
                total += float(loss)
                count += inputs[:, 1:].numel()
    finally:
        for module, training in modes.items():
            module.training = training
    return NLL(total, count)


def perplexity(model: nn.Module, blocks: Tensor, batch_size: int = 8) -> float:
    """exp(mean next-token NLL) over every predicted token of `blocks`; raises on a non-finite loss."""
    return token_nll(model, blocks, batch_size).perplexity
