"""The teacher/student callback: replaces the Trainer's loss with the distillation loss.

The student's plain CE (already computed by the Trainer, with its label smoothing) is the hard
term. With hints, the adapters' parameters must be trained too: build the callback first and
pass `trainer_params(model)` (student + adapters) to the optimizer, or call `Trainer(...,
optimizer=build_optimizer(distill.trainer_params(model), config))`. `on_train_start` checks that
they are in the optimizer and raises otherwise, so a silently frozen adapter cannot happen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from slimkit.distill.losses import HintAdapter, distillation_loss, hint_loss
from slimkit.distill.teacher import as_teacher
from slimkit.train.callbacks import Callback, StepState
from slimkit.utils.progress import progress as show_progress


class _FeatureTap:
    """Keeps the latest output of one submodule (forward hook)."""

    def __init__(self, model: nn.Module, name: str) -> None:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"{type(model).__name__} has no submodule '{name}' for a hint") from None
        self.value: torch.Tensor | None = None
        module.register_forward_hook(lambda _m, _a, out: setattr(self, "value", out))


class Distillation(Callback):
    """Hinton KD (and optional FitNets hints) from a frozen teacher during training."""

    def __init__(
        self, teacher: nn.Module | str | Path | Sequence[nn.Module | str | Path], *, temperature: float = 4.0,
        alpha: float = 0.9, student: nn.Module | None = None, hints: Sequence[tuple[str, str]] = (),
        hint_weight: float = 1.0, example_input: torch.Tensor | None = None,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.teacher = as_teacher(teacher)
        self.temperature, self.alpha, self.hint_weight = temperature, alpha, hint_weight
        self.adapters = nn.ModuleList()
        self._taps: list[tuple[_FeatureTap, _FeatureTap]] = []
        if hints:
            if student is None or example_input is None:
                raise ValueError("hints need the student model and an example input (to size the adapters)")
            self._add_hints(student, hints, example_input)

    def _add_hints(self, student: nn.Module, hints: Sequence[tuple[str, str]], example: torch.Tensor) -> None:
        for student_name, teacher_name in hints:
            taps = (_FeatureTap(student, student_name), _FeatureTap(self.teacher, teacher_name))
            was_training = student.training
            with torch.no_grad():
                student.eval()(example), self.teacher(example)
            student.train(was_training)
            s, t = taps[0].value, taps[1].value
            self.adapters.append(HintAdapter(s.shape[1], t.shape[1], spatial=s.dim() == 4))
            self._taps.append(taps)

    def trainer_params(self, student: nn.Module) -> Iterator[nn.Parameter]:
        """Student parameters followed by the hint adapters' (give these to the optimizer)."""
        yield from student.parameters()
        yield from self.adapters.parameters()

    def on_train_start(self, trainer) -> None:
        self.teacher.to(trainer.device).eval()
        self.adapters.to(trainer.device)
        optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
        if any(id(p) not in optimised for p in self.adapters.parameters()):
            raise ValueError("hint adapters are not in the optimizer: build it from Distillation.trainer_params(model)")

    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        self.teacher.eval()
        with torch.no_grad():
            return self.teacher(inputs)

    def on_after_forward(self, trainer, step: StepState) -> None:
        teacher_logits = self.teacher_logits(step.inputs)
        if teacher_logits.shape != step.outputs.shape:
            raise ValueError(
                f"teacher outputs {tuple(teacher_logits.shape)} but the student {tuple(step.outputs.shape)}: "
                "teacher and student need the same number of classes"
            )
        loss = distillation_loss(step.outputs, teacher_logits, step.targets, temperature=self.temperature,
                                 alpha=self.alpha, hard_loss=step.loss)
        for adapter, (student_tap, teacher_tap) in zip(self.adapters, self._taps):
            loss = loss + self.hint_weight * hint_loss(student_tap.value, teacher_tap.value, adapter)
        step.loss = loss

    @torch.no_grad()
    def teacher_accuracy(self, loader, *, progress: str = "auto") -> float:
        """Top-1 accuracy (fraction) of the teacher on a loader; `progress` shows the batches
        (see `slimkit.utils.progress`)."""
        device = next(self.teacher.parameters()).device
        correct = seen = 0
        for batch in show_progress(loader, desc="teacher accuracy", mode=progress, unit="batches"):
            inputs, targets = batch[0].to(device), batch[1].to(device)
            correct += int((self.teacher_logits(inputs).argmax(1) == targets).sum())
            seen += len(targets)
        return correct / max(seen, 1)

    def state_dict(self) -> dict[str, Any]:
        return {"adapters": self.adapters.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.adapters.load_state_dict(state["adapters"])
