"""The run-folder contract: the one place that names a run folder's files and says whether a
folder already holds a run.

Every command writes an ordinary folder (`OUT/`): the Trainer writes history.csv and
checkpoint.pt, `slimkit.export` the model files, `slimkit.runs` config.yaml, metrics.json and
the sidecars of derived runs, and `slimkit.report` reads them back. They all take the names from
here, so a folder written by one is found by the others. This module imports no other slimkit
package, so every layer can use it.

A command that writes a run folder first claims it (`RunFolder.claimed`): it takes the folder's
lock for the whole run, refuses a folder of files slimkit did not write, marks the folder as a
slimkit run and removes the temp files a killed run left behind.
"""

from __future__ import annotations

import json
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from slimkit.utils.fileio import is_temp_file, remove_stale_temp_files
from slimkit.utils.folder_lock import LOCK_FILE, FolderLocked, folder_lock

CONFIG_FILE = "config.yaml"  # everything needed to rerun the run
METRICS_FILE = "metrics.json"  # written last: a folder with it holds a finished run
HISTORY_FILE = "history.csv"  # one row per epoch
CHECKPOINT_FILE = "checkpoint.pt"  # latest state, for resume
WEIGHTS_FILE = "model.safetensors"
SIDECAR_FILE = "model.json"  # how to rebuild the architecture of WEIGHTS_FILE
LOSS_TERMS_FILE = "loss_terms.json"  # loss terms added by callbacks, which config.yaml does not hold
PRUNING_FILE = "pruning.json"  # what a channel-pruning run pruned and how, which config.yaml does not hold
REWIND_FILE = "rewind.safetensors"  # imp: the weights later rounds rewind to
TENSORBOARD_DIR = "tensorboard"
FIRST_IMP_ROUND = "round-0"  # imp writes one run folder per round inside its own
SLIM_TRAIN_DIR = "train"  # slim's sparsity-training run, a run folder inside its own
FP32_ONNX_FILE, INT8_ONNX_FILE = "model.fp32.onnx", "model.int8.onnx"  # a quantize run's models
MARKER_FILE = ".slimkit-run"  # written when slimkit starts a run in a folder
# every file a run writes at the top of its folder (the temp files of these are swept after a crash)
RUN_FILES = (CONFIG_FILE, METRICS_FILE, HISTORY_FILE, CHECKPOINT_FILE, WEIGHTS_FILE, SIDECAR_FILE, LOSS_TERMS_FILE,
             PRUNING_FILE, REWIND_FILE, FP32_ONNX_FILE, INT8_ONNX_FILE, MARKER_FILE)
# files a run folder written before the marker holds beside its config.yaml, and no other tool writes
_OLD_RUN_EVIDENCE = (CHECKPOINT_FILE, METRICS_FILE, LOSS_TERMS_FILE, PRUNING_FILE)


class RunFolderError(ValueError):
    """The output folder cannot be used as asked (already holds a run, holds none to resume, or
    holds an interrupted run with other settings)."""


@dataclass(frozen=True)
class RunFolder:
    """Paths and checks of one run folder (it need not exist yet)."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def history(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS_FILE

    @property
    def loss_terms(self) -> Path:
        return self.path / LOSS_TERMS_FILE

    @property
    def pruning(self) -> Path:
        return self.path / PRUNING_FILE

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD_DIR

    def is_finished(self) -> bool:
        return self.metrics.exists()

    def holds_run(self) -> bool:
        """True once any run has started writing here (finished, interrupted, or an imp run's rounds)."""
        return self.checkpoint.exists() or self.metrics.exists() or (self.path / FIRST_IMP_ROUND).exists()

    def refuse_existing_run(self, hint: str = "choose another --out") -> None:
        """Raise unless the folder is free for a new run: a run is never overwritten or mixed."""
        if self.holds_run():
            raise RunFolderError(f"{self.path} already holds a run; {hint}")

    def refuse_finished_run(self) -> None:
        """Raise if the folder holds a finished result (an interrupted one may be continued)."""
        if self.is_finished():
            raise RunFolderError(f"{self.path} already holds a run; choose another --out")

    def is_slimkit_folder(self) -> bool:
        """True if slimkit started a run here: the marker, or (folders written before it) config.yaml
        beside a checkpoint, metrics, a sidecar or imp's rounds, or slim's nested training run."""
        if (self.path / MARKER_FILE).is_file():
            return True
        if self.config.is_file() and (any((self.path / name).is_file() for name in _OLD_RUN_EVIDENCE)
                                      or (self.path / FIRST_IMP_ROUND).is_dir()):
            return True
        return (self.path / SLIM_TRAIN_DIR).is_dir() and RunFolder(self.path / SLIM_TRAIN_DIR).is_slimkit_folder()

    def foreign_files(self) -> list[str]:
        """The names in the folder when slimkit did not write it (empty for a slimkit run folder).
        The lock file and temp files of run files (a run killed while writing its first file) are slimkit's."""
        if not self.path.is_dir() or self.is_slimkit_folder():
            return []
        return sorted(entry.name for entry in self.path.iterdir()
                      if entry.name != LOCK_FILE and not is_temp_file(entry.name, RUN_FILES))

    def refuse_foreign(self, *, resume: bool = False, overwrite: bool = False) -> None:
        """Raise if the folder holds files slimkit did not write (unless `overwrite`), or, to
        `resume`, if it is not a slimkit run folder at all."""
        if resume and not self.path.is_dir():
            raise RunFolderError(f"cannot resume: {self.path} does not exist")
        if resume and not self.is_slimkit_folder():
            raise RunFolderError(f"cannot resume: {self.path} is not a slimkit run folder (it has no {MARKER_FILE}, "
                                 f"nor a {CONFIG_FILE} beside a {CHECKPOINT_FILE} or {METRICS_FILE})")
        foreign = self.foreign_files()
        if foreign and not overwrite:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise RunFolderError(f"{self.path} is not empty and slimkit did not write it ({shown}); choose a new or "
                                 "empty --out, or pass --overwrite to let the run replace files of the same names")

    @contextmanager
    def claimed(self, *, resume: bool = False, overwrite: bool = False) -> Iterator[RunFolder]:
        """Hold this folder for one run: its lock (another run gets a RunFolderError naming the
        holder's pid), the foreign-files check (`refuse_foreign`), the marker, and no stale temp
        files. Only the process that writes the files (DDP rank 0) claims the folder."""
        self.refuse_foreign(resume=resume, overwrite=overwrite)  # before the lock file lands in a foreign folder
        self.path.mkdir(parents=True, exist_ok=True)
        with ExitStack() as held:
            try:
                held.enter_context(folder_lock(self.path))
            except FolderLocked as err:
                raise RunFolderError(f"{self.path} is in use by another slimkit run ({err.holder}, which holds "
                                     f"{self.path / LOCK_FILE}); wait for it to end or choose another --out") from None
            self.refuse_foreign(resume=resume, overwrite=overwrite)  # again, now that no other run can write here
            if not (self.path / MARKER_FILE).is_file():  # its existence is what counts: no temp file to leave
                (self.path / MARKER_FILE).write_text("a slimkit run folder: slimkit writes into it\n")
            remove_stale_temp_files(self.path, RUN_FILES)
            yield self

    def read_metrics(self) -> dict[str, Any]:
        """metrics.json of a finished run; the error names the folder otherwise."""
        if not self.metrics.is_file():
            raise RunFolderError(f"{self.path} has no {METRICS_FILE}: not a finished slimkit run")
        return _read_json_object(self.metrics)

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A JSON sidecar of this folder, or None when it is absent."""
        path = self.path / name
        return _read_json_object(path) if path.exists() else None


def read_user_text(path: Path, error: type[ValueError] = RunFolderError, what: str = "") -> str:
    """The UTF-8 text of a file a user may have edited or damaged: a failure becomes one `error`
    naming the file (`what` says which kind). FileNotFoundError passes through: callers say what
    a missing file means."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except UnicodeDecodeError as exc:
        raise error(f"{what}{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise error(f"cannot read {what}{path}: {exc.strerror or exc}") from None


def _read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from a run file, which may be damaged or hand-edited: any problem is one
    RunFolderError naming the file. (A bare NaN, which older slimkit versions could write, still reads.)"""
    try:
        data = json.loads(read_user_text(path))
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} must hold a JSON object {{...}}, found {type(data).__name__}")
    return data


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """metrics.json of the finished run in `run_dir`."""
    return RunFolder(run_dir).read_metrics()
