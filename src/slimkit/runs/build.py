"""The pieces of a run built from its config: data loaders, the seeded model, the sparsity method
and its storage, and the Trainer with every callback in order."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from slimkit.compressed import can_compress
from slimkit.data import DatasetInfo, Loaders, load_dataset, make_loaders
from slimkit.efficiency import efficiency_callbacks
from slimkit.export import ModelFileError, load_model
from slimkit.methods import (
    DSR, MEST, SET, DynamicSparseTraining, GradualMagnitude, PhasedMEST, PruneOnce, RigL, SparsityMethod,
    elastic_mutation_phases, soft_memory_bound_phases,
)
from slimkit.models import build_model
from slimkit.runs.config import RunConfig
from slimkit.train import Callback, Trainer
from slimkit.train.tensorboard import TensorBoardLogger
from slimkit.utils import distributed
from slimkit.utils.run_folder import TENSORBOARD_DIR

log = logging.getLogger("slimkit")


def load_data(config: RunConfig) -> tuple[DatasetInfo, Loaders]:
    """The config's dataset split and loaders (this rank's slice under DDP)."""
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
            model, gmp_start=config.gmp_start, gmp_end=config.gmp_end, prune_every=config.prune_every, **common
        )
    dst = dict(update_every=config.update_every, seed=config.seed, rescale_init=config.rescale_init, **common)
    if config.method == "mest":
        return MEST(model, mutation_rate=config.mutation_rate, mutation_stop=config.mutation_stop,
                    grad_weight=config.grad_weight, **dst)
    if config.method in ("mest-em", "mest-ems"):
        make_phases = elastic_mutation_phases if config.method == "mest-em" else soft_memory_bound_phases
        return PhasedMEST(model, phases=make_phases(config.sparsity), grad_weight=config.grad_weight, **dst)
    if config.method == "set":
        return SET(model, zeta=config.zeta, mutation_stop=config.mutation_stop, **dst)
    if config.method == "dsr":
        return DSR(model, mutation_rate=config.mutation_rate, mutation_stop=config.mutation_stop, **dst)
    if config.method == "rigl":
        dst["update_every"] = config.update_every or 100
        return RigL(model, zeta=config.zeta, mutation_stop=config.mutation_stop, **dst)
    return PruneOnce(
        model, criterion=config.method, num_batches=config.prune_batches, input_shape=info.input_shape,
        synflow_iterations=config.synflow_iterations, obd_estimator=config.obd_estimator, seed=config.seed,
        rescale_init=config.rescale_init and config.method == "random" and not config.init_from,
        progress=config.progress, **common,
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
