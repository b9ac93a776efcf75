"""`slimkit train`: a run end to end, config -> data -> model -> method -> training -> the run folder.

The run folder's files are named in `slimkit.utils.run_folder`; docs/architecture.md maps the rest.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Sequence

from slimkit.runs.build import build_trainer
from slimkit.runs.config import RunConfig, dump_config, load_config, read_yaml
from slimkit.runs.finish import finish_run
from slimkit.runs.imp import imp_run
from slimkit.runs.loss_terms import LossTerms, check_loss_terms, refuse_train_on_derived_run, write_loss_terms
from slimkit.train import Callback
from slimkit.train.tensorboard import require_tensorboard
from slimkit.utils import distributed
from slimkit.utils.fileio import atomic_write_text
from slimkit.utils.run_folder import RunFolder, RunFolderError


def claim_folder(folder: RunFolder, *, resume: bool = False, overwrite: bool = False) -> AbstractContextManager:
    """`folder.claimed(...)` in the process that writes the run's files. Other DDP ranks write
    nothing and take no lock: they would only conflict with their own rank 0."""
    return folder.claimed(resume=resume, overwrite=overwrite) if distributed.is_main() else nullcontext(folder)


def _prepare_folder(config: RunConfig, folder: RunFolder, resume: bool, loss_terms: LossTerms | None) -> RunConfig:
    """The config to run: the saved one when resuming, else `config`, written into a free folder."""
    out = folder.path
    if resume:
        if not folder.config.is_file():
            raise RunFolderError(f"cannot resume: {out} has no {folder.config.name} (is it a slimkit run folder?)")
        if not read_yaml(folder.config):  # an emptied config.yaml would silently resume the default model
            raise RunFolderError(f"cannot resume: {folder.config} is empty; it should hold the run's settings")
        if loss_terms is None:
            refuse_train_on_derived_run(out, "slimkit train --resume")
        else:
            check_loss_terms(out, loss_terms)
        return load_config(folder.config)
    folder.refuse_existing_run("pass --resume to continue it or choose another --out")
    if distributed.is_main():  # loss terms first: a kill between the two files must not lose them
        if loss_terms is not None:
            write_loss_terms(out, loss_terms)
        else:
            folder.loss_terms.unlink(missing_ok=True)  # left by a run killed before its first epoch
        atomic_write_text(folder.config, dump_config(config))
    return config


def train_run(
    config: RunConfig, out_dir: str | Path, *, resume: bool = False, callbacks: Sequence[Callback] = (),
    loss_terms: LossTerms | None = None, overwrite: bool = False,
) -> dict[str, Any]:
    """Train `config` into `out_dir` (or continue the run there with `resume=True`).

    `loss_terms` describes what `callbacks` add to the loss; a resumed run must pass the same.
    The folder is held for the whole run (a second run on it is refused); a non-empty folder
    that slimkit did not write is refused unless `overwrite`."""
    out = Path(out_dir)
    folder = RunFolder(out)
    if config.tensorboard:  # fail before anything is written or trained
        require_tensorboard()
    distributed.setup(config.device)
    with claim_folder(folder, resume=resume, overwrite=overwrite):
        config = _prepare_folder(config, folder, resume, loss_terms)
        if config.tensorboard:  # a resumed run's config.yaml may ask for it
            require_tensorboard()
        if config.method == "imp":
            return imp_run(config, out, resume=resume, callbacks=callbacks)
        trainer, info = build_trainer(config, out, callbacks)
        if resume and folder.checkpoint.exists():  # killed before its first epoch ended: start over
            trainer.resume(folder.checkpoint)
        trainer.fit()
        return finish_run(config, trainer, info, out)
