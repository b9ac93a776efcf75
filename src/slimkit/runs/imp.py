"""Iterative magnitude pruning with rewinding (lottery tickets): round 0 trains dense; each later
round prunes by magnitude, rewinds and retrains, each in a run folder of its own."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

from safetensors.torch import load_file, save_file
from torch import nn

from slimkit.export import load_model
from slimkit.methods import FixedMasks
from slimkit.methods.imp import magnitude_masks, round_sparsity
from slimkit.metrics.params import prunable_layers
from slimkit.runs.build import load_data, logging_callbacks, make_model
from slimkit.runs.config import RunConfig
from slimkit.runs.finish import finish_run
from slimkit.sparse import make_scheme
from slimkit.train import Callback, Trainer
from slimkit.train.loop import write_history_csv
from slimkit.utils import distributed
from slimkit.utils.fileio import atomic_copy, atomic_write, atomic_write_json, remove_stale_temp_files
from slimkit.utils.progress import progress, report
from slimkit.utils.run_folder import (
    HISTORY_FILE, REWIND_FILE, RUN_FILES, SIDECAR_FILE, TENSORBOARD_DIR, WEIGHTS_FILE, RunFolder, read_metrics,
)


class WeightSnapshot(Callback):
    """Saves the model's weights at the end of epoch `epoch` (0: before training) for rewinding."""

    def __init__(self, epoch: int, path: Path) -> None:
        self.epoch, self.path = epoch, path

    def _save(self, model: nn.Module) -> None:
        tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        atomic_write(self.path, lambda tmp: save_file(tensors, tmp))

    def on_train_start(self, trainer: Trainer) -> None:
        if self.epoch == 0 and trainer.epoch == 0:
            self._save(trainer.model)

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        if epoch + 1 == self.epoch:
            self._save(trainer.model)


def imp_run(
    config: RunConfig, out: Path, *, resume: bool = False, callbacks: Sequence[Callback] = ()
) -> dict[str, Any]:
    """Round 0 trains dense; each later round prunes by magnitude, rewinds and retrains.

    Each round is an ordinary run folder `out/round-R/` (resumable on its own); `out/` gets the
    final round's model and metrics, plus every round's results under "rounds" and a combined
    history.csv with a `round` column.
    """
    if distributed.is_distributed():
        raise ValueError("imp runs its rounds in one process; launch it without torchrun / --nproc")
    info, loaders = load_data(config)
    scheme = make_scheme(config.scheme, **config.scheme_options)
    schedule = [0.0] + (config.imp_sparsities or [
        round_sparsity(config.sparsity, r, config.imp_rounds) for r in range(1, config.imp_rounds + 1)
    ])
    rounds, previous = [], None
    # A bar over the rounds (each round's epochs show their own); in log mode the round line below.
    for r, sparsity in progress(enumerate(schedule), total=len(schedule), desc="imp rounds", mode=config.progress,
                                unit="rounds", log_lines=0):
        round_dir = out / f"round-{r}"
        remove_stale_temp_files(round_dir, RUN_FILES)  # left by a killed round; `out` is held by this run
        if RunFolder(round_dir).is_finished():  # finished before an interruption
            previous, _ = load_model(round_dir)
            rounds.append(read_metrics(round_dir))
            continue
        round_config = config.model_copy(update={"method": "dense" if r == 0 else "imp", "sparsity": sparsity})
        model = make_model(config, info, seed=config.seed if config.imp_reinit == "rewind" else config.seed + 1000 * r)
        extra: list[Callback] = []
        if r == 0:
            extra.append(WeightSnapshot(config.rewind_epoch, out / REWIND_FILE))
        else:
            if config.imp_reinit == "rewind":
                model.load_state_dict(load_file(out / REWIND_FILE))
            layers = {n: m for n, m in prunable_layers(previous).items() if scheme.supports(m)}
            masks = magnitude_masks(previous, layers, sparsity, scheme, config.allocation, tuple(config.dense_layers))
            extra.append(FixedMasks(model, masks, scheme=scheme))
        report(f"== imp round {r}/{len(schedule) - 1}: sparsity {sparsity:.2%}", config.progress)
        loggers = logging_callbacks(config, out / TENSORBOARD_DIR / f"round-{r}")  # one TensorBoard run per round
        trainer = Trainer(model, loaders, round_config, callbacks=extra + list(callbacks) + loggers, out_dir=round_dir)
        if resume and RunFolder(round_dir).checkpoint.exists():
            trainer.resume(RunFolder(round_dir).checkpoint)
        elif r > 0:
            trainer.epoch = config.rewind_epoch  # continue round 0's schedule from the rewind point
        trainer.fit()
        rounds.append(finish_run(round_config, trainer, info, round_dir))
        previous = trainer.model
    return _summarise_imp(config, out, rounds)


def _summarise_imp(config: RunConfig, out: Path, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    final_dir = out / f"round-{len(rounds) - 1}"
    for name in (WEIGHTS_FILE, SIDECAR_FILE):
        atomic_copy(final_dir / name, out / name)
    history = []
    for r in range(len(rounds)):
        with open(out / f"round-{r}" / HISTORY_FILE) as f:
            history += [{"round": r, **row} for row in csv.DictReader(f)]
    write_history_csv(out / HISTORY_FILE, history)
    metrics = {**rounds[-1], "method": "imp", "target_sparsity": config.sparsity}
    metrics["rounds"] = [
        {"round": r, "sparsity": m["sparsity"], "test_acc": m["test_acc"], "train_time_s": m["train_time_s"]}
        for r, m in enumerate(rounds)
    ]
    metrics["train_time_s"] = sum(m["train_time_s"] for m in rounds)
    atomic_write_json(RunFolder(out).metrics, metrics)
    return metrics
