"""Loss terms a run's callbacks add (distillation, L1 on BN scales) and the derived-run checks that
keep `slimkit train --resume` / `--config` from silently dropping them or a pruned architecture.

They are saved beside config.yaml (loss_terms.json, pruning.json) because config.yaml holds only
the plain training settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimkit.utils import distributed
from slimkit.utils.fileio import atomic_write_json
from slimkit.utils.run_folder import LOSS_TERMS_FILE, PRUNING_FILE, RunFolder, RunFolderError


@dataclass(frozen=True)
class LossTerms:
    """Loss terms that a run's callbacks add: their settings and the command that continues the run."""

    settings: dict[str, Any]
    continue_with: str


def write_loss_terms(out: Path, loss_terms: LossTerms) -> None:
    atomic_write_json(RunFolder(out).loss_terms, {"settings": loss_terms.settings,
                                                  "continue_with": loss_terms.continue_with})


def read_loss_terms(out: str | Path) -> dict[str, Any] | None:
    """The saved `LossTerms` of the run in `out` as a dict, or None for a plain run."""
    return RunFolder(out).read_json(LOSS_TERMS_FILE)


def setting_differences(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """'key: saved -> wanted' for every setting that differs (nested dicts by dotted key), for
    errors that refuse to continue a run with other settings."""
    lines = []
    for key in sorted(set(saved) | set(wanted)):
        old, new = saved.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            lines += setting_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            lines.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return lines


def refuse_other_settings(out: Path, what: str, saved: dict[str, Any], wanted: dict[str, Any]) -> None:
    """Raise if an interrupted `what` in `out` ran with other settings than the ones wanted now."""
    if changed := setting_differences(saved, wanted):
        raise RunFolderError(f"{out} holds an interrupted {what} with other settings ({'; '.join(changed)}); run the "
                             "command that started it to continue it, or choose another --out")


def _terms_text(saved: dict[str, Any]) -> str:
    """'distillation', 'l1 on bn scales': the saved loss terms' names, for messages."""
    return " and ".join(name.replace("_", " ") for name in saved["settings"])


def refuse_train_on_derived_run(folder: Path, action: str) -> None:
    """Raise if the run in `folder` needs more than its config.yaml: loss terms added by callbacks
    (distill, slim) or a channel-pruned architecture (prune-channels, slim). `action` (plain
    `slimkit train` on that config) would silently drop them."""
    saved = read_loss_terms(folder)
    if saved is not None:
        raise RunFolderError(f"{folder} trains with {_terms_text(saved)} ({LOSS_TERMS_FILE}), which `{action}` would drop; "
                             f"continue it with {saved['continue_with']}, or rerun the command that made it")
    if RunFolder(folder).pruning.exists():
        raise RunFolderError(
            f"{folder} fine-tunes a channel-pruned model ({PRUNING_FILE}); `{action}` would train the unpruned "
            "source instead. Run the `slimkit prune-channels` or `slimkit slim` command that made it again: it "
            "continues an interrupted fine-tuning")


def check_loss_terms(out: Path, loss_terms: LossTerms) -> None:
    """A resumed run that adds loss terms continues only with the settings it started with."""
    saved = read_loss_terms(out)
    if saved is None:  # a run from before loss_terms.json existed: trust the caller
        if distributed.is_main():
            write_loss_terms(out, loss_terms)
        return
    if changed := setting_differences(saved["settings"], loss_terms.settings):
        raise RunFolderError(f"{out} holds an interrupted run with other {_terms_text(saved)} settings ({'; '.join(changed)}); "
                             "use its settings to continue it, or choose another --out")
