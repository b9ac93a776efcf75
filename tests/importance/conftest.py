import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is much faster on a shared machine (conftest restores the count)."""
    torch.set_num_threads(1)
