"""Memory measurements.

`PeakRSS` measures the peak resident set size of this process (what `top` shows: Python, the torch
libraries, the dataset, the model, optimizer state and activations) over a block of code. On Linux
the kernel's high-water mark is reset first (`/proc/self/clear_refs`), so the peak belongs to that
block alone; elsewhere it falls back to the lifetime peak from `getrusage`.

`training_state_bytes` counts exactly the tensors a training run keeps between steps: parameters,
buffers, gradients and optimizer state, each storage once. It is the figure that sparse storage
formats shrink, and it does not depend on allocator behaviour.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
import sys
from pathlib import Path

import torch
from torch import nn

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_bytes() -> int:
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else 0


def release_freed_memory() -> None:
    """Give freed heap memory back to the OS (glibc `malloc_trim`; a no-op elsewhere).

    glibc keeps freed blocks below its (adaptive, up to 32 MiB) mmap threshold in the heap, so
    after set-up (dense init, masks, scores) RSS stays high although the tensors are gone, and a
    peak measured from there would charge the set-up's leftovers to training.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRSS:
    """Context manager; `peak_bytes` is the peak RSS reached inside the block (freed heap memory
    is returned to the OS first, so the block's peak is its own)."""

    def __init__(self) -> None:
        self.method = "VmHWM"
        self.peak_bytes = 0

    def __enter__(self) -> PeakRSS:
        gc.collect()
        release_freed_memory()
        try:
            _CLEAR_REFS.write_text("5")  # reset the peak RSS to the current RSS
        except OSError:
            self.method = "ru_maxrss"
        return self

    def read(self) -> int:
        kib = _status_kib("VmHWM") if self.method == "VmHWM" else None
        if kib is None:
            self.method = "ru_maxrss"
            kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if sys.platform == "darwin":
                kib //= 1024
        return kib * 1024

    def __exit__(self, *exc) -> None:
        self.peak_bytes = self.read()


def training_state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                         trained: bool = False) -> int:
    """Bytes of weights, buffers, gradients and optimizer state. `trained`: count a gradient for
    every parameter the optimizer trains even if none is allocated now (a run resumed after its last
    epoch takes no step in this process, yet its training held them), so the figure does not depend on it."""
    seen: set[int] = set()
    total = 0

    def add(tensor: torch.Tensor | None) -> None:
        nonlocal total
        if not isinstance(tensor, torch.Tensor) or tensor.numel() == 0:
            return
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen:
            return
        seen.add(storage.data_ptr())
        total += storage.nbytes()

    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]} if trained and optimizer else set()
    for tensor in list(model.parameters()) + list(model.buffers()):
        add(tensor)
        if tensor.grad is not None:
            add(tensor.grad)
        elif id(tensor) in optimized:
            total += tensor.numel() * tensor.element_size()  # the gradient it held while training
    if optimizer is not None:
        for state in optimizer.state.values():
            for value in state.values():
                add(value)
    return total
