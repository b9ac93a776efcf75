"""The one training loop. Methods plug in as callbacks (see `slimkit.train.callbacks`)."""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from slimkit.data.registry import Loaders
from slimkit.utils.fileio import atomic_write_text
from slimkit.metrics.memory import PeakRSS
from slimkit.train.callbacks import Callback, StepState
from slimkit.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from slimkit.utils import distributed
from slimkit.train.config import TrainConfig
from slimkit.utils.progress import progress, report
from slimkit.utils.run_folder import CHECKPOINT_FILE, HISTORY_FILE
from slimkit.train.schedule import lr_factor



def build_optimizer(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def divergence_error(what: str, value: float | str, epoch: int, step: int | None = None) -> FloatingPointError:
    """The one message for a run whose numbers stopped being finite (epoch and step count from 1).

    It blames no single setting: lr and weight_decay both make SGD diverge (non-finite values of
    either are refused by the config already)."""
    where = f"epoch {epoch}" + (f" step {step}" if step is not None else "")
    return FloatingPointError(
        f"{what} became {value} at {where}: the training diverged; check lr and weight_decay (try a smaller lr)"
    )


def first_non_finite_parameter(model: nn.Module) -> str | None:
    """Name of the first parameter holding a nan or inf, or None when all are finite.

    Parameters only: a buffer may hold -inf on purpose (an attention mask), while a diverged
    running statistic shows up in the evaluation loss, which is checked too."""
    for name, param in model.named_parameters():
        if param.is_floating_point() and not bool(torch.isfinite(param).all()):
            return name
    return None


def _unpack(batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if len(batch) == 3:
        return batch[0], batch[1], batch[2]
    if len(batch) == 2:
        return batch[0], batch[1], None
    raise ValueError(f"a batch must be (inputs, targets) or (inputs, targets, indices), got {len(batch)} items")


def write_history_csv(path: Path, history: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buffer.getvalue())


class Trainer:
    """Trains `model` on `loaders.train`, evaluates every epoch, checkpoints to `out_dir`.

    Any iterable of (inputs, targets[, indices]) batches works as a loader; slimkit's
    `BatchLoader` additionally gets `set_epoch` called so data order is a function of the epoch.
    The reported result is the final epoch's test accuracy; the best epoch is logged separately.
    """

    def __init__(
        self,
        model: nn.Module,
        loaders: Loaders,
        config: TrainConfig,
        *,
        callbacks: Sequence[Callback] = (),
        out_dir: str | Path | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        self.config = config
        self.device = torch.device(config.device)
        self.model = model.to(self.device)
        # Under torchrun the forward/backward go through DDP (gradient averaging), wrapped when
        # fit() starts: DDP must see the model after methods have registered their masks.
        # Everything else (evaluation, checkpoints, methods) uses the plain module.
        self.forward_model: nn.Module = self.model
        self.loaders = loaders
        self.callbacks = list(callbacks)
        keys = [cb.key for cb in self.callbacks]
        if len(set(keys)) != len(keys):
            raise ValueError(f"callbacks need distinct keys for checkpointing, got {keys}")
        self.optimizer = optimizer or build_optimizer(self.model.parameters(), config)
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.epoch = 0  # epochs completed
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.train_time_s = 0.0
        self.peak_rss_bytes = 0

    # ---- one epoch -------------------------------------------------------------------------
    def _set_lr(self, progress_fraction: float) -> float:
        cfg = self.config
        factor = lr_factor(
            progress_fraction, schedule=cfg.schedule, warmup_fraction=cfg.warmup_epochs / cfg.epochs,
            milestones=cfg.milestones, gamma=cfg.gamma,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        return self.optimizer.param_groups[0]["lr"]

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        loader = self.loaders.train
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        num_batches = len(loader)
        self.forward_model.train()
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.long)
        seen = 0
        start = time.perf_counter()
        for batch_index, batch in enumerate(
            progress(  # log mode: the epoch's summary line is its log
                loader, total=num_batches, desc=f"epoch {epoch + 1}/{self.config.epochs}", mode=self.config.progress,
                unit="batches", log_lines=0,
            )
        ):
            inputs, targets, indices = _unpack(batch)
            inputs, targets = inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
            self._set_lr((epoch + batch_index / num_batches) / self.config.epochs)
            step = StepState(epoch, batch_index, self.global_step, inputs, targets, indices)
            step.outputs = self.forward_model(inputs)
            step.loss = self.loss_fn(step.outputs, targets)
            for cb in self.callbacks:
                cb.on_after_forward(self, step)
            if not torch.isfinite(step.loss):
                raise divergence_error("loss", step.loss.item(), epoch + 1, batch_index + 1)
            self.optimizer.zero_grad(set_to_none=True)
            step.loss.backward()
            for cb in self.callbacks:
                cb.on_after_backward(self, step)
            self.optimizer.step()
            self.global_step += 1
            for cb in self.callbacks:
                cb.on_step_end(self, step)
            with torch.no_grad():
                loss_sum += step.loss.detach().double().cpu() * targets.shape[0]
                correct += (step.outputs.argmax(dim=1) == targets).sum().cpu()
            seen += targets.shape[0]
        elapsed = time.perf_counter() - start
        return {
            "train_loss": float(loss_sum) / max(seen, 1),
            "train_acc": int(correct) / max(seen, 1),
            "train_examples": seen,
            "epoch_time_s": elapsed,
            "examples_per_s": seen / elapsed if elapsed > 0 else math.nan,
        }

    @torch.no_grad()
    def evaluate(self, loader) -> dict[str, float]:
        """Mean loss and accuracy (a fraction in [0, 1]) of the model on `loader`."""
        was_training = self.model.training
        self.model.eval()
        loss_sum, correct, seen = 0.0, 0, 0
        loss_fn = nn.CrossEntropyLoss(reduction="sum")
        # A bar only: in log mode the result is part of the epoch's summary line.
        for batch in progress(loader, desc="evaluate", mode=self.config.progress, unit="batches", log_lines=0):
            inputs, targets, _ = _unpack(batch)
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            outputs = self.model(inputs)
            loss_sum += float(loss_fn(outputs, targets))
            correct += int((outputs.argmax(dim=1) == targets).sum())
            seen += targets.shape[0]
        self.model.train(was_training)
        return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1)}

    # ---- the whole run ---------------------------------------------------------------------
    def fit(self) -> list[dict[str, Any]]:
        """Train from `self.epoch` to `config.epochs`, checkpointing after every epoch."""
        for cb in self.callbacks:
            cb.on_train_start(self)
        if distributed.is_distributed() and self.forward_model is self.model:
            from torch.nn.parallel import DistributedDataParallel

            self.forward_model = DistributedDataParallel(self.model)
        with PeakRSS() as memory:
            for epoch in range(self.epoch, self.config.epochs):
                for cb in self.callbacks:
                    cb.on_epoch_start(self, epoch)
                row: dict[str, Any] = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}
                row.update(self.train_one_epoch(epoch))
                self.train_time_s += row["epoch_time_s"]
                self._check_weights(epoch)
                if self.loaders.val is not None:
                    row.update({f"val_{k}": v for k, v in self._evaluate_finite(self.loaders.val, "val", epoch).items()})
                row.update({f"test_{k}": v for k, v in self._evaluate_finite(self.loaders.test, "test", epoch).items()})
                for cb in self.callbacks:
                    cb.on_epoch_end(self, epoch, row)
                self.epoch = epoch + 1
                self.history.append(row)
                self.peak_rss_bytes = max(self.peak_rss_bytes, memory.read())
                self._log_epoch(row)
                self._save_progress()
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.history

    def _check_weights(self, epoch: int) -> None:
        """Stop before a diverged epoch is evaluated, checkpointed or reported as a result: the
        last step's update can overflow the weights without any step's loss being non-finite."""
        name = first_non_finite_parameter(self.model)
        if name is not None:
            raise divergence_error(f"weight {name}", "nan/inf", epoch + 1)

    def _evaluate_finite(self, loader, split: str, epoch: int) -> dict[str, float]:
        """`evaluate`, refusing a non-finite loss (finite but huge weights overflow the logits)."""
        result = self.evaluate(loader)
        if not math.isfinite(result["loss"]):
            raise divergence_error(f"{split} loss", result["loss"], epoch + 1)
        return result

    def _log_epoch(self, row: dict[str, Any]) -> None:
        val = f"  val_acc {row['val_acc']:.2%}" if "val_acc" in row else ""
        report(
            f"epoch {row['epoch']}/{self.config.epochs}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.2%}"
            f"{val}  test_acc {row['test_acc']:.2%}  lr {row['lr']:.4g}  {row['epoch_time_s']:.1f}s"
            f"  {row['examples_per_s']:.0f} ex/s",
            self.config.progress,
        )

    # ---- checkpoint / resume ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "history": self.history,
            "train_time_s": self.train_time_s,
            "peak_rss_bytes": self.peak_rss_bytes,
            "callbacks": {cb.key: cb.state_dict() for cb in self.callbacks},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from `state_dict` (as `load_checkpoint` returns it: fields type-checked)."""
        if state["epoch"] > self.config.epochs:
            raise CheckpointError(f"checkpoint is at epoch {state['epoch']} but this run has {self.config.epochs} epochs")
        # Callbacks first: a sparsity method re-registers its masks, which the model's keys expect.
        for cb in self.callbacks:
            if cb.key in state["callbacks"]:
                try:
                    cb.load_state_dict(state["callbacks"][cb.key])
                except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
                    raise CheckpointError(f"the state of {cb.key} does not fit this run ({type(exc).__name__}: "
                                          f"{exc})") from exc
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise CheckpointError(f"checkpoint does not match this model/optimizer: {exc}") from exc
        torch.set_rng_state(state["rng"].cpu())
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.history = list(state["history"])
        self.train_time_s = float(state.get("train_time_s", 0.0))
        self.peak_rss_bytes = int(state.get("peak_rss_bytes", 0))

    def _save_progress(self) -> None:
        if self.out_dir is None or not distributed.is_main():
            return
        save_checkpoint(self.out_dir / CHECKPOINT_FILE, self.state_dict())
        write_history_csv(self.out_dir / HISTORY_FILE, self.history)

    def resume(self, checkpoint_path: str | Path | None = None) -> None:
        """Restore the full training state; the run then continues bit-for-bit as if never stopped."""
        path = Path(checkpoint_path) if checkpoint_path else (self.out_dir or Path(".")) / CHECKPOINT_FILE
        state = load_checkpoint(path, map_location=self.device)
        try:
            self.load_state_dict(state)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
