"""A run end to end: config -> data -> model -> training -> the run folder.

Run folder contract (DESIGN.md): metrics.json, history.csv, model.safetensors + model.json,
checkpoint.pt (latest, for resume) and config.yaml (everything needed to rerun it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from slimkit import __version__
from slimkit.config import RunConfig, dump_config, load_config
from slimkit.data import load_dataset, make_loaders
from slimkit.export import save_model
from slimkit.fileio import atomic_write_json, atomic_write_text
from slimkit.metrics import count_flops, count_params, measure_latency, state_bytes, training_state_bytes, weight_sparsity
from slimkit.models import build_model
from slimkit.methods import GradualMagnitude, PruneOnce, SparsityMethod
from slimkit.sparse import remove_masks, sparsity_report
from slimkit.train import Callback, Trainer
from slimkit.train.loop import CHECKPOINT_FILE

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"


class RunFolderError(ValueError):
    """The output folder cannot be used as asked (already holds a run, or holds none to resume)."""


def _prepare_folder(config: RunConfig, out: Path, resume: bool) -> RunConfig:
    if resume:
        if not (out / CONFIG_FILE).is_file():
            raise RunFolderError(f"cannot resume: {out} has no {CONFIG_FILE} (is it a slimkit run folder?)")
        return load_config(out / CONFIG_FILE)
    if (out / CHECKPOINT_FILE).exists() or (out / METRICS_FILE).exists():
        raise RunFolderError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    atomic_write_text(out / CONFIG_FILE, dump_config(config))
    return config


def build_method(config: RunConfig, model: torch.nn.Module, info) -> SparsityMethod | None:
    """The sparsity method a config asks for (None for dense training)."""
    if config.method == "dense":
        return None
    common = dict(
        sparsity=config.sparsity, scheme=config.scheme, scheme_options=config.scheme_options,
        allocation=config.allocation, dense_layers=config.dense_layers,
    )
    if config.method == "gmp":
        return GradualMagnitude(
            model, start=config.gmp_start, end=config.gmp_end, prune_every=config.prune_every, **common
        )
    return PruneOnce(
        model, criterion=config.method, num_batches=config.prune_batches, input_shape=info.input_shape,
        synflow_iterations=config.synflow_iterations, seed=config.seed, **common,
    )


def build_trainer(
    config: RunConfig, out: Path | None, callbacks: Sequence[Callback] = ()
) -> tuple[Trainer, Any]:
    """Data, model, method and trainer for `config`, seeded so the same config gives the same run."""
    splits = load_dataset(config.data, data_dir=config.data_dir, val_fraction=config.val_fraction, split_seed=config.seed)
    loaders = make_loaders(
        splits, config.batch_size, eval_batch_size=config.eval_batch_size, augment=config.augment, seed=config.seed
    )
    torch.manual_seed(config.seed)
    model = build_model(config.model, splits.info, **config.model_options)
    method = build_method(config, model, splits.info)
    all_callbacks = ([method] if method else []) + list(callbacks)
    return Trainer(model, loaders, config, callbacks=all_callbacks, out_dir=out), splits.info


def collect_metrics(config: RunConfig, trainer: Trainer, info) -> dict[str, Any]:
    """metrics.json: every figure measured from this run (accuracy is the final epoch's)."""
    model, last = trainer.model, trainer.history[-1]
    total, nonzero = count_params(model)
    flops = count_flops(model, info.input_shape)
    best = max(trainer.history, key=lambda row: row["test_acc"])
    latency = measure_latency(model, info.input_shape, config.latency_batch_size, warmup=3, repeats=20)
    metrics = {
        "model": config.model,
        "dataset": config.data,
        "method": config.method,
        "scheme": config.scheme if config.method != "dense" else "none",
        "allocation": config.allocation if config.method != "dense" else "none",
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


def train_run(
    config: RunConfig, out_dir: str | Path, *, resume: bool = False, callbacks: Sequence[Callback] = ()
) -> dict[str, Any]:
    """Train `config` into `out_dir` (or continue the run there with `resume=True`)."""
    out = Path(out_dir)
    config = _prepare_folder(config, out, resume)
    trainer, info = build_trainer(config, out, callbacks)
    if resume and (out / CHECKPOINT_FILE).exists():  # killed before its first epoch ended: start over
        trainer.resume(out / CHECKPOINT_FILE)
    trainer.fit()
    method = next((cb for cb in trainer.callbacks if isinstance(cb, SparsityMethod)), None)
    if method is not None:
        pruned_sparsity = sparsity_report(trainer.model, method.layers).sparsity
        remove_masks(trainer.model)  # the saved model is a plain one with exact zeros
    weights = save_model(trainer.model, out, name=config.model, info=info, options=config.model_options)
    metrics = collect_metrics(config, trainer, info)
    metrics["model_file_bytes"] = weights.stat().st_size
    if method is not None:
        metrics["sparsity_pruned_layers"] = pruned_sparsity
    atomic_write_json(out / METRICS_FILE, metrics)
    return metrics


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise RunFolderError(f"{run_dir} has no {METRICS_FILE}: not a finished slimkit run")
    return json.loads(path.read_text())
