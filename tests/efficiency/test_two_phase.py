"""Two-phase training end to end on the synthetic set: the phase-2 subset never holds a removed
example, the switch and the statistics survive a crash and resume exactly, and a run folder gets
forgetting.npz, the plots and the savings in metrics.json."""

import json

import numpy as np
import pytest
import torch

from slimkit.runs.config import make_config
from slimkit.efficiency import ForgettingTracker, TwoPhaseTraining, training_savings
from slimkit.methods import SparsityMethod
from slimkit.runs import build_trainer, train_run
from slimkit.train import Callback
from tests.train.test_loop import CrashAt

VALUES = dict(model="lenet300", data="synthetic", epochs=4, batch_size=64, lr=0.05, progress="none",
              data_efficient=True, stats_epochs=2, remove_fraction=0.3)


class SeenIndices(Callback):
    def __init__(self):
        self.per_epoch = {}

    def on_after_forward(self, trainer, step):
        self.per_epoch.setdefault(step.epoch, []).append(step.indices.clone())


def _parts(trainer):
    tracker = next(cb for cb in trainer.callbacks if isinstance(cb, ForgettingTracker))
    switch = next(cb for cb in trainer.callbacks if isinstance(cb, TwoPhaseTraining))
    return tracker, switch


@pytest.mark.parametrize("rule", [{"remove_fraction": 0.3}, {"remove_fraction": None, "stats_epochs": 3,
                                                             "remove_forgetting_le": 0}])
def test_phase_two_never_sees_removed_examples(rule):
    seen = SeenIndices()
    trainer, _ = build_trainer(make_config({**VALUES, **rule}), None, [seen])
    trainer.fit()
    tracker, switch = _parts(trainer)
    stats = VALUES["stats_epochs"] if "stats_epochs" not in rule else rule["stats_epochs"]
    removed = switch.removed
    assert removed is not None and 0 < int(removed.sum()) < 512
    if "remove_forgetting_le" in rule and rule["remove_forgetting_le"] is not None:
        assert torch.equal(removed, tracker.learned & (tracker.forgetting <= 0))
    else:
        assert int(removed.sum()) == int(0.3 * 512)
    for epoch, batches in seen.per_epoch.items():
        indices = torch.cat(batches)
        if epoch < stats:
            assert sorted(indices.tolist()) == list(range(512))  # full set, each example once
        else:
            assert not removed[indices].any()
            assert sorted(indices.tolist()) == switch.kept_indices.tolist()
    assert tracker.epochs_recorded == stats
    assert [row["data_phase"] for row in trainer.history] == [1] * stats + [2] * (4 - stats)


@pytest.mark.parametrize("crash_epoch", [1, 3])  # during the statistics phase / after the switch
def test_crash_and_resume_is_exact(tmp_path, crash_epoch):
    values = {**VALUES, "method": "mest-ems", "sparsity": 0.8, "update_every": 5}
    reference, _ = build_trainer(make_config(values), None)
    reference.fit()
    crashed, _ = build_trainer(make_config(values), tmp_path, [CrashAt(crash_epoch)])
    with pytest.raises(KeyboardInterrupt):
        crashed.fit()
    resumed, _ = build_trainer(make_config(values), tmp_path)
    resumed.resume()
    resumed.fit()
    (ref_tracker, ref_switch), (tracker, switch) = _parts(reference), _parts(resumed)
    assert torch.equal(ref_switch.removed, switch.removed)
    for name in ("forgetting", "first_learned", "presentations", "last_correct"):
        assert torch.equal(getattr(ref_tracker, name), getattr(tracker, name)), name
    for key, value in reference.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert resumed.global_step == reference.global_step == 2 * 8 + 2 * 6  # 512 then 359 examples, batch 64
    method = next(cb for cb in resumed.callbacks if isinstance(cb, SparsityMethod))
    assert method.total_steps == resumed.global_step  # the method's schedule follows the real step count


def test_run_folder_outputs_and_metrics(tmp_path):
    metrics = train_run(make_config(VALUES), tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["examples_removed"] == int(0.3 * 512) == metrics["examples_removed"]
    assert saved["train_examples_processed"] == 2 * 512 + 2 * (512 - 153)
    assert saved["train_examples_full"] == 4 * 512
    assert saved["train_compute_saved"] == pytest.approx(1 - saved["train_examples_processed"] / (4 * 512))
    assert saved["data_efficient"] is True and saved["unforgettable"] == saved["forgetting"]["unforgettable"]
    arrays = np.load(tmp_path / "forgetting.npz")
    assert arrays["forgetting_counts"].shape == (512,) and arrays["removed"].sum() == 153
    assert arrays["first_learned_epoch"].max() < 2 and (arrays["presentations"] == 2).all()
    unforgettable = (arrays["first_learned_epoch"] >= 0) & (arrays["forgetting_counts"] == 0)
    assert saved["unforgettable"] == int(unforgettable.sum())
    for name in ("forgetting_hist.png", "forgetting_examples.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_all_epochs_mode_tracks_the_whole_run_and_removes_nothing(tmp_path):
    values = {k: v for k, v in VALUES.items() if k not in ("data_efficient", "stats_epochs", "remove_fraction")}
    metrics = train_run(make_config({**values, "epochs": 3, "forgetting_stats": True}), tmp_path)
    arrays = np.load(tmp_path / "forgetting.npz")
    assert (arrays["presentations"] == 3).all() and not arrays["removed"].any()
    assert metrics["forgetting"]["forgetting_epochs"] == 3 and metrics["data_efficient"] is False
    assert metrics["train_examples_processed"] == 3 * 512


def test_savings_weight_examples_by_each_epochs_flops():
    history = [
        {"examples_global": 100, "forward_flops": 10, "epoch_time_s": 2.0, "data_phase": 1},
        {"examples_global": 50, "forward_flops": 30, "epoch_time_s": 1.0, "data_phase": 2},
    ]
    savings = training_savings(history, 100, forward_flops_dense=1000)
    assert savings["train_flops_est"] == 3 * (100 * 10 + 50 * 30)
    assert savings["train_flops_full_est"] == 3 * (100 * 10 + 100 * 30)
    assert savings["train_compute_saved"] == pytest.approx(1 - 2500 / 4000)
    assert savings["train_time_saved_s_est"] == pytest.approx(0.02 * 50)
    with pytest.raises(ValueError, match="examples_global"):
        training_savings([{"epoch": 1}], 100, 1000)
