"""Shared check: a sparse run crashed after epoch 2 and resumed ends with the same weights."""

import pytest
import torch

from slimkit.runs.config import make_config
from slimkit.runs import build_trainer
from tests.train.test_loop import CrashAt


def assert_resume_is_exact(values: dict, tmp_path) -> None:
    reference, _ = build_trainer(make_config(values), None)
    reference.fit()
    crashed, _ = build_trainer(make_config(values), tmp_path, [CrashAt(2)])
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    resumed, _ = build_trainer(make_config(values), tmp_path)
    resumed.resume()
    resumed.fit()
    for key, value in reference.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
