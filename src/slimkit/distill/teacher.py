"""Teachers: a model, a run folder, or an ensemble of several (logits averaged), always frozen."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from slimkit.export import load_model


class Ensemble(nn.Module):
    """Averages the logits of several models (Hinton et al. 2015: distilling an ensemble)."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.members = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [m(x) for m in self.members]
        shapes = {tuple(o.shape) for o in outputs}
        if len(shapes) != 1:
            raise ValueError(f"ensemble members disagree on output shape: {sorted(shapes)}")
        return torch.stack(outputs).mean(dim=0)


def as_teacher(source: nn.Module | str | Path | Sequence[nn.Module | str | Path]) -> nn.Module:
    """A frozen eval-mode teacher from a module, a run folder, or a list of either (ensemble)."""
    if isinstance(source, (list, tuple)):
        members = [as_teacher(s) for s in source]
        teacher: nn.Module = members[0] if len(members) == 1 else Ensemble(members)
    elif isinstance(source, nn.Module):
        teacher = source
    elif isinstance(source, (str, Path)):
        teacher, _ = load_model(source)
    else:
        raise ValueError(f"a teacher is a module, a run folder or a list of them, got {type(source).__name__}")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
