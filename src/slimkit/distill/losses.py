"""Distillation losses.

Hinton et al. 2015: soft targets at temperature T, KL(teacher_T || student_T) with
`reduction="batchmean"` (the true KL per example; "mean" would also divide by the number of
classes), multiplied by T^2 so its gradients keep their size as T changes; mixed with the
hard-label cross-entropy as  alpha * KD + (1 - alpha) * CE.

FitNets (Romero et al. 2015): a hint loss, MSE between a teacher feature map and a learned
adapter (1x1 conv or linear) applied to the student's feature map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ: "
            "teacher and student must predict the same classes"
        )
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, *, temperature: float = 4.0,
    alpha: float = 0.9, hard_loss: torch.Tensor | None = None,
) -> torch.Tensor:
    """alpha * kd_loss + (1 - alpha) * CE(student, targets) (or the given `hard_loss`)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    hard = F.cross_entropy(student_logits, targets) if hard_loss is None else hard_loss
    if alpha == 0.0:
        return hard
    return alpha * kd_loss(student_logits, teacher_logits, temperature) + (1 - alpha) * hard


class HintAdapter(nn.Module):
    """Learned map from student features to the teacher's feature shape (FitNets regressor).

    4-D features use a 1x1 conv (spatial sizes must match); 2-D features a linear layer.
    """

    def __init__(self, student_channels: int, teacher_channels: int, *, spatial: bool = True) -> None:
        super().__init__()
        if student_channels < 1 or teacher_channels < 1:
            raise ValueError("channel counts must be positive")
        self.proj = (nn.Conv2d(student_channels, teacher_channels, 1, bias=False) if spatial
                     else nn.Linear(student_channels, teacher_channels, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def hint_loss(student_features: torch.Tensor, teacher_features: torch.Tensor, adapter: nn.Module) -> torch.Tensor:
    """Mean squared error between adapter(student features) and the (detached) teacher features."""
    mapped = adapter(student_features)
    if mapped.shape != teacher_features.shape:
        raise ValueError(
            f"adapted student features {tuple(mapped.shape)} do not match teacher features "
            f"{tuple(teacher_features.shape)}; pick layers with the same spatial size"
        )
    return F.mse_loss(mapped, teacher_features.detach())
