"""Distributed data parallel training through PyTorch's own DDP, launched with `torchrun`.

`setup()` joins the process group that torchrun describes in the environment (gloo on CPU, NCCL
on CUDA). Every rank then trains on its slice of each global batch, DDP averages gradients, and
sparsity methods broadcast their masks from rank 0 whenever masks change, so masks are identical
on every rank by construction.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def setup(device: str = "cpu") -> tuple[int, int]:
    """Join torchrun's process group if the environment describes one; returns (rank, world size)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return rank(), world_size()


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """In place: every rank ends with rank `src`'s values (bool tensors go through uint8)."""
    if not is_distributed():
        return tensor
    if tensor.dtype == torch.bool:
        carrier = tensor.to(torch.uint8)
        dist.broadcast(carrier, src)
        tensor.copy_(carrier.bool())
    else:
        dist.broadcast(tensor, src)
    return tensor


def all_reduce_mean_(tensor: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(tensor)
        tensor.div_(world_size())
    return tensor
