"""Distillation runs resume with their teachers; plain `train --resume` refuses them."""

import pytest
from safetensors.torch import load_file

from slimkit.cli import main
from slimkit.runs.config import RunConfig, make_config
from slimkit.distill import Distillation
from slimkit.runs import distill_run, quantize_run, resume_distill_run
from slimkit.runs import RunFolderError, train_run

VALUES = dict(model="lenet300", data="synthetic", epochs=3, batch_size=64, lr=0.05, progress="none")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    train_run(make_config({**VALUES, "epochs": 1, "seed": 7}), out)
    return out


def _crash_at_epoch_2(self, trainer, epoch):
    if epoch == 2:
        raise KeyboardInterrupt


def test_interrupted_distillation_resumes_exactly_with_its_teacher(tmp_path, teacher, monkeypatch):
    reference = distill_run(make_config(VALUES), [teacher], tmp_path / "reference", temperature=2.0, alpha=0.7)
    with monkeypatch.context() as patch:
        patch.setattr(Distillation, "on_epoch_start", _crash_at_epoch_2, raising=False)
        with pytest.raises(KeyboardInterrupt):
            distill_run(make_config(VALUES), [teacher], tmp_path / "kd", temperature=2.0, alpha=0.7)
    resumed = resume_distill_run(tmp_path / "kd")
    assert resumed["kd_temperature"] == 2.0 and resumed["kd_alpha"] == 0.7
    assert resumed["teachers"] == [str(teacher)]
    expected, got = load_file(tmp_path / "reference" / "model.safetensors"), load_file(tmp_path / "kd" / "model.safetensors")
    for name, value in expected.items():
        assert (value == got[name]).all(), name
    assert resumed["test_acc"] == reference["test_acc"]


def test_plain_resume_refuses_a_distillation_run_and_names_the_command(tmp_path, teacher):
    out = tmp_path / "kd"
    distill_run(make_config({**VALUES, "epochs": 1}), [teacher], out)
    with pytest.raises(RunFolderError, match=f"slimkit distill --resume {out}"):
        train_run(RunConfig(), out, resume=True)


def test_train_config_of_a_distillation_run_is_refused(tmp_path, teacher, capsys):
    """Rerunning its config.yaml with plain `train` would silently drop the teacher."""
    out = tmp_path / "kd"
    distill_run(make_config({**VALUES, "epochs": 1}), [teacher], out)
    assert main(["train", "--config", str(out / "config.yaml"), "--out", str(tmp_path / "rerun")]) == 2
    assert "distillation (loss_terms.json)" in capsys.readouterr().err
    assert not (tmp_path / "rerun").exists()


def test_resume_with_other_distillation_settings_is_refused(tmp_path, teacher):
    out = tmp_path / "kd"
    distill_run(make_config({**VALUES, "epochs": 1}), [teacher], out, temperature=2.0)
    (out / "metrics.json").unlink()  # as if interrupted
    with pytest.raises(RunFolderError, match="distillation.temperature: 2.0 -> 3.0"):
        distill_run(make_config(VALUES), [teacher], out, temperature=3.0, resume=True)


def test_distill_resume_of_a_plain_run_is_refused(teacher):
    with pytest.raises(RunFolderError, match="no distillation settings"):
        resume_distill_run(teacher)


def test_cli_distill_resume_takes_no_other_flags(tmp_path, teacher, capsys):
    for flag in (["--epochs", "2"], ["--temperature", "2"]):
        assert main(["distill", "--resume", str(tmp_path), *flag]) == 2
        assert "drop the other flags" in capsys.readouterr().err
    assert main(["distill", "--student", "lenet300", "--out", str(tmp_path / "x")]) == 2
    assert "--teacher" in capsys.readouterr().err


DESIGN_METRICS_KEYS = ("model", "dataset", "method", "scheme", "target_sparsity", "sparsity", "test_acc",
                       "params_total", "params_nonzero", "flops_dense", "flops_sparse", "train_time_s",
                       "peak_mem_bytes", "epochs", "seed", "slimkit_version")


@pytest.mark.parametrize("mode", ["dynamic", "qat"])
def test_quantize_metrics_have_every_run_folder_key(tmp_path, teacher, mode):
    metrics = quantize_run(teacher, tmp_path / "int8", mode=mode, qat_epochs=1, latency_repeats=2)
    assert [key for key in DESIGN_METRICS_KEYS if key not in metrics] == []
    assert metrics["seed"] == 7 and metrics["target_sparsity"] == 0.0
    if mode == "qat":
        assert metrics["epochs"] == 1 and metrics["train_time_s"] > 0 and metrics["peak_mem_bytes"] > 0
    else:
        assert metrics["epochs"] == 0 and metrics["train_time_s"] is None
