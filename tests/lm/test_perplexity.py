"""Perplexity is exp(mean next-token NLL), from a tensor or an HF-style output; NaN is an error."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.lm import perplexity, token_nll


class Bigram(nn.Module):
    """Logits of token t+1 depend on token t only: easy to compute by hand."""

    def __init__(self, vocab: int = 11, wrap: bool = False) -> None:
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)
        self.wrap = wrap

    def forward(self, ids):
        logits = self.table(ids)
        return type("Output", (), {"logits": logits})() if self.wrap else logits


@pytest.mark.parametrize("wrap", [False, True], ids=["tensor", "logits-attribute"])
def test_perplexity_is_exp_of_the_mean_token_nll(wrap):
    torch.manual_seed(0)
    model = Bigram(wrap=wrap).train()
    blocks = torch.randint(0, 11, (5, 7), generator=torch.Generator().manual_seed(2))
    table = model.table.weight.detach().double()
    log_probs = table.log_softmax(-1)
    by_hand = [-float(log_probs[row[t], row[t + 1]]) for row in blocks for t in range(6)]
    expected = math.exp(sum(by_hand) / len(by_hand))
    assert perplexity(model, blocks, batch_size=2) == pytest.approx(expected, rel=1e-6)
    nll = token_nll(model, blocks, batch_size=3)
    assert nll.tokens == 30 and nll.perplexity == pytest.approx(expected, rel=1e-6)
    assert model.training  # mode restored


def test_perplexity_of_a_tiny_llama_is_finite_and_matches_its_loss(tiny_llama, calibration):
    model = tiny_llama()
    value = perplexity(model, calibration, batch_size=3)
    with torch.no_grad():
        loss = model(calibration, labels=calibration).loss  # HF's own mean next-token NLL
    assert math.isfinite(value) and value == pytest.approx(math.exp(float(loss)), rel=1e-4)


def test_a_non_finite_loss_is_an_error_not_a_result():
    model = Bigram()
    with torch.no_grad():
        model.table.weight[3, 0] = float("nan")
    blocks = torch.tensor([[1, 2, 1, 2], [0, 3, 0, 1]])
    with pytest.raises(FloatingPointError, match="batch 1"):
        perplexity(model, blocks, batch_size=1)
    with pytest.raises(ValueError, match="seq_len >= 2"):
        perplexity(model, blocks[:, :1])
