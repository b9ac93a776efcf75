"""Progress of the long pruning computations in 'log' mode (bounded lines) and 'none' (silent)."""

import logging

import pytest
import torch
from torch import nn

import slimkit.utils.progress as progress_module
from slimkit.methods import PruneOnce
from slimkit.importance import ScoringInputs, obd, obs_prune


@pytest.fixture(autouse=True)
def _fast_and_logged(monkeypatch, caplog):
    torch.set_num_threads(1)  # tiny tensors (conftest restores the count)
    monkeypatch.setattr(progress_module, "LOG_DELAY_S", 0.0)  # every operation here is shorter than the delay
    caplog.set_level(logging.INFO, logger="slimkit")


def lines(caplog, prefix: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(prefix)]


def tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    batches = [(torch.randn(5, 6), torch.randint(0, 3, (5,))) for _ in range(4)]
    return model, {"fc1": model[0], "fc2": model[2]}, batches


def test_obd_hessian_estimation_logs_at_most_ten_lines(caplog, capsys):
    model, layers, batches = tiny()
    obd(model, layers, ScoringInputs(batches, num_batches=4, progress="log"), samples=5)  # 20 Hessian-vector products
    written = lines(caplog, "obd hessian")
    assert len(written) == 10
    assert written[-1].startswith("obd hessian: 20/20 hvps done (100%")
    caplog.clear()
    obd(model, layers, ScoringInputs(batches, num_batches=4, progress="none"), estimator="fisher", samples=5)
    assert caplog.records == [] and capsys.readouterr() == ("", "")


def test_obs_logs_its_calibration_pass_and_layer_solves(caplog, capsys):
    model, layers, batches = tiny()
    obs_prune(model, layers, batches, {"fc1": 0.5, "fc2": 0.5}, num_batches=3, progress="log")
    assert [line.split(" (")[0] for line in lines(caplog, "obs")] == [
        "obs calibration: 1/3 batches done", "obs calibration: 2/3 batches done", "obs calibration: 3/3 batches done",
        "obs layers: 1/2 layers done", "obs layers: 2/2 layers done",
    ]
    caplog.clear()
    model, layers, batches = tiny()
    obs_prune(model, layers, batches, {"fc1": 0.5, "fc2": 0.5}, num_batches=3, progress="none")
    assert caplog.records == [] and capsys.readouterr() == ("", "")


@pytest.mark.parametrize("mode", ["log", "none"])
def test_synflow_iterations(mode, caplog, capsys):
    model, _, _ = tiny()
    method = PruneOnce(model, sparsity=0.9, criterion="synflow", input_shape=(6,), synflow_iterations=40,
                       progress=mode)
    method.bind(None, 10)  # prunes now
    written = lines(caplog, "synflow")
    if mode == "log":
        assert len(written) == 10 and written[-1].startswith("synflow: 40/40 iterations done (100%")
    else:
        # no progress at all (the tiny model's layers may still draw the too-few-weights warning)
        progress = [r for r in caplog.records if "outputs: some outputs get no weight" not in r.getMessage()]
        assert progress == [] and capsys.readouterr() == ("", "")
