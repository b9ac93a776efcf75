"""Run folders written by slimkit 0.1.0 before the architecture step (commit 9047e3f) still load,
predict the same, report, refuse what they refused and resume.

tests/fixtures/runs-0.1.0 holds two tiny folders that version wrote, and the outputs its models
gave on fixed inputs:
- mest-mlp: `slimkit train --model mlp --model-options '{hidden: [32]}' --data synthetic --epochs 2
  --batch-size 64 --method mest-ems --sparsity 0.8 --storage compressed` (compressed layers, with
  its checkpoint);
- channels-lenet5: `slimkit prune-channels --ratio 0.5 --finetune-epochs 1` of a one-epoch LeNet-5
  on the same data (a channel-pruned architecture; its checkpoint was left out to keep it small).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from slimkit.export import load_model
from slimkit.report import metrics_table
from slimkit.runs import RunFolderError, load_config, read_metrics, refuse_train_on_derived_run, train_run

FIXTURES = Path(__file__).parents[1] / "fixtures" / "runs-0.1.0"
EXPECTED = load_file(FIXTURES / "expected_outputs.safetensors")


@pytest.mark.parametrize("name", ["mest-mlp", "channels-lenet5"])
def test_old_models_load_and_predict_the_same(name):
    model, sidecar = load_model(FIXTURES / name)
    key = name.replace("-", "_")
    with torch.no_grad():
        logits = model.eval()(EXPECTED[f"{key}_input"])
    torch.testing.assert_close(logits, EXPECTED[f"{key}_logits"], rtol=1e-5, atol=1e-6)
    assert sidecar["slimkit_version"]


def test_old_compressed_layers_come_back_compressed():
    _, sidecar = load_model(FIXTURES / "mest-mlp")
    assert sidecar["compressed_layers"]
    assert read_metrics(FIXTURES / "mest-mlp")["compressed_layers"] == sorted(sidecar["compressed_layers"])


def test_old_folders_are_read_by_info_and_report():
    runs = [(str(FIXTURES / name), read_metrics(FIXTURES / name)) for name in ("mest-mlp", "channels-lenet5")]
    table = metrics_table(runs)
    assert "mest-mlp" in table and "channels-lenet5" in table
    assert load_config(FIXTURES / "mest-mlp" / "config.yaml").method == "mest-ems"


def test_old_channel_pruned_folder_is_still_refused_by_plain_train():
    with pytest.raises(RunFolderError, match="channel-pruned"):
        refuse_train_on_derived_run(FIXTURES / "channels-lenet5", "slimkit train --resume")


def test_old_checkpoint_resumes(tmp_path):
    """The method's and compressed layers' checkpointed state load into today's classes; the
    finished run's figures come out unchanged."""
    run = tmp_path / "mest-mlp"
    shutil.copytree(FIXTURES / "mest-mlp", run)
    before = read_metrics(run)
    after = train_run(load_config(run / "config.yaml"), run, resume=True)
    assert after["test_acc"] == before["test_acc"]
    assert after["sparsity"] == pytest.approx(before["sparsity"])
    old, _ = load_model(FIXTURES / "mest-mlp")
    new, _ = load_model(run)
    for (key, a), (_, b) in zip(old.state_dict().items(), new.state_dict().items()):
        assert torch.equal(a, b), key


def test_an_emptied_config_is_not_resumed_as_the_defaults(tmp_path):
    run = tmp_path / "mest-mlp"
    shutil.copytree(FIXTURES / "mest-mlp", run)
    (run / "config.yaml").write_text("")
    with pytest.raises(RunFolderError, match="config.yaml is empty"):
        train_run(load_config(FIXTURES / "mest-mlp" / "config.yaml"), run, resume=True)
