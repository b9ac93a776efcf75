"""Finishing a run: measure the trained model and write its model files and metrics.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimkit import __version__
from slimkit.compressed import compressed_layers
from slimkit.data import DatasetInfo
from slimkit.efficiency import write_efficiency_outputs
from slimkit.export import save_model
from slimkit.methods import SparsityMethod
from slimkit.metrics import count_flops, count_params, measure_latency, state_bytes, training_state_bytes, weight_sparsity
from slimkit.runs.build import EvaluateBeforeTraining
from slimkit.runs.config import RunConfig
from slimkit.sparse import remove_masks, sparsity_report
from slimkit.train import Trainer
from slimkit.utils import distributed
from slimkit.utils.fileio import atomic_write_json
from slimkit.utils.run_folder import RunFolder


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
        "train_state_bytes": training_state_bytes(model, trainer.optimizer, trained=True),
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
    atomic_write_json(RunFolder(out).metrics, metrics)
    return metrics
