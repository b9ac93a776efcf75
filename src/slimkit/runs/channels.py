"""Channel-pruning runs: Network Slimming (train with L1 on BN scales -> prune -> fine-tune) and
pruning a finished run's channels. Each writes an ordinary run folder whose model is the smaller
architecture (`model.json` marks it `structured_pruned`; `slimkit.export.load_model` rebuilds it)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable

from torch import nn

from slimkit.data import DatasetInfo
from slimkit.export import load_model, save_model
from slimkit.metrics import count_flops, count_params, measure_latency
from slimkit.runs.build import load_data, logging_callbacks
from slimkit.runs.config import RunConfig, dump_config, finetune_lr, finetune_values, load_config, make_config
from slimkit.runs.finish import collect_metrics
from slimkit.runs.loss_terms import LossTerms, refuse_other_settings
from slimkit.runs.train import claim_folder, train_run
from slimkit.methods.slimming import SlimmingL1
from slimkit.structured.netslim import prune, reinitialize
from slimkit.structured.prune import prune_channels
from slimkit.train import Trainer
from slimkit.utils import distributed
from slimkit.utils.fileio import atomic_write_json, atomic_write_text
from slimkit.utils.run_folder import SLIM_TRAIN_DIR, RunFolder, RunFolderError

log = logging.getLogger("slimkit")
SOURCE_DIR = SLIM_TRAIN_DIR  # Network Slimming's sparsity-training run, inside the slim run folder
# the run settings a channel-pruning fine-tuning may override (the architecture and data come from the source)
FINETUNE_SETTINGS = ("batch_size", "eval_batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
                     "schedule", "warmup_epochs", "milestones", "gamma", "label_smoothing", "augment", "seed", "device",
                     "progress", "data_dir", "latency_batch_size", "tensorboard")


def size_metrics(model: nn.Module, info: DatasetInfo, batch_size: int, progress: str = "auto") -> dict[str, Any]:
    """Params, FLOPs and latency of `model` (the before/after columns of a pruning run)."""
    total, _ = count_params(model)
    latency = measure_latency(model, info.input_shape, batch_size, warmup=3, repeats=20, progress=progress)
    return {"params": total, "flops": count_flops(model, info.input_shape).dense, "latency_ms": latency.median_s * 1e3}


def prune_and_finetune(
    source: Path, out: Path, prune_fn: Callable[[nn.Module, DatasetInfo, Any], nn.Module], *, method: str,
    finetune_epochs: int, from_scratch: bool = False, extra: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None, overwrite: bool = False,
) -> dict[str, Any]:
    """Load the run in `source`, prune it with `prune_fn(model, info, loaders)`, fine-tune, write `out`.

    `overrides` replace run settings of the fine-tuning (e.g. lr, device, progress). The same call
    again continues an interrupted fine-tuning from its last finished epoch: pruning the same
    source with the same settings gives the same architecture. `out` is held for the whole run;
    a non-empty folder that slimkit did not write is refused unless `overwrite`."""
    with claim_folder(RunFolder(out), overwrite=overwrite):
        return _prune_and_finetune(source, out, prune_fn, method=method, finetune_epochs=finetune_epochs,
                                   from_scratch=from_scratch, extra=extra, overrides=overrides)


def _prune_and_finetune(
    source: Path, out: Path, prune_fn: Callable[[nn.Module, DatasetInfo, Any], nn.Module], *, method: str,
    finetune_epochs: int, from_scratch: bool, extra: dict[str, Any] | None, overrides: dict[str, Any] | None,
) -> dict[str, Any]:
    folder, source_folder = RunFolder(out), RunFolder(source)
    folder.refuse_finished_run()
    if finetune_epochs < 1:
        raise ValueError(f"finetune_epochs must be >= 1, got {finetune_epochs}")
    base = load_config(source_folder.config)
    config = make_config({
        **finetune_values(base.model_dump(), epochs=finetune_epochs, lr=finetune_lr(base, from_scratch=from_scratch),
                          init_from=str(source), method="dense", sparsity=0.0),
        **(overrides or {}),
    })
    pruning = {"method": method, "source_run": str(source), "source_weights_sha256": _file_sha256(source_folder.weights),
               "from_scratch": from_scratch, **(extra or {})}
    resuming = _continues_interrupted_finetune(out, config, pruning)
    info, loaders = load_data(config)
    model, _ = load_model(source)
    pruned = prune_fn(model, info, loaders)
    if from_scratch:  # Liu et al. 2019: the pruned architecture, trained from new random weights
        reinitialize(pruned, seed=config.seed)
    if distributed.is_main():
        atomic_write_json(folder.pruning, pruning)
        atomic_write_text(folder.config, dump_config(config))
    trainer = Trainer(pruned, loaders, config, callbacks=logging_callbacks(config, folder.tensorboard), out_dir=out)
    acc_pruned = trainer.evaluate(loaders.test)["acc"]
    if resuming:
        log.info("continuing the interrupted fine-tuning in %s", out)
        trainer.resume(folder.checkpoint)
    trainer.fit()
    metrics = collect_metrics(config, trainer, info)
    # measured back to back, so both see the same machine load
    before = size_metrics(model, info, config.latency_batch_size, config.progress)
    after = size_metrics(trainer.model, info, config.latency_batch_size, config.progress)
    metrics.update({
        **pruning, "test_acc_before_finetune": acc_pruned,
        "params_before": before["params"], "flops_before": before["flops"], "latency_ms_before": before["latency_ms"],
        "params_after": after["params"], "flops_after": after["flops"], "latency_ms_after": after["latency_ms"],
        "flops_reduction": before["flops"] / after["flops"], "speedup": before["latency_ms"] / after["latency_ms"],
    })
    if source_folder.is_finished():
        metrics["test_acc_source"] = source_folder.read_metrics()["test_acc"]
    weights = save_model(trainer.model, out, name=config.model, info=info, options=config.model_options,
                         extra={"structured_pruned": True})
    metrics["model_file_bytes"] = weights.stat().st_size
    atomic_write_json(folder.metrics, metrics)
    return metrics


def _continues_interrupted_finetune(out: Path, config: RunConfig, pruning: dict[str, Any]) -> bool:
    """True if `out` holds an interrupted fine-tuning of the same pruning and `config`, to continue.
    One with other settings raises: it is never overwritten or mixed."""
    folder = RunFolder(out)
    if not folder.checkpoint.exists():
        return False
    if not folder.config.exists() or not folder.pruning.exists():
        raise RunFolderError(f"{out} holds an interrupted fine-tuning without its {folder.pruning.name} (an older "
                             "slimkit wrote it); delete the folder to start over, or choose another --out")
    saved = {**load_config(folder.config).model_dump(), **json.loads(folder.pruning.read_text())}
    refuse_other_settings(out, "fine-tuning", saved, {**config.model_dump(), **pruning})
    return True


def _file_sha256(path: Path) -> str | None:
    """The file's fingerprint: a source retrained in place must not continue an old fine-tuning.
    None when missing (load_model then names the problem)."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def slim_run(
    config: RunConfig, out: Path, *, sparsity_l1: float, prune_ratio: float, finetune_epochs: int,
    from_scratch: bool = False, overwrite: bool = False,
) -> dict[str, Any]:
    """Network Slimming: `out/train` trains with L1 on BN scales; `out` holds the pruned, fine-tuned model.
    `out` is held for the whole run; a non-empty folder slimkit did not write is refused unless `overwrite`."""
    if not 0 < prune_ratio < 1:
        raise ValueError(f"prune_ratio must be in (0, 1), got {prune_ratio}")
    if config.method != "dense" or config.init_from:
        raise ValueError("slim trains its own dense model with L1 on BN scales; drop method/sparsity/init_from")
    with claim_folder(RunFolder(out), overwrite=overwrite):
        return _slim(config, out, sparsity_l1=sparsity_l1, prune_ratio=prune_ratio, finetune_epochs=finetune_epochs,
                     from_scratch=from_scratch, overwrite=overwrite)


def _slim(config: RunConfig, out: Path, *, sparsity_l1: float, prune_ratio: float, finetune_epochs: int,
          from_scratch: bool, overwrite: bool) -> dict[str, Any]:
    source = out / SOURCE_DIR
    if not RunFolder(source).is_finished():
        resume = RunFolder(source).config.exists()
        if resume:  # continue the L1 training only with the settings it started with
            refuse_other_settings(source, "L1 training", load_config(RunFolder(source).config).model_dump(),
                                   config.model_dump())
        terms = LossTerms({"l1_on_bn_scales": {"sparsity_l1": sparsity_l1}},
                          continue_with=f"the same `slimkit slim` command with --out {out}")
        train_run(config, source, resume=resume, callbacks=[SlimmingL1(sparsity_l1)], loss_terms=terms,
                  overwrite=overwrite)

    def do_prune(model: nn.Module, info: DatasetInfo, loaders: Any) -> nn.Module:
        return prune(model, info.input_shape, prune_ratio)

    return prune_and_finetune(
        source, out, do_prune, method="netslim", finetune_epochs=finetune_epochs, from_scratch=from_scratch,
        extra={"channel_prune_ratio": prune_ratio, "sparsity_l1": sparsity_l1, "criterion": "bn_gamma"},
    )


def prune_channels_run(
    source: Path, out: Path, *, ratio: float, criterion: str = "l1", scope: str = "local", round_to: int = 1,
    finetune_epochs: int = 5, from_scratch: bool = False, overrides: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Prune `ratio` of the channels of the finished run in `source`, fine-tune into `out` (`overrides`:
    run settings of the fine-tuning; `overwrite`: accept a non-empty folder slimkit did not write)."""
    if not 0 < ratio < 1:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")

    def do_prune(model: nn.Module, info: DatasetInfo, loaders: Any) -> nn.Module:
        batch = None
        if criterion == "taylor":
            inputs, targets, *_ = next(iter(loaders.train))
            batch = (inputs, targets)
        return prune_channels(model, info.input_shape, ratio, criterion=criterion, scope=scope, round_to=round_to,
                              batch=batch)

    return prune_and_finetune(
        source, out, do_prune, method=f"channel-{criterion}", finetune_epochs=finetune_epochs, from_scratch=from_scratch,
        extra={"channel_prune_ratio": ratio, "criterion": criterion, "scope": scope, "round_to": round_to},
        overrides=overrides, overwrite=overwrite,
    )
