"""A run end to end: config -> data -> model -> method -> training -> the run folder.

Run folder contract (DESIGN.md): metrics.json, history.csv, model.safetensors + model.json,
checkpoint.pt (latest, for resume) and config.yaml (everything needed to rerun it).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from slimkit import __version__
from slimkit.config import RunConfig, dump_config, load_config
from slimkit.data import DatasetInfo, Loaders, load_dataset, make_loaders
from slimkit.efficiency import efficiency_callbacks, write_efficiency_outputs
from slimkit.export import ModelFileError, load_model, save_model
from slimkit.utils.fileio import atomic_copy, atomic_write, atomic_write_json, atomic_write_text
from slimkit.compressed import can_compress, compressed_layers
from slimkit.methods import (
    DSR, MEST, SET, DynamicSparseTraining, FixedMasks, GradualMagnitude, PhasedMEST, PruneOnce, RigL, SparsityMethod,
    elastic_mutation_phases, soft_memory_bound_phases,
)
from slimkit.methods.imp import magnitude_masks, round_sparsity
from slimkit.metrics import count_flops, count_params, measure_latency, state_bytes, training_state_bytes, weight_sparsity
from slimkit.metrics.params import prunable_layers
from slimkit.models import build_model
from slimkit.sparse import make_scheme, remove_masks, sparsity_report
from slimkit.train import Callback, Trainer
from slimkit.utils import distributed
from slimkit.train.loop import CHECKPOINT_FILE, HISTORY_FILE, write_history_csv
from slimkit.utils.progress import progress, report
from slimkit.train.tensorboard import TENSORBOARD_DIR, TensorBoardLogger, require_tensorboard

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
LOSS_TERMS_FILE = "loss_terms.json"  # loss terms added by callbacks, which config.yaml does not hold
PRUNING_FILE = "pruning.json"  # what a channel-pruning run pruned and how, which config.yaml does not hold
REWIND_FILE = "rewind.safetensors"
log = logging.getLogger("slimkit")


class RunFolderError(ValueError):
    """The output folder cannot be used as asked (already holds a run, holds none to resume, or
    holds an interrupted run with other settings)."""


@dataclass(frozen=True)
class LossTerms:
    """Loss terms that a run's callbacks add (distillation, L1 on BN scales): their settings and the
    command that continues the run. Saved beside config.yaml, so that `slimkit train --resume`
    refuses the run instead of silently continuing it without them."""

    settings: dict[str, Any]
    continue_with: str


def _prepare_folder(config: RunConfig, out: Path, resume: bool, loss_terms: LossTerms | None) -> RunConfig:
    if resume:
        if not (out / CONFIG_FILE).is_file():
            raise RunFolderError(f"cannot resume: {out} has no {CONFIG_FILE} (is it a slimkit run folder?)")
        if loss_terms is None:
            refuse_train_on_derived_run(out, "slimkit train --resume")
        else:
            _check_loss_terms(out, loss_terms)
        return load_config(out / CONFIG_FILE)
    if (out / CHECKPOINT_FILE).exists() or (out / METRICS_FILE).exists() or (out / "round-0").exists():
        raise RunFolderError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if distributed.is_main():  # loss terms first: a kill between the two files must not lose them
        if loss_terms is not None:
            _write_loss_terms(out, loss_terms)
        else:
            (out / LOSS_TERMS_FILE).unlink(missing_ok=True)  # left by a run killed before its first epoch
        atomic_write_text(out / CONFIG_FILE, dump_config(config))
    return config


def _write_loss_terms(out: Path, loss_terms: LossTerms) -> None:
    atomic_write_json(out / LOSS_TERMS_FILE, {"settings": loss_terms.settings, "continue_with": loss_terms.continue_with})


def read_loss_terms(out: Path) -> dict[str, Any] | None:
    """The saved `LossTerms` of the run in `out` as a dict, or None for a plain run."""
    path = Path(out) / LOSS_TERMS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def setting_differences(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """'key: saved -> wanted' for every setting that differs (nested dicts by dotted key), for
    errors that refuse to continue a run with other settings."""
    lines = []
    for key in sorted(set(saved) | set(wanted)):
        old, new = saved.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            lines += setting_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            lines.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return lines


def _terms_text(saved: dict[str, Any]) -> str:
    """'distillation', 'l1 on bn scales': the saved loss terms' names, for messages."""
    return " and ".join(name.replace("_", " ") for name in saved["settings"])


def refuse_train_on_derived_run(folder: Path, action: str) -> None:
    """Raise if the run in `folder` needs more than its config.yaml: loss terms added by callbacks
    (distill, slim) or a channel-pruned architecture (prune-channels, slim). `action` (plain
    `slimkit train` on that config) would silently drop them."""
    saved = read_loss_terms(folder)
    if saved is not None:
        raise RunFolderError(f"{folder} trains with {_terms_text(saved)} ({LOSS_TERMS_FILE}), which `{action}` would drop; "
                             f"continue it with {saved['continue_with']}, or rerun the command that made it")
    if (folder / PRUNING_FILE).exists():
        raise RunFolderError(
            f"{folder} fine-tunes a channel-pruned model ({PRUNING_FILE}); `{action}` would train the unpruned "
            "source instead. Run the `slimkit prune-channels` or `slimkit slim` command that made it again: it "
            "continues an interrupted fine-tuning")


def _check_loss_terms(out: Path, loss_terms: LossTerms) -> None:
    """A resumed run that adds loss terms continues only with the settings it started with."""
    saved = read_loss_terms(out)
    if saved is None:  # a run from before loss_terms.json existed: trust the caller
        if distributed.is_main():
            _write_loss_terms(out, loss_terms)
        return
    if changed := setting_differences(saved["settings"], loss_terms.settings):
        raise RunFolderError(f"{out} holds an interrupted run with other {_terms_text(saved)} settings ({'; '.join(changed)}); "
                             "use its settings to continue it, or choose another --out")


# ---- building blocks --------------------------------------------------------------------------
def load_data(config: RunConfig) -> tuple[DatasetInfo, Loaders]:
    splits = load_dataset(config.data, data_dir=config.data_dir, val_fraction=config.val_fraction, split_seed=config.seed)
    loaders = make_loaders(
        splits, config.batch_size, eval_batch_size=config.eval_batch_size, augment=config.augment, seed=config.seed,
        rank=distributed.rank(), world_size=distributed.world_size(),
    )
    return splits.info, loaders


def make_model(config: RunConfig, info: DatasetInfo, seed: int | None = None) -> nn.Module:
    """The config's architecture, seeded; with `init_from`, starting from that run's weights."""
    torch.manual_seed(config.seed if seed is None else seed)
    model = build_model(config.model, info, **config.model_options)
    if config.init_from:
        source, _ = load_model(config.init_from)
        try:
            model.load_state_dict(source.state_dict())
        except RuntimeError as exc:
            raise ModelFileError(f"weights of {config.init_from} do not fit model '{config.model}': {exc}") from None
    return model


def build_method(config: RunConfig, model: nn.Module, info: DatasetInfo) -> SparsityMethod | None:
    """The sparsity method a config asks for (None for dense training; imp is driven by imp_run)."""
    if config.method in ("dense", "imp"):
        return None
    common = dict(
        sparsity=config.sparsity, scheme=config.scheme, scheme_options=config.scheme_options,
        allocation=config.allocation, dense_layers=config.dense_layers,
    )
    if config.method == "gmp":
        return GradualMagnitude(
            model, start=config.gmp_start, end=config.gmp_end, prune_every=config.prune_every, **common
        )
    dst = dict(update_every=config.update_every, seed=config.seed, rescale_init=config.rescale_init, **common)
    if config.method == "mest":
        return MEST(model, mutation_rate=config.mutation_rate, stop=config.mutation_stop,
                    grad_weight=config.grad_weight, **dst)
    if config.method in ("mest-em", "mest-ems"):
        make_phases = elastic_mutation_phases if config.method == "mest-em" else soft_memory_bound_phases
        return PhasedMEST(model, phases=make_phases(config.sparsity), grad_weight=config.grad_weight, **dst)
    if config.method == "set":
        return SET(model, zeta=config.zeta, stop=config.mutation_stop, **dst)
    if config.method == "dsr":
        return DSR(model, mutation_rate=config.mutation_rate, stop=config.mutation_stop, **dst)
    if config.method == "rigl":
        dst["update_every"] = config.update_every or 100
        return RigL(model, alpha=config.zeta, stop=config.mutation_stop, **dst)
    return PruneOnce(
        model, criterion=config.method, num_batches=config.prune_batches, input_shape=info.input_shape,
        synflow_iterations=config.synflow_iterations, obd_estimator=config.obd_estimator, seed=config.seed,
        rescale_init=config.rescale_init and config.method == "random" and not config.init_from,
        progress_mode=config.progress, **common,
    )


# Where `storage: auto` compresses unstructured sparsity: Linear layers this large at this density
# or sparser, measured faster than masked-dense training (BENCHMARKS.md, compressed-step: 0.81x the
# masked step at 80% sparsity, 0.41x at 90% on 4096-wide layers; small layers lose to per-call
# overhead). Under the channel scheme every layer becomes a channel layer: a smaller dense layer
# was faster than the masked one on every conv net measured (compressed-schemes: 0.86-0.97x on
# resnet20, 0.36-0.63x on vgg11).
AUTO_MIN_WEIGHTS = 1 << 20
AUTO_MAX_DENSITY = 0.2


def storage_layers(config: RunConfig, method: SparsityMethod) -> list[str]:
    """The layers to hold compressed for `config.storage` (empty: all masked)."""
    if config.storage == "masked":
        return []
    if config.storage == "compressed":
        return [n for n, m in method.layers.items() if can_compress(m)]
    if not (isinstance(method, DynamicSparseTraining) and method.random_growth) or distributed.is_distributed():
        return []
    if config.scheme == "channel":
        return [n for n, m in method.layers.items() if can_compress(m)]
    if config.scheme != "unstructured":
        return []
    densities = method.densities(config.sparsity)
    return [
        name for name, module in method.layers.items()
        if isinstance(module, nn.Linear) and module.weight.numel() >= AUTO_MIN_WEIGHTS
        and densities[name] <= AUTO_MAX_DENSITY
    ]


def compress_for_storage(config: RunConfig, method: SparsityMethod, loaders: Loaders) -> None:
    """Set the initial masks now and move the chosen layers to compressed storage, before the
    optimizer is built (so it holds the compressed values)."""
    layers = storage_layers(config, method)
    if not layers:
        return
    if isinstance(method, PruneOnce) and method.batches is None:
        method.batches = loaders.train
    method.bind(None, config.epochs * len(loaders.train))
    # `compressed` asks for every layer whose mask fits a compressed layout; the rest stay masked
    layers = method.use_compressed_storage(None if config.storage == "compressed" else layers)
    log.info(f"compressed storage: {', '.join(layers) or 'none'}")


class EvaluateBeforeTraining(Callback):
    """Records test accuracy right after pruning, before any fine-tuning (one-shot accuracy)."""

    def __init__(self) -> None:
        self.result: dict[str, float] | None = None

    def on_train_start(self, trainer: Trainer) -> None:
        if self.result is None:
            self.result = trainer.evaluate(trainer.loaders.test)

    def state_dict(self) -> dict[str, Any]:
        return {"result": self.result}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.result = state["result"]


def logging_callbacks(config: RunConfig, log_dir: Path | None) -> list[Callback]:
    """Loggers that go last, after every callback that adds history columns (TensorBoard)."""
    if not config.tensorboard or log_dir is None:
        return []
    return [TensorBoardLogger(log_dir)]


def build_trainer(
    config: RunConfig, out: Path | None, callbacks: Sequence[Callback] = ()
) -> tuple[Trainer, DatasetInfo]:
    """Data, model, method and trainer for `config`, seeded so the same config gives the same run."""
    info, loaders = load_data(config)
    model = make_model(config, info)
    method = build_method(config, model, info)
    if method is not None:
        compress_for_storage(config, method, loaders)
    first = [method] if method else []
    if config.init_from:
        first.append(EvaluateBeforeTraining())  # after the method: measures the pruned, untrained model
    first += efficiency_callbacks(config, len(loaders.train.split))  # after the method: it may rescale its schedule
    loggers = logging_callbacks(config, out / TENSORBOARD_DIR if out is not None else None)
    return Trainer(model, loaders, config, callbacks=first + list(callbacks) + loggers, out_dir=out), info


# ---- finishing a run ----------------------------------------------------------------------------
def collect_metrics(config: RunConfig, trainer: Trainer, info: DatasetInfo) -> dict[str, Any]:
    """metrics.json: every figure measured from this run (accuracy is the final epoch's)."""
    model, last = trainer.model, trainer.history[-1]
    total, nonzero = count_params(model)
    flops = count_flops(model, info.input_shape)
    best = max(trainer.history, key=lambda row: row["test_acc"])
    latency = measure_latency(model, info.input_shape, config.latency_batch_size, warmup=3, repeats=20,
                              progress=config.progress)
    sparse = config.method != "dense"
    metrics = {
        "model": config.model,
        "dataset": config.data,
        "method": config.method,
        "scheme": config.scheme if sparse else "none",
        "allocation": config.allocation if sparse else "none",
        "target_sparsity": config.sparsity,
        "sparsity": weight_sparsity(model),
        "test_acc": last["test_acc"],
        "test_loss": last["test_loss"],
        "test_acc_best_epoch": best["test_acc"],  # for reference only; the result is test_acc
        "best_epoch": best["epoch"],
        "params_total": total,
        "params_nonzero": nonzero,
        "flops_dense": flops.dense,
        "flops_sparse": flops.sparse,
        "train_time_s": trainer.train_time_s,
        "peak_mem_bytes": trainer.peak_rss_bytes,
        "train_state_bytes": training_state_bytes(model, trainer.optimizer),
        "model_bytes": state_bytes(model),
        "latency_ms": latency.median_s * 1e3,
        "latency_batch_size": config.latency_batch_size,
        "epochs": trainer.epoch,
        "seed": config.seed,
        "slimkit_version": __version__,
    }
    if "val_acc" in last:
        metrics["val_acc"] = last["val_acc"]
    return metrics


def finish_run(config: RunConfig, trainer: Trainer, info: DatasetInfo, out: Path) -> dict[str, Any]:
    """Bake masks into plain weights, save the model, write metrics.json."""
    method = next((cb for cb in trainer.callbacks if isinstance(cb, SparsityMethod)), None)
    pruned_sparsity = sparsity_report(trainer.model, method.layers).sparsity if method else None
    remove_masks(trainer.model)  # the saved model is a plain one with exact zeros
    metrics = collect_metrics(config, trainer, info)
    metrics["world_size"] = distributed.world_size()
    metrics["compressed_layers"] = sorted(compressed_layers(trainer.model))
    if not distributed.is_main():
        return metrics
    weights = save_model(trainer.model, out, name=config.model, info=info, options=config.model_options)
    metrics["model_file_bytes"] = weights.stat().st_size
    if pruned_sparsity is not None:
        metrics["sparsity_pruned_layers"] = pruned_sparsity
    epoch_flops = [row["forward_flops"] for row in trainer.history if "forward_flops" in row]
    if epoch_flops:  # masks measured after each epoch; training FLOPs scale with forward FLOPs
        metrics["train_flops_vs_dense"] = sum(epoch_flops) / len(epoch_flops) / metrics["flops_dense"]
    before = next((cb.result for cb in trainer.callbacks if isinstance(cb, EvaluateBeforeTraining)), None)
    if before is not None:
        metrics["test_acc_before_finetune"] = before["acc"]
    metrics.update(write_efficiency_outputs(trainer, out, metrics["flops_dense"]))
    atomic_write_json(out / METRICS_FILE, metrics)
    return metrics


def train_run(
    config: RunConfig, out_dir: str | Path, *, resume: bool = False, callbacks: Sequence[Callback] = (),
    loss_terms: LossTerms | None = None,
) -> dict[str, Any]:
    """Train `config` into `out_dir` (or continue the run there with `resume=True`).

    `loss_terms` describes what `callbacks` add to the loss; a resumed run must pass the same."""
    out = Path(out_dir)
    if config.tensorboard:  # fail before anything is written or trained
        require_tensorboard()
    distributed.setup(config.device)
    config = _prepare_folder(config, out, resume, loss_terms)
    if config.tensorboard:  # a resumed run's config.yaml may ask for it
        require_tensorboard()
    if config.method == "imp":
        return imp_run(config, out, resume=resume, callbacks=callbacks)
    trainer, info = build_trainer(config, out, callbacks)
    if resume and (out / CHECKPOINT_FILE).exists():  # killed before its first epoch ended: start over
        trainer.resume(out / CHECKPOINT_FILE)
    trainer.fit()
    return finish_run(config, trainer, info, out)


# ---- iterative magnitude pruning (lottery tickets) ---------------------------------------------
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
        if (round_dir / METRICS_FILE).exists():  # finished before an interruption
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
        if resume and (round_dir / CHECKPOINT_FILE).exists():
            trainer.resume(round_dir / CHECKPOINT_FILE)
        elif r > 0:
            trainer.epoch = config.rewind_epoch  # continue round 0's schedule from the rewind point
        trainer.fit()
        rounds.append(finish_run(round_config, trainer, info, round_dir))
        previous = trainer.model
    return _summarise_imp(config, out, rounds)


def _summarise_imp(config: RunConfig, out: Path, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    final_dir = out / f"round-{len(rounds) - 1}"
    for name in ("model.safetensors", "model.json"):
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
    atomic_write_json(out / METRICS_FILE, metrics)
    return metrics


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise RunFolderError(f"{run_dir} has no {METRICS_FILE}: not a finished slimkit run")
    return json.loads(path.read_text())
