"""Knowledge distillation: Hinton KD and FitNets hint losses, teachers (ensembles), a Trainer callback."""

from slimkit.distill.callback import Distillation
from slimkit.distill.losses import HintAdapter, distillation_loss, hint_loss, kd_loss
from slimkit.distill.teacher import Ensemble, as_teacher

__all__ = ["Distillation", "Ensemble", "HintAdapter", "as_teacher", "distillation_loss", "hint_loss", "kd_loss"]
