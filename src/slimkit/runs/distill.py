"""`slimkit distill`: a student trained with knowledge distillation from teacher run folders is an
ordinary run folder; metrics.json adds the teachers' figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from slimkit.distill import Distillation
from slimkit.runs.build import load_data
from slimkit.runs.config import RunConfig, load_config
from slimkit.runs.loss_terms import LossTerms, read_loss_terms
from slimkit.runs.train import claim_folder, train_run
from slimkit.utils import distributed
from slimkit.utils.fileio import atomic_write_json
from slimkit.utils.run_folder import LOSS_TERMS_FILE, RunFolder, RunFolderError


def distill_run(config: RunConfig, teachers: Sequence[str | Path], out: str | Path, *, temperature: float = 4.0,
                alpha: float = 0.9, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train `config.model` as a student of the (averaged) teachers; metrics.json adds teacher figures.
    With `resume=True`, continue the interrupted distillation in `out` (same teachers, T and alpha).
    `out` is held for the whole run; a non-empty folder slimkit did not write is refused unless `overwrite`."""
    if not teachers:
        raise ValueError("distillation needs at least one --teacher run folder")
    distributed.setup(config.device)  # the rank decides who claims the folder
    with claim_folder(RunFolder(out), resume=resume, overwrite=overwrite):
        return _distill(config, teachers, out, temperature=temperature, alpha=alpha, resume=resume)


def _distill(config: RunConfig, teachers: Sequence[str | Path], out: str | Path, *, temperature: float,
             alpha: float, resume: bool) -> dict[str, Any]:
    kd = Distillation(list(teachers), temperature=temperature, alpha=alpha)
    teacher_names = [str(t) for t in teachers]
    # absolute paths, so that a resume from another working directory finds the same teachers
    terms = LossTerms({"distillation": {"teachers": [str(Path(t).resolve()) for t in teachers],
                                        "temperature": temperature, "alpha": alpha}},
                      continue_with=f"`slimkit distill --resume {out}`")
    metrics = train_run(config, out, callbacks=[kd], resume=resume, loss_terms=terms)
    _, loaders = load_data(config)
    metrics.update(
        teacher_acc=kd.teacher_accuracy(loaders.test, progress=config.progress), teachers=teacher_names,
        teacher_test_accs=[RunFolder(t).read_metrics().get("test_acc") if RunFolder(t).is_finished() else None
                           for t in teachers],
        kd_temperature=temperature, kd_alpha=alpha, method=f"kd({metrics['method']})",
    )
    atomic_write_json(RunFolder(out).metrics, metrics)
    return metrics


def resume_distill_run(out: str | Path) -> dict[str, Any]:
    """Continue the interrupted distillation in `out` with the teachers, T and alpha it started with."""
    saved = read_loss_terms(Path(out))
    if saved is None or "distillation" not in saved["settings"]:
        raise RunFolderError(f"cannot resume: {out} has no distillation settings ({LOSS_TERMS_FILE}): it is not a "
                             "`slimkit distill` run folder, or its distillation started before they were saved")
    kd = saved["settings"]["distillation"]
    config = load_config(RunFolder(out).config)
    return distill_run(config, kd["teachers"], out, temperature=kd["temperature"], alpha=kd["alpha"], resume=True)
