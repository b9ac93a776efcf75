import json

import pytest
import torch
from safetensors.torch import load_file

from slimkit.cli import main
from slimkit.runs.config import RunConfig
from slimkit.export import load_model
from slimkit.runs import channels as structured_runs
from slimkit.runs import RunFolderError, train_run
from slimkit.runs import prune_channels_run
from tests.train.test_loop import CrashAt

QUICK = ["--data", "synthetic", "--epochs", "1", "--batch-size", "128", "--progress", "none"]


@pytest.fixture(scope="module")
def slim_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("slim") / "run"
    assert main(["slim", "--model", "resnet20", *QUICK, "--sparsity-l1", "1e-4", "--prune-ratio", "0.5",
                 "--finetune-epochs", "1", "--out", str(out)]) == 0
    return out


def test_slim_writes_a_smaller_model_that_loads_back(slim_run):
    metrics = json.loads((slim_run / "metrics.json").read_text())
    for key in ("params_before", "params_after", "flops_before", "flops_after", "latency_ms_before",
                "latency_ms_after", "test_acc", "test_acc_before_finetune", "test_acc_source"):
        assert key in metrics
    assert metrics["params_after"] < 0.7 * metrics["params_before"]
    assert metrics["flops_after"] < 0.7 * metrics["flops_before"]
    model, sidecar = load_model(slim_run)
    assert sidecar["structured_pruned"] is True
    assert sum(p.numel() for p in model.parameters()) == metrics["params_after"]
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert (slim_run / "train" / "metrics.json").exists() and (slim_run / "config.yaml").exists()


def test_prune_channels_then_export_onnx(slim_run, tmp_path, capsys):
    out = tmp_path / "pc"
    assert main(["prune-channels", "--from", str(slim_run), "--ratio", "0.3", "--criterion", "taylor",
                 "--finetune-epochs", "1", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "channel-taylor" and metrics["params_after"] < metrics["params_before"]
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(out), "--onnx", str(onnx_path)]) == 0
    assert onnx_path.exists() and "max abs diff" in capsys.readouterr().out


def test_prune_channels_rejects_bad_ratio(slim_run, tmp_path, capsys):
    assert main(["prune-channels", "--from", str(slim_run), "--ratio", "1.5", "--out", str(tmp_path / "x")]) == 2
    assert "ratio must be in (0, 1)" in capsys.readouterr().err


def test_prune_channels_takes_fine_tuning_settings(slim_run, tmp_path):
    out = tmp_path / "pc"
    assert main(["prune-channels", "--from", str(slim_run / "train"), "--ratio", "0.5", "--criterion", "bn_gamma",
                 "--scope", "global", "--finetune-epochs", "1", "--lr", "0.003", "--batch-size", "64",
                 "--progress", "log", "--out", str(out)]) == 0
    config = (out / "config.yaml").read_text()
    assert "lr: 0.003" in config and "batch_size: 64" in config and "progress: log" in config


def test_prune_channels_refuses_a_bad_setting(slim_run, tmp_path, capsys):
    assert main(["prune-channels", "--from", str(slim_run / "train"), "--lr", "-1", "--out", str(tmp_path / "x")]) == 2
    assert "lr" in capsys.readouterr().err


def test_plain_resume_refuses_the_l1_training_of_a_slim_run(slim_run):
    with pytest.raises(RunFolderError, match="the same `slimkit slim` command"):
        train_run(RunConfig(), slim_run / "train", resume=True)


def test_plain_train_refuses_a_channel_pruned_run(slim_run, tmp_path, capsys):
    """Its config.yaml describes the unpruned source: plain `train` would fine-tune the wrong model."""
    assert main(["train", "--config", str(slim_run / "config.yaml"), "--out", str(tmp_path / "rerun")]) == 2
    assert "channel-pruned model (pruning.json)" in capsys.readouterr().err
    with pytest.raises(RunFolderError, match="slimkit prune-channels"):
        train_run(RunConfig(), slim_run, resume=True)


def test_channel_fine_tuning_of_a_data_efficient_run_does_not_inherit_its_schedule(tmp_path):
    """The source's stats_epochs (longer than the fine-tuning) describe its training, not the fine-tuning's."""
    source = tmp_path / "source"
    assert main(["train", "--model", "lenet5", *QUICK, "--epochs", "3", "--data-efficient", "--stats-epochs", "2",
                 "--remove-fraction", "0.2", "--out", str(source)]) == 0
    out = tmp_path / "pc"
    assert main(["prune-channels", "--from", str(source), "--ratio", "0.5", "--finetune-epochs", "1",
                 "--out", str(out)]) == 0
    assert "data_efficient: false" in (out / "config.yaml").read_text()
    assert main(["prune", "--from", str(source), "--method", "magnitude", "--sparsity", "0.5",
                 "--finetune-epochs", "1", "--out", str(tmp_path / "magnitude")]) == 0


def test_interrupted_channel_fine_tuning_continues_where_it_stopped(slim_run, tmp_path, monkeypatch):
    settings = dict(ratio=0.5, criterion="l1", finetune_epochs=2, overrides={"progress": "none"})
    reference = prune_channels_run(slim_run / "train", tmp_path / "reference", **settings)
    with monkeypatch.context() as patch:
        patch.setattr(structured_runs, "logging_callbacks", lambda config, path: [CrashAt(1)])
        with pytest.raises(KeyboardInterrupt):
            prune_channels_run(slim_run / "train", tmp_path / "resumed", **settings)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    with pytest.raises(RunFolderError, match="other settings .channel_prune_ratio: 0.5 -> 0.3"):
        prune_channels_run(slim_run / "train", tmp_path / "resumed", **{**settings, "ratio": 0.3})
    resumed = prune_channels_run(slim_run / "train", tmp_path / "resumed", **settings)
    assert resumed["test_acc"] == reference["test_acc"]
    expected, got = (load_file(tmp_path / name / "model.safetensors") for name in ("reference", "resumed"))
    assert all(torch.equal(value, got[key]) for key, value in expected.items())
