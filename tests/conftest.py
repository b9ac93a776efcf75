import os

import pytest
import torch

os.environ.setdefault("PYTHONHASHSEED", "0")


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    """Tests compare runs bit for bit; keep torch's thread count fixed within a test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
