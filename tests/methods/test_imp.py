import pytest
import torch
from safetensors.torch import load_file

from slimkit.runs.config import make_config
from slimkit.methods.imp import round_sparsity
from slimkit.runs import train_run

IMP = dict(model="lenet300", data="synthetic", epochs=3, batch_size=128, method="imp", sparsity=0.9,
           imp_rounds=2, rewind_epoch=1, progress="none")


def test_round_sparsity_is_geometric():
    assert round_sparsity(0.9, 0, 3) == 0.0
    assert round_sparsity(0.9, 3, 3) == pytest.approx(0.9)
    kept = [1 - round_sparsity(0.99, r, 4) for r in range(5)]
    ratios = [b / a for a, b in zip(kept, kept[1:])]
    assert ratios == pytest.approx([ratios[0]] * 4)
    with pytest.raises(ValueError, match="at least one"):
        round_sparsity(0.9, 0, 0)


class _FirstWeights:
    """Captures fc1's effective weight when a round starts training."""

    from slimkit.train import Callback as _Base

    class Hook(_Base):
        def __init__(self):
            self.seen = []

        def on_epoch_start(self, trainer, epoch):
            if not self.seen or self.seen[-1][0] != id(trainer):
                self.seen.append((id(trainer), trainer.epoch, trainer.model.fc1.weight.detach().clone()))


def test_lottery_rounds_rewind_prune_and_reach_the_target(tmp_path):
    hook = _FirstWeights.Hook()
    metrics = train_run(make_config(IMP), tmp_path, callbacks=[hook])
    assert [r["round"] for r in metrics["rounds"]] == [0, 1, 2]
    assert metrics["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert metrics["rounds"][1]["sparsity"] == pytest.approx(1 - 0.1**0.5, abs=1e-3)
    rewind = load_file(tmp_path / "rewind.safetensors")["fc1.weight"]
    (_, start0, w0), (_, start1, w1), (_, start2, w2) = hook.seen
    assert (start0, start1, start2) == (0, 1, 1)  # later rounds continue from the rewind epoch
    for w in (w1, w2):
        kept = w != 0
        assert torch.equal(w[kept], rewind[kept])  # survivors carry their rewound values
    assert (w2 != 0).sum() < (w1 != 0).sum()
    assert torch.all(w2[w1 == 0] == 0)  # once pruned, never back
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert history[0].startswith("round,") and len(history) == 1 + 3 + 2 + 2


def test_random_reinit_control_differs_from_rewinding(tmp_path):
    hook = _FirstWeights.Hook()
    train_run(make_config({**IMP, "imp_reinit": "random", "imp_rounds": 1}), tmp_path, callbacks=[hook])
    rewind = load_file(tmp_path / "rewind.safetensors")["fc1.weight"]
    w1 = hook.seen[1][2]
    kept = w1 != 0
    assert not torch.equal(w1[kept], rewind[kept])


def test_imp_resumes_inside_a_round(tmp_path):
    from tests.train.test_loop import CrashAt

    class CrashInRound1(CrashAt):
        def on_epoch_start(self, trainer, epoch):
            if trainer.out_dir.name == "round-1":
                super().on_epoch_start(trainer, epoch)

    reference = train_run(make_config(IMP), tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):
        train_run(make_config(IMP), tmp_path / "run", callbacks=[CrashInRound1(2)])
    resumed = train_run(make_config(IMP), tmp_path / "run", resume=True)
    assert [r["test_acc"] for r in resumed["rounds"]] == [r["test_acc"] for r in reference["rounds"]]


def test_rewind_epoch_must_come_before_the_end():
    with pytest.raises(ValueError, match="rewind_epoch"):
        make_config({**IMP, "rewind_epoch": 3})


def test_explicit_round_sparsities(tmp_path):
    config = make_config({**IMP, "epochs": 2, "imp_sparsities": [0.5, 0.8, 0.9]})
    metrics = train_run(config, tmp_path)
    assert [round(r["sparsity"], 3) for r in metrics["rounds"]] == [0.0, 0.5, 0.8, 0.9]
    with pytest.raises(ValueError, match="imp_sparsities"):
        make_config({**IMP, "imp_sparsities": [0.8, 0.5, 0.9]})
    with pytest.raises(ValueError, match="imp_sparsities"):
        make_config({**IMP, "imp_sparsities": [0.5, 0.8]})  # must end at the target
