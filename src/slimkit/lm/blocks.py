"""Token blocks: a corpus split as one token stream, cut into (count, seq_len) blocks of token ids.

`encode_texts` joins the files of a split into one stream, each file followed by the
end-of-text token. Evaluation uses `token_blocks`: consecutive non-overlapping blocks from the
start of the stream (the remainder shorter than seq_len is dropped), so every model is scored on
the same tokens. Calibration uses `sample_blocks`: `count` windows at random offsets drawn from a
seeded generator, as in the SparseGPT and Wanda recipes (random segments of the training text).
`as_batches` turns blocks into the ``(inputs, targets)`` batches that `ScoringInputs` and the
criteria read (targets are the inputs: a causal LM shifts them itself).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from slimkit.lm.tokenizer import BPETokenizer


def encode_texts(tokenizer: BPETokenizer, texts: Iterable[str], *, max_tokens: int | None = None) -> Tensor:
    """One int64 stream of the texts' tokens, each text followed by ``tokenizer.eos_id``;
    stops once `max_tokens` are reached (then exactly that many)."""
    pieces, total = [], 0
    for text in texts:
        ids = tokenizer.encode(text) + [tokenizer.eos_id]
        pieces.append(torch.tensor(ids, dtype=torch.long))
        total += len(ids)
        if max_tokens is not None and total >= max_tokens:
            break
    stream = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)
    return stream if max_tokens is None else stream[:max_tokens]


def _check(tokens: Tensor, seq_len: int) -> None:
    if tokens.dim() != 1 or tokens.dtype != torch.long:
        raise ValueError(f"tokens must be a 1-D int64 stream, got {tuple(tokens.shape)} {tokens.dtype}")
    if not isinstance(seq_len, int) or seq_len < 2:
        raise ValueError(f"seq_len must be an integer >= 2 (a next-token target needs two tokens), got {seq_len!r}")
    if tokens.numel() < seq_len:
        raise ValueError(f"the stream has {tokens.numel()} tokens, fewer than one block of {seq_len}")


def token_blocks(tokens: Tensor, seq_len: int, *, max_blocks: int | None = None) -> Tensor:
    """Consecutive non-overlapping blocks from the start: (min(n // seq_len, max_blocks), seq_len)."""
    _check(tokens, seq_len)
    count = tokens.numel() // seq_len
    if max_blocks is not None:
        count = min(count, max_blocks)
    return tokens[: count * seq_len].reshape(count, seq_len).clone()


def sample_blocks(tokens: Tensor, seq_len: int, count: int, *, seed: int = 0) -> Tensor:
    """`count` windows of seq_len tokens at offsets drawn uniformly from a generator seeded by `seed`."""
    _check(tokens, seq_len)
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, tokens.numel() - seq_len + 1, (count,), generator=generator)
    return torch.stack([tokens[start : start + seq_len] for start in starts.tolist()])


def as_batches(blocks: Tensor, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """``(inputs, targets)`` batches of `batch_size` blocks (the last may be smaller); targets are inputs."""
    if blocks.dim() != 2:
        raise ValueError(f"blocks must be (count, seq_len), got shape {tuple(blocks.shape)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    for start in range(0, blocks.shape[0], batch_size):
        batch = blocks[start : start + batch_size]
        yield batch, batch
